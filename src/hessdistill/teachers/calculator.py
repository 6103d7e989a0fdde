"""Any hessdistill teacher as an ASE calculator (energy, forces), e.g. for teacher-driven MD or relaxation
(:meth:`hessdistill.teachers.Teacher.calculator` returns one).  The calculator that re-scores relaxed geometries
(the paper's DFT re-scoring) is :func:`hessdistill.teachers.reference.reference_calculator`."""

from __future__ import annotations

from ase.calculators.calculator import Calculator, all_changes


class TeacherCalculator(Calculator):
    """Wrap a :class:`~hessdistill.teachers.Teacher` (anything with ``energy_forces(atoms) -> (energy, forces)``):
    ``atoms.calc = TeacherCalculator(teacher)``."""

    implemented_properties = ["energy", "free_energy", "forces"]

    def __init__(self, teacher, **kwargs):
        super().__init__(**kwargs)
        self.teacher = teacher

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        e, f = self.teacher.energy_forces(self.atoms)
        self.results = {"energy": float(e), "free_energy": float(e), "forces": f}
