"""Building blocks shared by the students: smooth radial basis, cutoff envelope, element embeddings.

Everything here is a smooth function of the inputs, so energies built from these blocks can be
differentiated twice (forces, then Hessian rows by double backprop):

* :class:`GaussianRBF` — Gaussians exp(-(r - mu_k)^2 / (2 sigma^2)) with centres evenly spaced on
  [0, cutoff] and sigma = the centre spacing (the "GaussianSmearing" of SchNet / fairchem PaiNN).
* :class:`PolynomialEnvelope` — u(d) = 1 - (p+1)(p+2)/2 d^p + p(p+2) d^(p+1) - p(p+1)/2 d^(p+2), d = r/cutoff,
  zero for d >= 1 (Klicpera et al. 2020, DimeNet).  For p = 5: u = 1 - 21 d^5 + 35 d^6 - 15 d^7, so
  u'(d) = -105 d^4 (1-d)^2 and u''(d) = -210 d^3 (1-d)(2 - 3d): value, first and second derivative all
  vanish at the cutoff, i.e. the envelope (and every filter multiplied by it) is C^2 across the cutoff and
  Hessians are continuous when a pair enters or leaves the neighbour list.
* :class:`ElementEmbedding` — a learned per-element table, or (``embedding_init``, the "a2a" hook) a
  trainable linear map applied to a frozen per-element table taken from a teacher.
* :func:`capped_edges` — the neighbour cap ``max_neighbors`` of GemNet and PaiNN (nearest k within the cutoff,
  ties kept, symmetrised), with :func:`reverse_edges` and :func:`nearest_mask`.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from ..core.errors import HessdistillError
from ..core.graphs import edge_vectors
from .base import ELEMENT_SLOTS, element_names


def safe_norm(x: torch.Tensor, dim: int = -1, eps: float = 1e-8, keepdim: bool = False) -> torch.Tensor:
    """sqrt(|x|^2 + eps): smooth everywhere, finite gradients at x = 0 (e.g. zero initial vector features)."""
    return torch.sqrt(torch.sum(x * x, dim=dim, keepdim=keepdim) + eps)


def shifted_softplus(x: torch.Tensor) -> torch.Tensor:
    """ssp(x) = ln(0.5 e^x + 0.5) = softplus(x) - ln 2 (SchNet's activation; ssp(0) = 0)."""
    return nn.functional.softplus(x) - math.log(2.0)


class ShiftedSoftplus(nn.Module):
    def forward(self, x):
        return shifted_softplus(x)


class GaussianRBF(nn.Module):
    """(E,) distances -> (E, num_rbf) Gaussians with centres linspace(0, cutoff, num_rbf), width = spacing."""

    def __init__(self, num_rbf: int, cutoff: float):
        super().__init__()
        if num_rbf < 2:
            raise HessdistillError(f"num_rbf must be >= 2, got {num_rbf}")
        centres = torch.linspace(0.0, float(cutoff), int(num_rbf), dtype=torch.float64)
        width = float(centres[1] - centres[0])
        self.register_buffer("centres", centres.to(torch.get_default_dtype()))
        self.coeff = -0.5 / width**2

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        d = r.unsqueeze(-1) - self.centres.to(r.dtype)
        return torch.exp(self.coeff * d * d)


class PolynomialEnvelope(nn.Module):
    """C^(2) polynomial cutoff envelope of exponent p (default 5); exactly zero beyond the cutoff."""

    def __init__(self, cutoff: float, p: int = 5):
        super().__init__()
        self.cutoff = float(cutoff)
        self.p = int(p)
        p = self.p
        self.a = -(p + 1) * (p + 2) / 2.0
        self.b = float(p * (p + 2))
        self.c = -p * (p + 1) / 2.0

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        d = r / self.cutoff
        dp = d**self.p
        u = 1.0 + dp * (self.a + d * (self.b + self.c * d))
        # the polynomial is finite everywhere, so torch.where gives finite gradients on both branches
        return torch.where(d < 1.0, u, torch.zeros_like(u))


class ElementEmbedding(nn.Module):
    """Atomic numbers (ΣN,) -> (ΣN, dim) initial scalar features.

    Without ``embedding_init``: a learned table of ``num_elements`` rows.  With ``embedding_init =
    {"numbers": [Z...], "table": [[...]]}`` (a teacher's per-element embedding, shape (E, F_t)): the table
    is kept frozen as a buffer and a trainable ``Linear(F_t -> dim)`` maps it to the student width.  The
    forward does no range check (it would synchronise host and device): :meth:`check`, called by the student
    on the host, raises :class:`HessdistillError` for elements outside the table.
    """

    def __init__(self, dim: int, num_elements: int = ELEMENT_SLOTS, embedding_init: dict | None = None):
        super().__init__()
        self.dim = int(dim)
        self.from_teacher = embedding_init is not None
        if embedding_init is None:
            self.table = nn.Embedding(int(num_elements), self.dim)
            self.num_elements = int(num_elements)
            return
        try:
            numbers = [int(z) for z in embedding_init["numbers"]]
            table = torch.as_tensor(embedding_init["table"], dtype=torch.float64)
        except (KeyError, TypeError, ValueError) as exc:
            raise HessdistillError(
                f"embedding_init must be {{'numbers': [Z, ...], 'table': [[...], ...]}} ({exc})"
            ) from exc
        if table.ndim != 2 or table.shape[0] != len(numbers) or len(numbers) == 0:
            raise HessdistillError(
                f"embedding_init: table of shape {tuple(table.shape)} does not match {len(numbers)} element numbers"
            )
        if len(set(numbers)) != len(numbers) or min(numbers) < 1 or max(numbers) >= ELEMENT_SLOTS:
            raise HessdistillError(f"embedding_init: element numbers must be distinct and in 1..{ELEMENT_SLOTS - 1}")
        index = torch.full((ELEMENT_SLOTS,), -1, dtype=torch.long)
        index[torch.tensor(numbers)] = torch.arange(len(numbers))
        self.register_buffer("teacher_table", table.to(torch.get_default_dtype()))
        self.register_buffer("teacher_index", index)
        self.proj = nn.Linear(table.shape[1], self.dim)
        self.numbers = numbers

    def check(self, numbers, student: str) -> None:
        """Raise :class:`HessdistillError` naming the elements of ``numbers`` (host int array) not in the table."""
        if self.from_teacher:
            bad = numbers[~np.isin(numbers, self.numbers)]
            if bad.size:
                raise HessdistillError(
                    f"{student}: element(s) {element_names(bad)} not in the teacher embedding table given as "
                    f"embedding_init (it covers Z = {self.numbers})\n  fix: remove these structures or use a "
                    "teacher table that covers them"
                )
            return
        bad = numbers[(numbers < 0) | (numbers >= self.num_elements)]
        if bad.size:
            raise HessdistillError(
                f"{student}: element(s) {element_names(bad)} outside the embedding table (Z < {self.num_elements}, "
                f"num_elements = {self.num_elements})\n  fix: build the student with num_elements > {int(bad.max())}"
            )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if not self.from_teacher:
            return self.table(z)
        return self.proj(self.teacher_table[self.teacher_index[z]])


def scatter_sum(src: torch.Tensor, index: torch.Tensor, n: int) -> torch.Tensor:
    """Sum rows of ``src`` into ``n`` bins by ``index`` (differentiable to any order)."""
    out = torch.zeros((n,) + tuple(src.shape[1:]), dtype=src.dtype, device=src.device)
    return out.index_add(0, index, src)


def plain_embedding_init(embedding_init):
    """A JSON-friendly copy of ``{"numbers", "table"}`` (lists of ints / floats), or None."""
    if embedding_init is None:
        return None
    if not isinstance(embedding_init, dict) or "numbers" not in embedding_init or "table" not in embedding_init:
        raise HessdistillError("embedding_init must be a dict {'numbers': [Z, ...], 'table': [[...], ...]}")
    numbers = [int(z) for z in torch.as_tensor(embedding_init["numbers"]).reshape(-1).tolist()]
    table = torch.as_tensor(embedding_init["table"], dtype=torch.float64).tolist()
    return {"numbers": numbers, "table": table}


# ----------------------------------------------------------------------------- neighbour cap (GemNet, PaiNN)
def reverse_edges(batch, idx_i, idx_j, shift, who: str = "GemNet") -> torch.Tensor:
    """Index of the reverse edge (j, i, -S) of every edge (i, j, S), matching integer cell shifts S."""
    device = idx_i.device
    n_edges = idx_i.shape[0]
    if n_edges == 0:
        return idx_i.clone()
    with torch.no_grad():
        cell = getattr(batch, "cell", None)
        if cell is None:  # no cells at all: molecules only, every shift must be zero
            cell = torch.zeros(int(batch.natoms.shape[0]), 3, 3, device=device)
        cell = cell.reshape(-1, 3, 3).to(torch.float64)
        det = torch.linalg.det(cell)
        ok = det.abs() > 1e-9
        eye = torch.eye(3, dtype=torch.float64, device=device).expand_as(cell)
        inv = torch.linalg.inv(torch.where(ok[:, None, None], cell, eye))
        struct = batch.batch[idx_i]
        frac = torch.einsum("ex,exy->ey", shift.detach().to(torch.float64), inv[struct])
        s_int = torch.round(frac).to(torch.long)
        s_int = torch.where(ok[struct][:, None], s_int, torch.zeros_like(s_int))
        if bool((~ok[struct] & (shift.detach().abs().sum(-1) > 0)).any()):
            raise HessdistillError(f"{who}: an edge has an image shift but its structure has no invertible cell")
        key = torch.cat([idx_i[:, None], idx_j[:, None], s_int], dim=1)
        rkey = torch.cat([idx_j[:, None], idx_i[:, None], -s_int], dim=1)
        _, inverse = torch.unique(torch.cat([key, rkey]), dim=0, return_inverse=True)
        table = torch.full((int(inverse.max()) + 1,), -1, dtype=torch.long, device=device)
        table[inverse[:n_edges]] = torch.arange(n_edges, device=device)
        swap = table[inverse[n_edges:]]
        if bool((swap < 0).any()):
            raise HessdistillError(f"{who} needs a symmetric (full) neighbour list: some edge has no reverse edge")
    return swap


def nearest_mask(idx_i, d2, n_atoms: int, k: int):
    """Mask of the ``k`` nearest edges of every atom, ties at the last distance included."""
    deg = torch.bincount(idx_i, minlength=n_atoms)
    if int(deg.max()) <= k:
        return torch.ones_like(idx_i, dtype=torch.bool)
    order = torch.argsort(d2, stable=True)
    order = order[torch.argsort(idx_i[order], stable=True)]  # grouped by atom, ascending distance
    ptr = torch.cumsum(deg, 0) - deg
    full = deg > k
    thr = torch.full((n_atoms,), float("inf"), dtype=d2.dtype, device=d2.device)
    thr[full] = d2[order[ptr[full] + k - 1]]
    return d2 <= thr[idx_i] * (1.0 + 1e-6)


def capped_edges(batch, cutoff: float, max_neighbors: int | None, who: str = "GemNet"):
    """The edges of ``batch`` (``edge_index``, ``edge_shift``, ``pos``, ``batch``, ``natoms``, optional ``cell``)
    kept by a neighbour cap: those within ``cutoff``, then each atom's ``max_neighbors`` nearest plus any tied
    with the last one (distance^2 within a relative 1e-6: symmetric crystals keep whole shells, the result does
    not depend on atom order), then made symmetric (an edge is kept if it or its reverse was kept).
    ``max_neighbors=None``: every edge within ``cutoff``.

    Returns ``sel`` (indices into the batch's edges, ascending), the kept ``idx_i``, ``idx_j`` and ``swap`` (the
    position of each kept edge's reverse among the kept ones).  No gradients; weights play no part (the runtime
    of exported students calls this too).  Host syncs: data-dependent sizes.
    """
    idx_i, idx_j = batch.edge_index
    n_atoms = batch.pos.shape[0]
    with torch.no_grad():
        vec = edge_vectors(batch).detach()
        d2 = torch.sum(vec * vec, dim=-1)
        sel = torch.nonzero(d2 < cutoff**2).squeeze(-1)
        idx_i, idx_j = idx_i[sel], idx_j[sel]
        swap = reverse_edges(batch, idx_i, idx_j, batch.edge_shift[sel], who)
        if max_neighbors is not None and idx_i.numel():
            near = nearest_mask(idx_i, d2[sel], n_atoms, int(max_neighbors))
            near = near | near[swap]  # keep the graph symmetric
            if not bool(near.all()):
                sub = torch.nonzero(near).squeeze(-1)
                new_id = torch.cumsum(near.long(), 0) - 1
                swap = new_id[swap[sub]]
                sel, idx_i, idx_j = sel[sub], idx_i[sub], idx_j[sub]
    return sel, idx_i, idx_j, swap


def cap_can_bite(edge_index: torch.Tensor, n_atoms: int, max_neighbors: int | None) -> bool:
    """Whether a neighbour cap of ``max_neighbors`` can drop any of these edges (some atom has more of them); a
    host sync.  While it cannot, the kept set depends on the edges only, not on the positions."""
    if max_neighbors is None or edge_index.shape[1] == 0:
        return False
    return int(torch.bincount(edge_index[0], minlength=n_atoms).max()) > int(max_neighbors)
