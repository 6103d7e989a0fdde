"""Small analytic torch force fields used as teachers in tests (importable as ``toy_models``)."""

from __future__ import annotations

import time

import numpy as np
import torch


def lj_hessian(positions, eps=1.0, sigma=1.0):
    """Closed-form Hessian of the (untruncated) Lennard-Jones energy."""
    pos = np.asarray(positions, float)
    n = len(pos)
    h = np.zeros((3 * n, 3 * n))
    for i in range(n):
        for j in range(i + 1, n):
            d = pos[j] - pos[i]
            r = np.linalg.norm(d)
            e = d / r
            sr6 = (sigma / r) ** 6
            d1 = 4 * eps * (-12 * sr6**2 + 6 * sr6) / r
            d2 = 4 * eps * (156 * sr6**2 - 42 * sr6) / r**2
            blk = d2 * np.outer(e, e) + d1 / r * (np.eye(3) - np.outer(e, e))
            for a, b, s in ((i, i, 1), (j, j, 1), (i, j, -1), (j, i, -1)):
                h[3 * a : 3 * a + 3, 3 * b : 3 * b + 3] += s * blk
    return h


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


from hessdistill.core.graphs import edge_vectors  # noqa: E402
from hessdistill.students.base import ELEMENT_SLOTS, AtomwiseOutput, Student  # noqa: E402


class ToyStudent(Student):
    """A tiny smooth message-passing student for fast tests (Gaussian radial features, one MLP)."""

    arch = "toy"

    def __init__(self, cutoff=4.0, features=8, direct_forces=False, embedding_init=None):
        super().__init__(cutoff=cutoff, direct_forces=direct_forces)
        self.hparams = dict(
            cutoff=cutoff, features=features, direct_forces=direct_forces, embedding_init=embedding_init
        )
        self.emb = torch.nn.Embedding(ELEMENT_SLOTS, features)
        if embedding_init is not None:  # a2a: a trainable map of a frozen teacher table, rows indexed by Z
            table = torch.zeros(ELEMENT_SLOTS, len(embedding_init["table"][0]))
            table[list(embedding_init["numbers"])] = torch.tensor(embedding_init["table"], dtype=torch.float32)
            self.register_buffer("teacher_table", table)
            self.emb_proj = torch.nn.Linear(table.shape[1], features)
        self.widths = torch.nn.Parameter(torch.linspace(0.5, 2.0, features))
        self.mlp = torch.nn.Sequential(torch.nn.Linear(features, 16), torch.nn.SiLU(), torch.nn.Linear(16, 1))
        self.force_head = torch.nn.Linear(features, 1) if direct_forces else None
        self._f = features

    @property
    def feature_dim(self):
        return self._f

    def atomwise(self, batch):
        i, j = batch.edge_index
        vec = edge_vectors(batch)
        r2 = (vec * vec).sum(-1)
        x = r2 / self.cutoff**2
        env = torch.where(x < 1, (1 - x) ** 3, torch.zeros_like(x))  # C² at the cutoff
        radial = torch.exp(-r2[:, None] / self.widths[None, :] ** 2) * env[:, None]
        h = torch.zeros(batch.pos.shape[0], self._f, dtype=vec.dtype, device=vec.device)
        emb = (
            self.emb_proj(self.teacher_table.to(vec.dtype))[batch.z] if hasattr(self, "emb_proj") else self.emb(batch.z)
        )
        h = h.index_add(0, i, radial * emb[j])
        energy = self.mlp(h).squeeze(-1)
        forces = None
        if self.direct_forces:
            w = self.force_head(h)[i] * env[:, None]
            forces = torch.zeros_like(batch.pos).index_add(0, i, -w * vec)
        return AtomwiseOutput(energy=energy, features=h, forces=forces)
