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

Precomputed extras.  ``atoms_to_data(..., student=model)`` lets the student check the atomic numbers and attach
the topology-only quantities its forward needs (e.g. GemNet's reverse edges and triplets), once per structure on
the CPU (see :meth:`hessdistill.students.Student.graph_extras`), and tags the graph ``prepared_for`` that
student configuration, so the forward does no graph work and no host-device synchronisation.  Each extra is a
tensor concatenated along dim 0 when batched, with an int ``<key>__inc`` (the structure's count of what it
indexes) added once per preceding structure, or an int size ``<key>__max`` of which :func:`collate` gives the
batch the maximum as a plain Python int (``batch.<key>``: it stays on the host after ``.to(device)``).
Batches built without a student carry no extras; the students then do that work in the forward.
"""

from __future__ import annotations

import numpy as np
import torch
from ase import Atoms

from .neighbours import VerletList


def neighbour_list(atoms: Atoms, cutoff: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Full neighbour list within ``cutoff`` Å: (i, j, Cartesian shift of j) with vec = r_j - r_i + shift.

    One fresh search (a :class:`~hessdistill.core.neighbours.VerletList` without skin), pairs sorted by (i, j).
    """
    return VerletList(cutoff, skin=0.0).pairs(atoms.positions, atoms.cell.array, atoms.pbc)


INC, MAX = "__inc", "__max"  # suffixes of an extra's batching offset and of a size reduced to its batch maximum
_GRAPH_DATA = None


def _graph_data_class():
    """:class:`GraphData`, defined on first use (torch-geometric is imported lazily)."""
    global _GRAPH_DATA
    if _GRAPH_DATA is None:
        from torch_geometric.data import Data

        class GraphData(Data):
            """A structure's ``Data``; an extra ``key`` with an int ``key + "__inc"`` is offset by it when batched."""

            def __inc__(self, key, value, *args, **kwargs):
                if key.endswith((INC, MAX)):
                    return 0
                inc = getattr(self, key + INC, None)
                if inc is not None:
                    return int(inc)
                return super().__inc__(key, value, *args, **kwargs)

        GraphData.__qualname__ = "GraphData"  # picklable as hessdistill.core.graphs.GraphData (module __getattr__)
        _GRAPH_DATA = GraphData
    return _GRAPH_DATA


def __getattr__(name):
    if name == "GraphData":
        return _graph_data_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def atoms_to_data(
    atoms: Atoms, cutoff: float, *, dtype=torch.float64, energy=None, forces=None, extra=None, student=None
):
    """One structure as a torch-geometric ``Data`` with its neighbour graph.

    With ``student``: the student checks the atomic numbers (raising for elements it cannot embed) and attaches
    its precomputed extras (see the module docstring); the graph is tagged ``prepared_for`` the student.
    """
    if student is not None:
        student.check_numbers(atoms.numbers)
    i, j, shift = neighbour_list(atoms, cutoff)
    d = _graph_data_class()(
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
    if student is not None:
        for key, value in student.graph_extras(d).items():
            if isinstance(value, int):
                d[key + MAX] = value
            else:
                d[key], d[key + INC] = value[0], int(value[1])
        d.prepared_for = student.data_tag
    return d


def collate(data_list):
    """Batch ``Data`` objects (edge indices and precomputed extras are offset per structure; sizes reduced)."""
    from torch_geometric.data import Batch

    data_list = list(data_list)
    batch = Batch.from_data_list(data_list)
    for key in data_list[0].keys() if data_list else ():
        if key.endswith(MAX):
            batch[key[: -len(MAX)]] = max(int(d[key]) for d in data_list)
    return batch


def batch_atoms(
    atoms_list, cutoff: float, *, dtype=torch.float64, device=None, with_labels: bool = False, student=None
):
    """Convenience: a list of ``ase.Atoms`` to one batch on ``device`` (labels from attached calculators).

    ``student``: prepare the graphs for it (see :func:`atoms_to_data`).
    """
    data = []
    for a in atoms_list:
        e = f = None
        if with_labels:
            e, f = a.get_potential_energy(), a.get_forces()
        data.append(atoms_to_data(a, cutoff, dtype=dtype, energy=e, forces=f, student=student))
    b = collate(data)
    return b.to(device) if device is not None else b


def edge_vectors(batch) -> torch.Tensor:
    """(E, 3) edge vectors pos[j] - pos[i] + shift, differentiable with respect to ``batch.pos``."""
    i, j = batch.edge_index
    # index_select, not pos[j]: its backward is an index_add (advanced indexing's is a sorting index_put)
    return torch.index_select(batch.pos, 0, j) - torch.index_select(batch.pos, 0, i) + batch.edge_shift
