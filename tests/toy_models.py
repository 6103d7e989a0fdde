"""Small analytic torch force fields used as teachers in tests (importable as ``toy_models``)."""

from __future__ import annotations

import time

import torch


class MorseModel(torch.nn.Module):
    """Conservative pairwise Morse energy over all pairs (minimum image ignored: use molecules)."""

    conservative = True

    def __init__(self, d=0.8, a=1.6, r0=1.3, delay=0.0):
        super().__init__()
        self.d, self.a, self.r0, self.delay = d, a, r0, delay

    def forward(self, pos, numbers, cell, pbc):
        if self.delay:
            time.sleep(self.delay)
        n = pos.shape[0]
        i, j = torch.triu_indices(n, n, offset=1)
        r = (pos[i] - pos[j]).norm(dim=-1)
        x = torch.exp(-self.a * (r - self.r0))
        energy = (self.d * (x * x - 2 * x)).sum()
        return energy, None


class CurlField(torch.nn.Module):
    """A direct-force (non-conservative) field: F_i = -k x_i + w x (x_i - x_c) + tanh couplings.

    Its force Jacobian is not symmetric, so the "Hessian" -dF/dx of such a teacher is not symmetric either.
    """

    conservative = False

    def __init__(self, k=1.5, w=0.7):
        super().__init__()
        self.k, self.w = k, w

    def forward(self, pos, numbers, cell, pbc):
        c = pos.mean(dim=0, keepdim=True)
        d = pos - c
        omega = torch.tensor([0.0, 0.0, self.w], dtype=pos.dtype)
        f = -self.k * d + torch.cross(omega.expand_as(d), d, dim=-1) + 0.1 * torch.tanh(d.roll(1, dims=0))
        energy = 0.5 * self.k * (d * d).sum()
        return energy, f


def morse(**kw):
    return MorseModel(**kw)


def slow_morse(delay=0.15, **kw):
    return MorseModel(delay=delay, **kw)


def curl(**kw):
    return CurlField(**kw)
