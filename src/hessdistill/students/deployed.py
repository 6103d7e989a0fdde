"""The fast path a user runs: students (exported files or models in memory) on plain tensors, with Verlet lists.

    from hessdistill.deployed import FastCalculator
    atoms.calc = FastCalculator("results/<subset>/runs/<teacher>/<run>/student.pt2")   # exported (fastest)
    atoms.calc = FastCalculator("results/<subset>/runs/<teacher>/<run>/model.pt")      # the checkpoint, eager

Per evaluation it does only what must be done: the neighbour pairs come from a :class:`~hessdistill.core.neighbours.VerletList`
(rebuilt only when an atom moved more than half the skin), tensors for atomic numbers, structure indices and
(unchanged) pairs are reused between calls, no torch-geometric ``Batch`` is built, and the student runs as one
compiled program (:mod:`hessdistill.students.export`) or as the eager model on the same inputs.

:class:`Runner` evaluates many structures in one call (batched MD, throughput); :class:`FastCalculator` is the
ASE calculator for one structure (energy and forces; stress needs the checkpoint's ``StudentCalculator``).
"""

from __future__ import annotations

import numpy as np
import torch
from ase.calculators.calculator import Calculator, all_changes

from ..core.errors import HessdistillError
from ..core.neighbours import VerletList
from .export import GraphInputs, compute_extras, energy_forces_fn, extras_spec, is_exported, load_exported
from .layers import cap_can_bite


class EagerProgram:
    """A student in memory behind the exported programs' interface (``raw``, ``cutoff``, ``spec``, ...)."""

    def __init__(self, model):
        self.model = model.eval()
        self.arch = model.arch
        self.cutoff = float(model.cutoff)
        try:
            self.spec, prepared = extras_spec(model), True
        except HessdistillError:  # not exportable (e.g. MACE students): the forward prepares its own graph
            self.spec, prepared = None, False
        self.wants_cell = not prepared
        self.dtype = next(model.parameters()).dtype
        self.n_params = int(model.n_params)
        self._fn = energy_forces_fn(self.model, self.spec, prepared=prepared)

    def raw(self, pos, *rest, cell=None):
        pos = pos.detach().requires_grad_(self.model.conservative)
        with torch.enable_grad():
            return self._fn(pos, *rest, cell=cell)

    def check_numbers(self, numbers) -> None:
        self.model.check_numbers(numbers)


def load_program(source, device: str = "cpu"):
    """An exported file, a ``model.pt``/``best.pt`` checkpoint (eager) or a Student in memory, ready to run."""
    from . import Student

    if isinstance(source, (EagerProgram,)) or hasattr(source, "raw"):
        return source
    if isinstance(source, Student):
        return EagerProgram(source.to(device))
    if is_exported(source):
        return load_exported(source, device=device)
    from .checkpoint import load_student

    model, _ = load_student(source, device=device)
    return EagerProgram(model)


class Runner:
    """Energies and forces of a fixed set of structures (same atoms, moving positions) per call.

    One Verlet list per structure; tensors that do not change between calls (atomic numbers, structure index,
    pairs while no pair crossed the cutoff, extras) are kept.  ``numbers``, ``cells`` and ``pbcs`` are per
    structure; ``positions`` passed to :meth:`__call__` are per structure or one (ΣN, 3) array.
    """

    def __init__(self, program, numbers, cells, pbcs, *, skin: float = 0.5, device: str = "cpu"):
        self.program = load_program(program, device=device)
        self.device = torch.device(device)
        self.numbers = [np.asarray(z, dtype=np.int64) for z in numbers]
        for z in self.numbers:
            self.program.check_numbers(z)
        self.cells = [np.asarray(c, dtype=np.float64).reshape(3, 3) for c in cells]
        self.pbcs = [np.broadcast_to(np.asarray(p, dtype=bool), (3,)).copy() for p in pbcs]
        self.sizes = [len(z) for z in self.numbers]
        self.offsets = np.concatenate([[0], np.cumsum(self.sizes)])
        self.lists = [VerletList(self.program.cutoff, skin) for _ in self.numbers]
        dt = self.program.dtype
        self.z = torch.as_tensor(np.concatenate(self.numbers), device=self.device)
        self.batch = torch.as_tensor(np.repeat(np.arange(len(self.sizes)), self.sizes), device=self.device)
        self.natoms = torch.as_tensor(self.sizes, device=self.device)
        self.cell_t = torch.as_tensor(np.stack(self.cells), dtype=dt, device=self.device)
        self._edges = None
        self._extra = None
        self._cap_bites = False  # whether the student's neighbour cap may drop some of the current pairs
        self.dtype = dt

    def _pairs(self, pos):
        changed = self._edges is None
        parts = []
        for m, vl in enumerate(self.lists):
            a, b = self.offsets[m], self.offsets[m + 1]
            parts.append(vl.pairs(pos[a:b], self.cells[m], self.pbcs[m]))
            changed = changed or vl.changed
        if changed:
            i = np.concatenate([p[0] + self.offsets[m] for m, p in enumerate(parts)])
            j = np.concatenate([p[1] + self.offsets[m] for m, p in enumerate(parts)])
            shift = np.concatenate([p[2] for p in parts])
            self._edges = (
                torch.as_tensor(np.stack([i, j]), device=self.device),
                torch.as_tensor(shift, dtype=self.dtype, device=self.device),
            )
            self._extra = None
        return changed

    def __call__(self, positions):
        """``(energies (M,) float64 ndarray, forces (ΣN, 3) float64 ndarray)`` at ``positions`` (Å)."""
        pos = np.concatenate(positions) if isinstance(positions, (list, tuple)) else np.asarray(positions)
        pos = np.ascontiguousarray(pos, dtype=np.float64)
        self._pairs(pos)
        pos_t = torch.as_tensor(pos, dtype=self.dtype, device=self.device)
        edge_index, shift = self._edges
        if edge_index.shape[1] == 0:
            raise HessdistillError(
                "no atom has a neighbour within the student's cutoff "
                f"({self.program.cutoff} Å)\n  fix: check the structure's geometry and cell"
            )
        # the extras depend on the pairs only, except where a neighbour cap (max_neighbors) can drop some of them:
        # then which neighbours are the nearest depends on the positions, and they are recomputed at every call
        if self._extra is None or self._cap_bites:
            g = GraphInputs(
                pos=pos_t,
                z=self.z,
                edge_index=edge_index,
                edge_shift=shift,
                batch=self.batch,
                natoms=self.natoms,
                cell=self.cell_t,
            )
            extra, sizes = compute_extras(self.program.spec, g)
            self._extra = [*extra, *[torch.zeros(s, dtype=torch.int8, device=self.device) for s in sizes]]
            spec = self.program.spec or {}
            self._cap_bites = cap_can_bite(edge_index, int(pos_t.shape[0]), spec.get("max_neighbors"))
        kw = {"cell": self.cell_t} if getattr(self.program, "wants_cell", False) else {}
        energy, forces = self.program.raw(pos_t, self.z, edge_index, shift, self.batch, self.natoms, *self._extra, **kw)
        return (energy.detach().to(torch.float64).cpu().numpy(), forces.detach().to(torch.float64).cpu().numpy())

    @property
    def rebuilds(self) -> int:
        return sum(vl.builds for vl in self.lists)


class FastCalculator(Calculator):
    """ASE calculator (energy, forces) on the fast path: an exported student, a checkpoint, or a Student."""

    # stress is listed so that asking for it reaches calculate(), which says where to get it
    implemented_properties = ["energy", "free_energy", "forces", "stress"]

    def __init__(self, student, *, skin: float = 0.5, device: str = "cpu", **kwargs):
        super().__init__(**kwargs)
        self.program = load_program(student, device=device)
        self.skin = float(skin)
        self.device = device
        self._runner = None
        self._key = None

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        if "stress" in properties:
            raise HessdistillError(
                "FastCalculator computes energies and forces only\n  fix: for stress use "
                "hessdistill.calculator.StudentCalculator.from_checkpoint(model.pt)"
            )
        super().calculate(atoms, properties, system_changes)
        a = self.atoms
        key = (a.numbers.tobytes(), np.asarray(a.cell.array).tobytes(), a.pbc.tobytes())
        if self._runner is None or key != self._key:
            self._runner = Runner(
                self.program, [a.numbers], [a.cell.array], [a.pbc], skin=self.skin, device=self.device
            )
            self._key = key
        energy, forces = self._runner(a.positions)
        self.results["energy"] = float(energy[0])
        self.results["free_energy"] = float(energy[0])
        self.results["forces"] = forces
