"""Neighbour lists (vesin) and batching (torch-geometric) for students.

A batch is a :class:`torch_geometric.data.Batch` with, for M structures and ΣN atoms:

=================  ==============  ===============================================================
``pos``            (ΣN, 3) float   positions in Å; the differentiable leaf (``requires_grad_`` it)
``z``              (ΣN,) long      atomic numbers
``batch``          (ΣN,) long      structure index of each atom
``natoms``         (M,) long       atoms per structure
``cell``           (M, 3, 3)       cell vectors as rows (zeros for molecules)
``edge_index``     (2, E) long     ``[i, j]``: directed pair, edge vector pos[j] - pos[i] + shift
``edge_shift``     (E, 3) float    Cartesian image shift (S @ cell) of atom j, Å
``energy``         (M,)            reference energy, eV (when the structures have labels)
``forces``         (ΣN, 3)         reference forces, eV/Å (when labelled)
=================  ==============  ===============================================================

Edge vectors are recomputed from ``pos`` by :func:`edge_vectors` inside the model, so energies are
differentiable to any order with respect to positions; the neighbour *topology* is fixed when the batch is
built (it is piecewise constant in the positions, so derivatives are unaffected).  Full neighbour lists
(both directions of every pair) are used.  Molecules (no periodic direction) get no images: a box is not
needed, unlike the official code's 30 Å box with a 12 Å cutoff, where images of large molecules interacted.
"""

from __future__ import annotations

import numpy as np
import torch
from ase import Atoms

from ..errors import StructureError


def neighbour_list(atoms: Atoms, cutoff: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Full neighbour list within ``cutoff`` Å: (i, j, Cartesian shift of j) with vec = r_j - r_i + shift."""
    from vesin import NeighborList

    pos = np.ascontiguousarray(atoms.positions, dtype=np.float64)
    pbc = np.asarray(atoms.pbc, dtype=bool)
    if pbc.any():
        cell = np.asarray(atoms.cell.array, dtype=np.float64)
        if abs(np.linalg.det(cell)) < 1e-9:
            raise StructureError("periodic structure with a degenerate cell", fix="give the structure a full 3x3 cell or set pbc=False")
    else:
        cell = np.zeros((3, 3))
    nl = NeighborList(cutoff=float(cutoff), full_list=True)
    i, j, s = nl.compute(points=pos, box=cell, periodic=pbc.tolist() if pbc.any() else False, quantities="ijS")
    shift = s.astype(np.float64) @ cell
    order = np.lexsort((j, i))  # deterministic edge order
    return i[order].astype(np.int64), j[order].astype(np.int64), shift[order]


def atoms_to_data(atoms: Atoms, cutoff: float, *, dtype=torch.float64, energy=None, forces=None, extra=None):
    """One structure as a torch-geometric ``Data`` with its neighbour graph."""
    from torch_geometric.data import Data

    i, j, shift = neighbour_list(atoms, cutoff)
    d = Data(
        pos=torch.tensor(atoms.positions, dtype=dtype),
        z=torch.tensor(atoms.numbers, dtype=torch.long),
        natoms=torch.tensor([len(atoms)], dtype=torch.long),
        cell=torch.tensor(np.asarray(atoms.cell.array), dtype=dtype).unsqueeze(0),
        edge_index=torch.tensor(np.stack([i, j]), dtype=torch.long),
        edge_shift=torch.tensor(shift, dtype=dtype),
        num_nodes=len(atoms),
    )
    if energy is not None:
        d.energy = torch.tensor([float(energy)], dtype=dtype)
    if forces is not None:
        d.forces = torch.tensor(np.asarray(forces), dtype=dtype).reshape(-1, 3)
    for k, v in (extra or {}).items():
        setattr(d, k, v)
    return d


def collate(data_list):
    """Batch ``Data`` objects (edge indices are offset per structure by torch-geometric)."""
    from torch_geometric.data import Batch

    return Batch.from_data_list(list(data_list))


def batch_atoms(atoms_list, cutoff: float, *, dtype=torch.float64, device=None, with_labels: bool = False):
    """Convenience: a list of ``ase.Atoms`` to one batch on ``device`` (labels from attached calculators)."""
    data = []
    for a in atoms_list:
        e = f = None
        if with_labels:
            e, f = a.get_potential_energy(), a.get_forces()
        data.append(atoms_to_data(a, cutoff, dtype=dtype, energy=e, forces=f))
    b = collate(data)
    return b.to(device) if device is not None else b


def edge_vectors(batch) -> torch.Tensor:
    """(E, 3) edge vectors pos[j] - pos[i] + shift, differentiable with respect to ``batch.pos``."""
    i, j = batch.edge_index
    return batch.pos[j] - batch.pos[i] + batch.edge_shift
