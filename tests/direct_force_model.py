"""A stand-in for a user's fine-tuned direct-force teacher (the paper's MD22 teacher, JMP-L, is one): a small
network whose force head is not the gradient of its energy head, loaded from a checkpoint by a factory, the way
a user plugs such a model in with ``model: "torch:<module>:<factory>"``."""

import torch


class PairDirectForce(torch.nn.Module):
    """Energy E = sum over pairs of e(r_ij); forces from a separate head, F_i = sum_j m(r_ij) s(Z_i) r_ij / r_ij.

    The per-element factor s(Z_i) breaks Newton's third law, so the forces are not -dE/dx of any energy and the
    force Jacobian -dF/dx is not symmetric: a direct-force model."""

    conservative = False

    def __init__(self, hidden: int = 8, max_z: int = 10):
        super().__init__()
        self.energy_head = torch.nn.Sequential(torch.nn.Linear(1, hidden), torch.nn.Tanh(), torch.nn.Linear(hidden, 1))
        self.force_head = torch.nn.Sequential(torch.nn.Linear(1, hidden), torch.nn.Tanh(), torch.nn.Linear(hidden, 1))
        self.element_scale = torch.nn.Embedding(max_z, 1)
        torch.nn.init.uniform_(self.element_scale.weight, 0.5, 1.5)
        self.supported_numbers = tuple(range(1, max_z))

    def forward(self, pos, numbers, cell, pbc):
        n = pos.shape[0]
        i, j = torch.triu_indices(n, n, offset=1)
        i, j = torch.cat([i, j]), torch.cat([j, i])
        d = pos[j] - pos[i]
        r = d.norm(dim=-1, keepdim=True)
        energy = 0.5 * self.energy_head(r).sum()
        z = torch.as_tensor(numbers, device=pos.device).long()
        m = self.force_head(r) * torch.exp(-r) * self.element_scale(z[i])
        forces = torch.zeros_like(pos).index_add(0, i, -m * d / r)
        return energy, forces


def load(checkpoint=None, hidden: int = 8):
    """The factory: build the network and load its fine-tuned weights (a state dict saved with torch.save)."""
    model = PairDirectForce(hidden=hidden)
    if checkpoint is not None:
        model.load_state_dict(torch.load(checkpoint, map_location="cpu", weights_only=True))
    return model
