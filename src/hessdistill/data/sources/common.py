"""What the dataset readers share: units (from ``ase.units``, CODATA 2014) and small checked constructors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from ase import Atoms, units
from ase.calculators.singlepoint import SinglePointCalculator

from ...core.errors import StructureError
from ...core.structures import MAX_Z

__all__ = [
    "BOHR_ANGSTROM",
    "HARTREE_EV",
    "KBAR_EV_A3",
    "KCAL_MOL_EV",
    "KJ_MOL_EV",
    "check_numbers",
    "existing_file",
    "first_bad",
    "frozen_atoms",
]

HARTREE_EV = units.Hartree  # 27.211386... eV
BOHR_ANGSTROM = units.Bohr  # 0.52917721... Å
KCAL_MOL_EV = units.kcal / units.mol  # 0.0433641... eV
KJ_MOL_EV = units.kJ / units.mol  # 0.0103643... eV
KBAR_EV_A3 = 0.1 * units.GPa  # 1 kBar = 0.1 GPa = 6.2415e-4 eV/Å³ (magnitude; see vasp_stress_to_ase)


def existing_file(path, what: str) -> Path:
    """``path`` as a Path, or a StructureError when it is not a regular file (``what``: the kind of file)."""
    path = Path(path)
    if not path.is_file():
        raise StructureError(
            "file does not exist" if not path.exists() else "is not a regular file",
            path=path,
            fix=f"check the path of the {what} file (download URLs: hessdistill.data.sources.SOURCES)",
        )
    return path


def first_bad(mask: np.ndarray) -> int:
    """Index of the first True of ``mask``."""
    return int(np.flatnonzero(mask)[0])


def check_numbers(z, *, path, structure, fix):
    """Atomic numbers ``z`` as int64, or a StructureError when they are not integers in 1..MAX_Z."""
    z = np.asarray(z)
    if not np.issubdtype(z.dtype, np.integer):
        if not np.issubdtype(z.dtype, np.floating) or not np.all(np.isfinite(z)) or np.any(z != np.round(z)):
            raise StructureError(
                f"atomic numbers are not integers (dtype {z.dtype})", path=path, structure=structure, fix=fix
            )
    z = z.astype(np.int64)
    bad = (z < 1) | (z > MAX_Z)
    if bad.any():
        raise StructureError(
            f"unknown atomic number(s) {sorted({int(v) for v in z[bad]})} (valid: 1..{MAX_Z})",
            path=path,
            structure=structure,
            fix=fix,
        )
    return z


def frozen_atoms(numbers, positions, *, cell=None, pbc=False, energy, forces, stress=None, magmoms=None, info) -> Atoms:
    """Atoms with the file's labels frozen in a SinglePointCalculator and ``info`` added."""
    atoms = Atoms(numbers=numbers, positions=positions, cell=cell, pbc=pbc)
    results = {"energy": float(energy), "forces": forces}
    if stress is not None:
        results["stress"] = stress
    if magmoms is not None:
        results["magmoms"] = magmoms
    atoms.calc = SinglePointCalculator(atoms, **results)
    atoms.info.update(info)
    return atoms
