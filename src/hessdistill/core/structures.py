"""Checking one structure: what a structure must satisfy to be stored, labelled or trained on.

:func:`validate_atoms` is the check every reader, the structure store and the teachers apply;
:func:`inspect_atoms` runs it and returns what the structure store keeps of the structure
(:class:`StructureRecord`).  Labels come from an attached calculator (:func:`calc_property`), else
``atoms.info['energy']`` / ``atoms.arrays['forces']`` / ``atoms.info['stress']``.  :func:`as_finite_array`
is the finite-array check the dataset readers share; ``check_distances=True`` adds the overlapping-atoms check
(:data:`MIN_DISTANCE_A`) made when a store is written.  Errors are
:class:`~hessdistill.core.errors.StructureError` naming the file, the structure and the fix.
"""

from __future__ import annotations

import json
import math
import numbers as _numbers
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from ase import Atoms
from ase.calculators.calculator import PropertyNotImplementedError
from ase.calculators.singlepoint import SinglePointCalculator

from .errors import StructureError

__all__ = [
    "FIX_LABELS",
    "MAX_Z",
    "MIN_DISTANCE_A",
    "RESERVED_INFO_KEYS",
    "StructureRecord",
    "as_finite_array",
    "calc_property",
    "inspect_atoms",
    "located",
    "stress_3x3",
    "validate_atoms",
]

#: the largest atomic number (oganesson); valid atomic numbers are 1..MAX_Z
MAX_Z = 118
#: Å: :func:`hessdistill.data.write_structures` rejects structures with two atoms (or an atom and a periodic image)
#: closer than this
MIN_DISTANCE_A = 0.5

#: ``atoms.info`` keys that become datasets (or come from them) instead of entries of the ``info`` JSON
RESERVED_INFO_KEYS = frozenset({"energy", "stress", "charge", "structure_id"})

_ZERO_VECTOR = 1e-6  # Å: a periodic cell vector shorter than this counts as zero
_DEGENERATE = 1e-12  # Gram determinant / product of squared lengths below this: linearly dependent vectors
_DIRECT_MAX_ATOMS = 256  # up to this many atoms the distance check compares all pairs, above it uses vesin

#: the fix named when a structure's energy/forces labels are missing or malformed
FIX_LABELS = (
    "attach ase.calculators.singlepoint.SinglePointCalculator(atoms, energy=..., forces=...), or set "
    "atoms.info['energy'] and atoms.arrays['forces']; pass require_labels=False for unlabelled structures"
)


# ====================================================================== checking one structure
@dataclass
class StructureRecord:
    """What the structure store keeps of one validated structure (see :func:`inspect_atoms`)."""

    energy: float | None
    forces: np.ndarray | None
    stress: np.ndarray | None  # (3, 3)
    charge: int | float | None
    structure_id: str | None
    info_json: str


def located(index, split):
    """How errors name structure ``index`` (of ``split``, when given)."""
    return index if split is None else f"{index} of split {split!r}"


def as_finite_array(value, what, shape, *, path, where, fix, nan_fix="drop or recompute this structure's labels"):
    """``value`` as a float64 array of ``shape`` (None: any) with no NaN/inf, else a StructureError naming ``what``.

    ``fix`` is named when the value is not numeric or has the wrong shape, ``nan_fix`` when it is not finite.
    """
    try:
        arr = np.array(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise StructureError(
            f"{what} is not numeric (got {type(value).__name__})", path=path, structure=where, fix=fix
        ) from None
    if shape is not None and arr.shape != shape:
        raise StructureError(f"{what} has shape {arr.shape}, expected {shape}", path=path, structure=where, fix=fix)
    if not np.isfinite(arr).all():
        raise StructureError(f"{what} contains NaN or inf", path=path, structure=where, fix=nan_fix)
    return arr


def stress_3x3(value, *, path, where):
    """A stress given as 6 Voigt components (xx, yy, zz, yz, xz, xy), 9 values or 3x3, as a finite 3x3 array."""
    try:
        s = np.array(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise StructureError(
            f"stress is not numeric (got {type(value).__name__})",
            path=path,
            structure=where,
            fix="give stress as 6 Voigt components (xx, yy, zz, yz, xz, xy) or a 3x3 matrix",
        ) from None
    if s.shape == (6,):
        xx, yy, zz, yz, xz, xy = s
        s = np.array([[xx, xy, xz], [xy, yy, yz], [xz, yz, zz]])
    elif s.shape == (9,):
        s = s.reshape(3, 3)
    elif s.shape != (3, 3):
        raise StructureError(
            f"stress has shape {s.shape}, expected (6,) Voigt or (3, 3)",
            path=path,
            structure=where,
            fix="give stress as 6 Voigt components (xx, yy, zz, yz, xz, xy) or a 3x3 matrix",
        )
    if not np.isfinite(s).all():
        raise StructureError(
            "stress contains NaN or inf", path=path, structure=where, fix="drop or recompute this structure's labels"
        )
    return s


def _stale(calc, atoms) -> bool:
    """Whether a SinglePointCalculator's results belong to other numbers/positions/cell/pbc than ``atoms``.

    The tolerance of ASE's own ``check_state`` (1e-15), but vectorised: ``check_state`` dominated write time.
    """
    ref = calc.atoms
    if ref is None:
        return False
    if (
        len(ref) != len(atoms)
        or not np.array_equal(ref.numbers, atoms.numbers)
        or not np.array_equal(ref.pbc, atoms.pbc)
    ):
        return True
    return bool(
        np.abs(ref.positions - atoms.positions).max(initial=0.0) > 1e-15
        or np.abs(ref.cell.array - atoms.cell.array).max() > 1e-15
    )


def calc_property(atoms, name, *, compute, path, where):
    """``name`` from the attached calculator, or None when it does not provide it."""
    calc = atoms.calc
    if calc is None:
        return None
    if isinstance(calc, SinglePointCalculator):
        if name not in calc.results:
            return None
        if _stale(calc, atoms):
            raise StructureError(
                "the attached SinglePointCalculator holds results for other positions/cell/numbers than the structure",
                path=path,
                structure=where,
                fix="attach a new SinglePointCalculator after changing the structure, or drop the stale calculator",
            )
        return calc.results[name]
    try:
        return calc.get_property(name, atoms, allow_calculation=compute)
    except (PropertyNotImplementedError, NotImplementedError):
        return None
    except Exception as exc:
        raise StructureError(
            f"the attached calculator failed to give {name!r}: {type(exc).__name__}: {exc}",
            path=path,
            structure=where,
            fix="check the calculator, or attach precomputed results as a SinglePointCalculator",
        ) from exc


def _info_value(value):
    """A JSON-able scalar for ``value``, or a sentinel ``_SKIP`` for non-scalar entries."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, np.generic):
        value = value.item()
        return value if isinstance(value, (bool, int, float, str)) else _SKIP
    if isinstance(value, np.ndarray) and value.ndim == 0:
        return _info_value(value[()])
    if isinstance(value, _numbers.Integral):
        return int(value)
    if isinstance(value, _numbers.Real):
        return float(value)
    return _SKIP


_SKIP = object()


def _info_json(info: Mapping) -> str:
    kept = {}
    for key, value in info.items():
        if not isinstance(key, str) or key in RESERVED_INFO_KEYS:
            continue
        v = _info_value(value)
        if v is not _SKIP:
            kept[key] = v
    return json.dumps(kept, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


@lru_cache(maxsize=32)
def _pairs(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Atom indices (i, j) of all pairs i < j."""
    return np.triu_indices(n, 1)


def _closest_pair(positions, cell, pbc, cutoff=MIN_DISTANCE_A):
    """``(distance, i, j, image)`` of the closest two atoms less than ``cutoff`` apart (i <= j), or None.

    ``image`` says the distance is to a periodic image of atom ``j`` (``i == j``: of the atom itself, reported
    first whenever a periodic cell vector is shorter than ``cutoff``).  With at most ``_DIRECT_MAX_ATOMS`` atoms
    and periodic lattice planes more than ``2 * cutoff`` apart, each pair's separation wrapped to the nearest
    image is the only one that can be shorter than ``cutoff``, so all pairs are compared with numpy (20-60 µs
    for 40 atoms); larger or thinner cells go to vesin's neighbour search (importing it takes ~1 s: it imports
    torch).
    """
    n = len(positions)
    vecs = cell[pbc]
    if len(vecs):
        lengths2 = np.einsum("ij,ij->i", vecs, vecs)
        k = int(np.argmin(lengths2))
        if lengths2[k] < cutoff**2:  # answered here: vesin would enumerate ~cutoff/length images per direction
            return math.sqrt(lengths2[k]), 0, 0, True
        dual = vecs.T @ np.linalg.inv(vecs @ vecs.T)  # (3, n_periodic): vecs @ dual = 1, 1/|column| = plane spacing
        direct = n <= _DIRECT_MAX_ATOMS and np.einsum("ij,ij->j", dual, dual).max() * (2 * cutoff) ** 2 < 1
    else:
        direct = n <= _DIRECT_MAX_ATOMS
    if direct:
        if n < 2:
            return None
        ii, jj = _pairs(n)
        diff = (np.take(positions, jj, axis=0) - np.take(positions, ii, axis=0)).T  # (3, pairs)
        shift = None
        if len(vecs):
            shift = np.round(dual.T @ diff)
            diff -= vecs.T @ shift
        d2 = np.einsum("ij,ij->j", diff, diff)
        k = int(np.argmin(d2))
        if d2[k] >= cutoff**2:
            return None
        return math.sqrt(d2[k]), int(ii[k]), int(jj[k]), bool(shift is not None and shift[:, k].any())
    import vesin

    i, j, shifts, d = vesin.NeighborList(cutoff=cutoff, full_list=False).compute(
        points=positions, box=cell, periodic=pbc, quantities="ijSd"
    )
    if not len(d):
        return None
    k = int(np.argmin(d))
    return float(d[k]), int(min(i[k], j[k])), int(max(i[k], j[k])), bool(shifts[k].any())


def _check_distances(atoms, *, path, where, structure_id):
    """Raise a StructureError when two atoms of ``atoms`` (periodic images included) overlap."""
    found = _closest_pair(
        np.asarray(atoms.positions, dtype=np.float64),
        np.asarray(atoms.cell.array, dtype=np.float64),
        np.asarray(atoms.pbc, dtype=bool),
    )
    if found is None:
        return
    d, i, j, image = found
    if i == j:
        pair = f"atom {i} and its own periodic image are {d:.3f} Å apart (a lattice vector is that short)"
    elif image:
        pair = f"atom {i} and a periodic image of atom {j} are {d:.3f} Å apart"
    else:
        pair = f"atoms {i} and {j} are {d:.3f} Å apart"
    problem = (
        f"{pair}, closer than MIN_DISTANCE_A = {MIN_DISTANCE_A} Å (overlapping atoms make the training loss non-finite)"
    )
    fix = "remove the structure with a selector"
    if structure_id is not None:
        problem += f"; structure_id {structure_id!r}"
        fix += (
            f', e.g. {{"not": {{"info_in": {{"key": "structure_id", "values": [{json.dumps(structure_id)}]}}}}}}'
            " in the subset's selectors"
        )
    raise StructureError(problem, path=path, structure=where, fix=fix + ", or fix the geometry")


def inspect_atoms(
    atoms, *, index, path=None, require_labels=True, split=None, check_distances=False
) -> StructureRecord:
    """Validate one structure and return everything the structure store keeps of it (:func:`validate_atoms`'s checks).

    ``check_distances`` adds the overlapping-atoms check (:data:`MIN_DISTANCE_A`) that store writes make.
    """
    where = located(index, split)
    if not isinstance(atoms, Atoms):
        raise StructureError(
            f"expected an ase.Atoms, got {type(atoms).__name__}",
            path=path,
            structure=where,
            fix="pass lists of ase.Atoms",
        )
    n = len(atoms)
    if n == 0:
        raise StructureError(
            "structure has no atoms", path=path, structure=where, fix="drop empty structures from the input"
        )
    numbers = np.asarray(atoms.numbers)
    unknown = (numbers < 1) | (numbers > MAX_Z)
    if unknown.any():
        bad = sorted({int(z) for z in numbers[unknown]})
        raise StructureError(
            f"unknown element number(s) {bad} (valid: 1..{MAX_Z})",
            path=path,
            structure=where,
            fix="fix the atomic numbers (0 is ASE's dummy atom 'X') or drop this structure",
        )
    if not np.isfinite(atoms.positions).all():
        raise StructureError(
            "positions contain NaN or inf", path=path, structure=where, fix="drop or repair this structure"
        )
    cell = np.asarray(atoms.cell.array, dtype=np.float64)
    if not np.isfinite(cell).all():
        raise StructureError(
            "cell contains NaN or inf", path=path, structure=where, fix="drop or repair this structure"
        )
    pbc = np.asarray(atoms.pbc, dtype=bool)
    if pbc.any():
        vecs = cell[pbc]
        lengths = np.linalg.norm(vecs, axis=1)
        for axis, length in zip(np.flatnonzero(pbc), lengths):
            if length < _ZERO_VECTOR:
                raise StructureError(
                    f"direction {axis} is periodic but cell vector {axis} is zero ({length:.3g} Å)",
                    path=path,
                    structure=where,
                    fix="set the cell (atoms.set_cell) or make that direction non-periodic (atoms.pbc)",
                )
        gram = np.linalg.det(vecs @ vecs.T) / np.prod(lengths**2)
        if gram < _DEGENERATE:
            raise StructureError(
                f"the periodic cell vectors {np.flatnonzero(pbc).tolist()} are linearly dependent (degenerate cell)",
                path=path,
                structure=where,
                fix="fix the cell so the periodic vectors span a non-zero volume/area, or drop this structure",
            )

    # ---- labels: a calculator's results first, then atoms.info / atoms.arrays
    energy = calc_property(atoms, "energy", compute=True, path=path, where=where)
    if energy is None:
        energy = atoms.info.get("energy")
    forces = calc_property(atoms, "forces", compute=True, path=path, where=where)
    if forces is None:
        forces = atoms.arrays.get("forces")
    stress = calc_property(atoms, "stress", compute=False, path=path, where=where)
    if stress is None:
        stress = atoms.info.get("stress")

    if energy is None and forces is None:
        if require_labels:
            raise StructureError("structure has no energy and no forces", path=path, structure=where, fix=FIX_LABELS)
    elif energy is None:
        raise StructureError("structure has forces but no energy", path=path, structure=where, fix=FIX_LABELS)
    elif forces is None:
        raise StructureError("structure has an energy but no forces", path=path, structure=where, fix=FIX_LABELS)
    if energy is not None:
        if isinstance(energy, (bool, np.bool_, str)):
            raise StructureError(f"energy is not a number (got {energy!r})", path=path, structure=where, fix=FIX_LABELS)
        energy = as_finite_array(energy, "energy", None, path=path, where=where, fix=FIX_LABELS)
        if energy.size != 1:
            raise StructureError(
                f"energy has shape {energy.shape}, expected a scalar", path=path, structure=where, fix=FIX_LABELS
            )
        energy = float(energy.reshape(()))
        forces = as_finite_array(
            forces,
            "forces",
            (n, 3),
            path=path,
            where=where,
            fix="give forces as an (N, 3) array in eV/Å, one row per atom",
        )
    if stress is not None:
        stress = stress_3x3(stress, path=path, where=where)

    raw_charge = atoms.info.get("charge")
    charge = None
    if raw_charge is not None:
        charge = _info_value(raw_charge)
        if not isinstance(charge, (int, float)) or isinstance(charge, bool) or not math.isfinite(charge):
            raise StructureError(
                f"info['charge'] must be a finite number (got {raw_charge!r})",
                path=path,
                structure=where,
                fix="set atoms.info['charge'] to the total charge in e",
            )

    sid = atoms.info.get("structure_id")
    if sid is not None:
        if isinstance(sid, np.str_):
            sid = str(sid)
        if not isinstance(sid, str) or not sid:
            raise StructureError(
                f"info['structure_id'] must be a non-empty string (got {sid!r})",
                path=path,
                structure=where,
                fix="use ids like 'mp-1234:17', or remove the key to get '<split>:<index>'",
            )

    try:
        info_json = _info_json(atoms.info)
    except ValueError as exc:  # e.g. a circular reference in a custom object
        raise StructureError(
            f"atoms.info cannot be stored as JSON: {exc}",
            path=path,
            structure=where,
            fix="keep only scalar/str values in atoms.info",
        ) from exc
    if check_distances:
        _check_distances(atoms, path=path, where=where, structure_id=sid)
    return StructureRecord(energy, forces, stress, charge, sid, info_json)


def validate_atoms(atoms, *, index, path=None, require_labels=True) -> None:
    """Raise :class:`~hessdistill.core.errors.StructureError` when ``atoms`` cannot be stored or trained on.

    Checks: at least one atom; finite positions and cell; atomic numbers in 1..118; every periodic
    direction has a non-zero cell vector and the periodic vectors are linearly independent; energy and
    forces present (when ``require_labels``; never only one of them), forces of shape (N, 3), no NaN/inf
    in energy, forces or stress; ``info['charge']`` numeric and ``info['structure_id']`` a string when set.
    Labels come from an attached calculator's results, else ``atoms.info['energy']`` /
    ``atoms.arrays['forces']`` / ``atoms.info['stress']``.  Overlapping atoms (closer than
    :data:`MIN_DISTANCE_A`) are not checked here, so that readers can return such structures for a selector to
    drop; :func:`hessdistill.data.write_structures` rejects them.
    """
    inspect_atoms(atoms, index=index, path=path, require_labels=require_labels)
