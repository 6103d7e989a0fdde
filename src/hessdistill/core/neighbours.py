"""A Verlet neighbour list with a skin, for MD and relaxations (many evaluations of nearby geometries).

The list is built by ``vesin`` at ``cutoff + skin`` and reused until some atom has moved more than ``skin / 2``
since the build (or the cell, periodicity or atoms changed).  Each call returns the pairs of the stored list that
are within ``cutoff`` *now*: if every atom moved less than skin/2, a pair closer than the cutoff now was closer
than cutoff + skin at the build, so the result is exactly the full neighbour list of the current geometry (the
order of the pairs aside), at the cost of a distance check instead of a cell-list search.

Convention as :func:`hessdistill.core.graphs.neighbour_list`: full list, edge vector ``r_j - r_i + shift``.
Positions are used as given (not wrapped): an MD code that wraps atoms into the cell moves them by a lattice
vector, which counts as a large displacement and triggers a rebuild.
"""

from __future__ import annotations

import numpy as np

from .errors import StructureError


class VerletList:
    """Neighbour pairs within ``cutoff`` Å, rebuilt only when an atom moved more than ``skin / 2`` Å."""

    def __init__(self, cutoff: float, skin: float = 0.5):
        if cutoff <= 0 or skin < 0:
            raise ValueError(f"VerletList needs cutoff > 0 and skin >= 0 (got {cutoff}, {skin})")
        self.cutoff = float(cutoff)
        self.skin = float(skin)
        self.builds = 0  # how many times the candidate list was built (for tests and benchmarks)
        self.calls = 0
        self._key = None
        self._ref = None
        self._cand = None
        self._mask = None
        self.changed = True  # whether the last call's pair set differs from the previous call's

    def _build(self, positions, cell, pbc):
        from vesin import NeighborList

        if pbc.any() and abs(np.linalg.det(cell)) < 1e-9:
            raise StructureError(
                "periodic structure with a degenerate cell", fix="give the structure a full 3x3 cell or set pbc=False"
            )
        box = cell if pbc.any() else np.zeros((3, 3))
        nl = NeighborList(cutoff=self.cutoff + self.skin, full_list=True)
        i, j, s = nl.compute(points=positions, box=box, periodic=pbc.tolist() if pbc.any() else False, quantities="ijS")
        order = np.lexsort((j, i))
        i, j = i[order].astype(np.int64), j[order].astype(np.int64)
        shift = s[order].astype(np.float64) @ box
        self._cand = (i, j, shift)
        self._ref = positions.copy()
        self.builds += 1

    def pairs(self, positions, cell, pbc, numbers=None):
        """``(i, j, shift)`` of every pair within the cutoff at ``positions`` (Å), numpy arrays."""
        positions = np.ascontiguousarray(positions, dtype=np.float64)
        cell = np.asarray(cell, dtype=np.float64).reshape(3, 3)
        pbc = np.broadcast_to(np.asarray(pbc, dtype=bool).reshape(-1), (3,))
        key = (
            positions.shape[0],
            cell.tobytes(),
            pbc.tobytes(),
            None if numbers is None else np.asarray(numbers).tobytes(),
        )
        self.calls += 1
        builds = self.builds
        if key != self._key or self._ref is None:
            self._key = key
            self._build(positions, cell, pbc)
        else:
            d = positions - self._ref
            if len(positions) and np.einsum("ij,ij->i", d, d).max() > (0.5 * self.skin) ** 2:
                self._build(positions, cell, pbc)
        i, j, shift = self._cand
        vec = positions[j] - positions[i] + shift
        mask = np.einsum("ij,ij->i", vec, vec) < self.cutoff**2
        self.changed = self.builds != builds or self._mask is None or not np.array_equal(mask, self._mask)
        self._mask = mask
        return i[mask], j[mask], shift[mask]
