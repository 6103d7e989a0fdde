"""Any hessdistill teacher as an ASE calculator (energy, forces), e.g. for teacher-driven MD or relaxation."""

from __future__ import annotations

from ase.calculators.calculator import Calculator, all_changes

from .base import Teacher


class TeacherCalculator(Calculator):
    """Wrap a :class:`~hessdistill.teachers.Teacher`: ``atoms.calc = TeacherCalculator(teacher)``."""

    implemented_properties = ["energy", "free_energy", "forces"]

    def __init__(self, teacher: Teacher, **kwargs):
        super().__init__(**kwargs)
        self.teacher = teacher

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        e, f = self.teacher.energy_forces(self.atoms)
        self.results = {"energy": float(e), "free_energy": float(e), "forces": f}
