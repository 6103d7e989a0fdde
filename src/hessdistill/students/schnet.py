"""SchNet (Schütt et al., NeurIPS 2017; J. Chem. Phys. 148, 241722, 2018): continuous-filter convolutions.

Atoms carry scalar features x_i (``hidden``), initialised from an element embedding.  Each of
``num_interactions`` interaction blocks (residual) computes

    y_j   = Linear(x_j)                                      (atom-wise, hidden -> num_filters, no bias)
    W_ij  = Dense(ssp(Dense(rbf(r_ij)))) * fcut(r_ij)        (filter-generating network, num_rbf -> F -> F)
    m_i   = Σ_j y_j (.) W_ij / avg_num_neighbors              (continuous-filter convolution)
    x_i  += Linear(ssp(Linear(m_i)))                          (num_filters -> hidden -> hidden)

with the shifted softplus ssp(x) = ln(0.5 e^x + 0.5).  Readout: per-atom energy = Linear(ssp(Linear(x_i)))
(hidden -> hidden/2 -> 1).  The radial basis (Gaussians on [0, cutoff], width = spacing) and the C^2
polynomial envelope (p = 5) are those of :mod:`.layers`, which makes energies twice continuously
differentiable, also when pairs cross the cutoff (the 2018 paper used a cosine cutoff, which is only C^1).
SchNet here is conservative only (forces = -dE/dx).

Parameter count of the default config (hidden 64, 64 filters, 3 interactions, 50 rbf, 119-row embedding):
**69,249** = embedding 7,616 + 3 x 19,840 (in2f 4,096; filter net 3,264 + 4,160; out 4,160 + 4,160)
+ readout 2,113.
"""

from __future__ import annotations

import torch
from torch import nn

from ..core.errors import HessdistillError
from ..core.graphs import edge_vectors
from .base import ELEMENT_SLOTS, AtomwiseOutput, Student, host_numbers
from .layers import (
    ElementEmbedding,
    GaussianRBF,
    PolynomialEnvelope,
    ShiftedSoftplus,
    plain_embedding_init,
    scatter_sum,
)


class SchNetInteraction(nn.Module):
    def __init__(self, hidden: int, num_filters: int, num_rbf: int):
        super().__init__()
        self.in2f = nn.Linear(hidden, num_filters, bias=False)
        self.filter_net = nn.Sequential(
            nn.Linear(num_rbf, num_filters), ShiftedSoftplus(), nn.Linear(num_filters, num_filters)
        )
        self.f2out = nn.Sequential(nn.Linear(num_filters, hidden), ShiftedSoftplus(), nn.Linear(hidden, hidden))

    def forward(self, x, i, j, rbf, fcut, norm: float):
        w = self.filter_net(rbf) * fcut.unsqueeze(-1)
        m = scatter_sum(torch.index_select(self.in2f(x), 0, j) * w, i, x.shape[0])
        if norm != 1.0:
            m = m / norm
        return x + self.f2out(m)


class SchNet(Student):
    """SchNet student (conservative forces only)."""

    arch = "schnet"

    def __init__(
        self,
        hidden: int = 64,
        num_filters: int = 64,
        num_interactions: int = 3,
        num_rbf: int = 50,
        cutoff: float = 5.0,
        direct_forces: bool = False,
        num_elements: int = ELEMENT_SLOTS,
        embedding_init: dict | None = None,
        avg_num_neighbors: float = 1.0,
        envelope_exponent: int = 5,
    ):
        if direct_forces:
            raise HessdistillError(
                "SchNet has no direct-force head\n  fix: use direct_forces=False (forces = -dE/dx), or PaiNN for a direct head"
            )
        super().__init__(cutoff=cutoff, direct_forces=False)
        if hidden < 2 or num_filters < 1 or num_interactions < 1:
            raise HessdistillError("SchNet: need hidden >= 2, num_filters >= 1 and num_interactions >= 1")
        if avg_num_neighbors <= 0:
            raise HessdistillError(f"SchNet: avg_num_neighbors must be > 0, got {avg_num_neighbors}")
        self.hparams = {
            "hidden": int(hidden),
            "num_filters": int(num_filters),
            "num_interactions": int(num_interactions),
            "num_rbf": int(num_rbf),
            "cutoff": float(cutoff),
            "num_elements": int(num_elements),
            "embedding_init": plain_embedding_init(embedding_init),
            "avg_num_neighbors": float(avg_num_neighbors),
            "envelope_exponent": int(envelope_exponent),
        }
        self.hidden = int(hidden)
        self.avg_num_neighbors = float(avg_num_neighbors)
        self.embedding = ElementEmbedding(self.hidden, int(num_elements), self.hparams["embedding_init"])
        self.rbf = GaussianRBF(int(num_rbf), self.cutoff)
        self.envelope = PolynomialEnvelope(self.cutoff, int(envelope_exponent))
        self.interactions = nn.ModuleList(
            SchNetInteraction(self.hidden, int(num_filters), int(num_rbf)) for _ in range(num_interactions)
        )
        half = max(self.hidden // 2, 1)
        self.energy_head = nn.Sequential(nn.Linear(self.hidden, half), ShiftedSoftplus(), nn.Linear(half, 1))

    @property
    def feature_dim(self) -> int:
        return self.hidden

    def check_numbers(self, numbers) -> None:
        self.embedding.check(host_numbers(numbers), "SchNet")

    def atomwise(self, batch) -> AtomwiseOutput:
        i, j = batch.edge_index
        vec = edge_vectors(batch)
        r = torch.sqrt(torch.sum(vec * vec, dim=-1))
        fcut = self.envelope(r)
        rbf = self.rbf(r)
        x = self.embedding(batch.z)
        for block in self.interactions:
            x = block(x, i, j, rbf, fcut, self.avg_num_neighbors)
        energy = self.energy_head(x).squeeze(-1)
        return AtomwiseOutput(energy=energy, features=x)
