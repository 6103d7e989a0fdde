"""ASE calculators for the sampling tests, importable by name as ASE teachers (``ase:sampling_calculators:<Class>``)."""

from ase.calculators.calculator import Calculator, all_changes
from ase.calculators.emt import EMT


class CrashingEMT(Calculator):
    """EMT with a fresh neighbour list per structure (so its labels depend on the structure alone), counting its
    calls in the class attribute ``calls`` and raising once ``fail_after`` (a class attribute) calls were made:
    a teacher job that dies half way."""

    implemented_properties = ["energy", "forces"]
    calls = 0
    fail_after = None

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        cls = type(self)
        if cls.fail_after is not None and cls.calls >= cls.fail_after:
            raise RuntimeError("the job was killed")
        cls.calls += 1
        inner = EMT()
        self.results = {"energy": inner.get_potential_energy(atoms), "forces": inner.get_forces(atoms)}
