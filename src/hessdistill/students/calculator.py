"""Trained students as ASE calculators.

    from hessdistill.calculator import StudentCalculator
    atoms.calc = StudentCalculator.from_checkpoint("results/<subset>/runs/<teacher>/<run>/model.pt")

Energy (eV) and forces (eV/Å) for every student; stress (eV/Å³, ASE convention) for conservative students
on periodic structures, from the derivative of the energy with respect to a homogeneous strain ε applied to
positions and cell: σ = (1/V) ∂E/∂ε.  The neighbour graph is rebuilt for every new geometry.

Checkpoints are read by :func:`hessdistill.students.checkpoint.load_student` (also importable from here).
"""

from __future__ import annotations

import numpy as np
import torch
from ase.calculators.calculator import Calculator, all_changes

from ..core.errors import HessdistillError
from .checkpoint import load_student

__all__ = ["StudentCalculator", "load_student"]


class StudentCalculator(Calculator):
    implemented_properties = ["energy", "free_energy", "forces", "stress"]

    def __init__(self, model, device="cpu", **kwargs):
        super().__init__(**kwargs)
        self.model = model.to(device)
        self.device = torch.device(device)
        self.dtype = next(model.parameters()).dtype

    @classmethod
    def from_checkpoint(cls, path, device="cpu", **kwargs):
        model, _ = load_student(path, device=device)
        return cls(model, device=device, **kwargs)

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        from ..core.graphs import atoms_to_data, collate

        super().calculate(atoms, properties, system_changes)
        a = self.atoms
        batch = collate([atoms_to_data(a, self.model.cutoff, dtype=self.dtype, student=self.model)]).to(self.device)
        want_stress = "stress" in properties and a.pbc.any() and self.model.conservative
        if want_stress:
            if not a.pbc.all():
                raise HessdistillError("stress needs a structure periodic in all three directions")
            eps = torch.zeros(3, 3, dtype=self.dtype, device=self.device, requires_grad=True)
            deform = torch.eye(3, dtype=self.dtype, device=self.device) + 0.5 * (eps + eps.T)
            # positions and image shifts under the strain; forces come from the same graph at eps = 0
            batch.pos = batch.pos.detach().clone().requires_grad_(True) @ deform
            batch.edge_shift = batch.edge_shift @ deform
            energy, forces = self.model(batch, create_graph=True)
            (g_eps,) = torch.autograd.grad(energy.sum(), eps)
            stress = (g_eps / a.get_volume()).detach().cpu().numpy()
            self.results["stress"] = stress.reshape(9)[[0, 4, 8, 5, 2, 1]]
        else:
            energy, forces = self.model(batch, create_graph=False)
        e = float(energy.detach().sum())
        self.results["energy"] = e
        self.results["free_energy"] = e
        self.results["forces"] = forces.detach().cpu().numpy().astype(np.float64)
        if "stress" in properties and "stress" not in self.results:
            raise HessdistillError("stress is only available for conservative students on periodic structures")
