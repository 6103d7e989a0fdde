"""The HDF5 structure store: structures, reference labels and provenance in one ragged file.

Layout (``format = "hessdistill.structures"``, ``format_version = 1``), one group per split::

    /<split>/numbers       (ΣN,)     int64    atomic numbers
    /<split>/positions     (ΣN, 3)   float64  Å
    /<split>/cell          (M, 3, 3) float64  Å (rows are the cell vectors; zero for molecules)
    /<split>/pbc           (M, 3)    bool
    /<split>/n_atoms       (M,)      int64
    /<split>/offsets       (M+1,)    int64    structure m owns atoms offsets[m]:offsets[m+1]
    /<split>/energy        (M,)      float64  eV        } optional, but both or neither
    /<split>/forces        (ΣN, 3)   float64  eV/Å      } (all-or-nothing per split)
    /<split>/stress        (M, 3, 3) float64  eV/Å³     optional, ASE sign convention
    /<split>/charge        (M,)      int64 or float64   optional total charge (e)
    /<split>/structure_id  (M,)      utf-8 str  stable id ("<split>:<index>" unless given)
    /<split>/info          (M,)      utf-8 str  JSON of the scalar/str entries of ``atoms.info``

File attributes: ``format``, ``format_version``, the units (``energy_unit``, ``length_unit``,
``force_unit``, ``stress_unit``, ``charge_unit``), ``labels`` (``"dft"``, ``"teacher:<name>:<version>"``,
``"none"``) and the caller's provenance attributes.  Group attributes: ``n_structures`` and
``content_hash`` (see :func:`content_hash`).

Every structure is validated before anything is written (see :func:`validate_atoms`).  On write, moreover,
no two atoms may be closer than :data:`MIN_DISTANCE_A` (0.5 Å), periodic images included: overlapping atoms
make the training loss non-finite, so :func:`write_structures` raises a
:class:`~hessdistill.core.errors.StructureError` naming the structure, the atom pair and its distance (readers
do not check this, so that a subset selector can drop such structures before the store is written).

Writes go through :func:`hessdistill.core.atomic.atomic_path` and are deterministic: the same input gives a
byte-identical file.
"""

from __future__ import annotations

import hashlib
import json
import math
import numbers as _numbers
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from ase import Atoms
from ase.calculators.calculator import PropertyNotImplementedError
from ase.calculators.singlepoint import SinglePointCalculator
from ase.data import chemical_symbols

from ..core.atomic import atomic_path
from ..core.errors import StoreError, StructureError

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "MIN_DISTANCE_A",
    "UNITS",
    "StructureStore",
    "content_hash",
    "read_extxyz",
    "read_structures",
    "structures_from_file",
    "validate_atoms",
    "write_extxyz",
    "write_structures",
]

FORMAT = "hessdistill.structures"
FORMAT_VERSION = 1
UNITS = {
    "energy_unit": "eV",
    "length_unit": "Angstrom",
    "force_unit": "eV/Angstrom",
    "stress_unit": "eV/Angstrom^3",
    "charge_unit": "e",
}
MAX_Z = 118
#: Å: :func:`write_structures` rejects structures with two atoms (or an atom and a periodic image) closer than this
MIN_DISTANCE_A = 0.5

REQUIRED_DATASETS = ("numbers", "positions", "cell", "pbc", "n_atoms", "offsets")
LABEL_DATASETS = ("energy", "forces")
OPTIONAL_DATASETS = ("stress", "charge")
STRING_DATASETS = ("structure_id", "info")
#: the fixed order in which datasets are written and hashed
DATASET_ORDER = REQUIRED_DATASETS + LABEL_DATASETS + OPTIONAL_DATASETS + STRING_DATASETS

#: ``atoms.info`` keys that become datasets (or come from them) instead of entries of the ``info`` JSON
RESERVED_INFO_KEYS = frozenset({"energy", "stress", "charge", "structure_id"})
_RESERVED_ATTRS = frozenset({"format", "format_version", "labels", *UNITS})

_HASH_TAG = b"hessdistill.structures/content_hash/v1\n"
_ZERO_VECTOR = 1e-6  # Å: a periodic cell vector shorter than this counts as zero
_DEGENERATE = 1e-12  # Gram determinant / product of squared lengths below this: linearly dependent vectors
_DIRECT_MAX_ATOMS = 256  # up to this many atoms the distance check compares all pairs, above it uses vesin

_FIX_LABELS = (
    "attach ase.calculators.singlepoint.SinglePointCalculator(atoms, energy=..., forces=...), or set "
    "atoms.info['energy'] and atoms.arrays['forces']; pass require_labels=False for unlabelled structures"
)
_FIX_REWRITE = "re-create the file (rerun the step that wrote it, e.g. with hessdistill.data.write_structures)"


# ====================================================================== checking one structure
@dataclass
class _Record:
    """What the store keeps of one validated structure."""

    energy: float | None
    forces: np.ndarray | None
    stress: np.ndarray | None  # (3, 3)
    charge: int | float | None
    structure_id: str | None
    info_json: str


def _where(index, split):
    return index if split is None else f"{index} of split {split!r}"


def _as_finite_array(value, what, shape, *, path, where, fix, nan_fix="drop or recompute this structure's labels"):
    try:
        arr = np.array(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise StructureError(f"{what} is not numeric (got {type(value).__name__})", path=path, structure=where,
                             fix=fix) from None
    if shape is not None and arr.shape != shape:
        raise StructureError(f"{what} has shape {arr.shape}, expected {shape}", path=path, structure=where, fix=fix)
    if not np.isfinite(arr).all():
        raise StructureError(f"{what} contains NaN or inf", path=path, structure=where, fix=nan_fix)
    return arr


def _stress_3x3(value, *, path, where):
    try:
        s = np.array(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise StructureError(f"stress is not numeric (got {type(value).__name__})", path=path, structure=where,
                             fix="give stress as 6 Voigt components (xx, yy, zz, yz, xz, xy) or a 3x3 matrix") from None
    if s.shape == (6,):
        xx, yy, zz, yz, xz, xy = s
        s = np.array([[xx, xy, xz], [xy, yy, yz], [xz, yz, zz]])
    elif s.shape == (9,):
        s = s.reshape(3, 3)
    elif s.shape != (3, 3):
        raise StructureError(f"stress has shape {s.shape}, expected (6,) Voigt or (3, 3)", path=path, structure=where,
                             fix="give stress as 6 Voigt components (xx, yy, zz, yz, xz, xy) or a 3x3 matrix")
    if not np.isfinite(s).all():
        raise StructureError("stress contains NaN or inf", path=path, structure=where,
                             fix="drop or recompute this structure's labels")
    return s


def _stale(calc, atoms) -> bool:
    """Whether a SinglePointCalculator's results belong to other numbers/positions/cell/pbc than ``atoms``.

    The tolerance of ASE's own ``check_state`` (1e-15), but vectorised: ``check_state`` dominated write time.
    """
    ref = calc.atoms
    if ref is None:
        return False
    if len(ref) != len(atoms) or not np.array_equal(ref.numbers, atoms.numbers) or not np.array_equal(ref.pbc, atoms.pbc):
        return True
    return bool(np.abs(ref.positions - atoms.positions).max(initial=0.0) > 1e-15
                or np.abs(ref.cell.array - atoms.cell.array).max() > 1e-15)


def _calc_property(atoms, name, *, compute, path, where):
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
                path=path, structure=where,
                fix="attach a new SinglePointCalculator after changing the structure, or drop the stale calculator",
            )
        return calc.results[name]
    try:
        return calc.get_property(name, atoms, allow_calculation=compute)
    except (PropertyNotImplementedError, NotImplementedError):
        return None
    except Exception as exc:
        raise StructureError(f"the attached calculator failed to give {name!r}: {type(exc).__name__}: {exc}",
                             path=path, structure=where,
                             fix="check the calculator, or attach precomputed results as a SinglePointCalculator") from exc


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
        points=positions, box=cell, periodic=pbc, quantities="ijSd")
    if not len(d):
        return None
    k = int(np.argmin(d))
    return float(d[k]), int(min(i[k], j[k])), int(max(i[k], j[k])), bool(shifts[k].any())


def _check_distances(atoms, *, path, where, structure_id):
    """Raise a StructureError when two atoms of ``atoms`` (periodic images included) overlap."""
    found = _closest_pair(np.asarray(atoms.positions, dtype=np.float64),
                          np.asarray(atoms.cell.array, dtype=np.float64), np.asarray(atoms.pbc, dtype=bool))
    if found is None:
        return
    d, i, j, image = found
    if i == j:
        pair = f"atom {i} and its own periodic image are {d:.3f} Å apart (a lattice vector is that short)"
    elif image:
        pair = f"atom {i} and a periodic image of atom {j} are {d:.3f} Å apart"
    else:
        pair = f"atoms {i} and {j} are {d:.3f} Å apart"
    problem = (f"{pair}, closer than MIN_DISTANCE_A = {MIN_DISTANCE_A} Å (overlapping atoms make the training loss "
               "non-finite)")
    fix = "remove the structure with a selector"
    if structure_id is not None:
        problem += f"; structure_id {structure_id!r}"
        fix += (f', e.g. {{"not": {{"info_in": {{"key": "structure_id", "values": [{json.dumps(structure_id)}]}}}}}}'
                " in the subset's selectors")
    raise StructureError(problem, path=path, structure=where, fix=fix + ", or fix the geometry")


def _inspect(atoms, *, index, path=None, require_labels=True, split=None, check_distances=False) -> _Record:
    """Validate one structure and pull out everything the store keeps of it.

    ``check_distances`` adds the overlapping-atoms check (:data:`MIN_DISTANCE_A`) that store writes make.
    """
    where = _where(index, split)
    if not isinstance(atoms, Atoms):
        raise StructureError(f"expected an ase.Atoms, got {type(atoms).__name__}", path=path, structure=where,
                             fix="pass lists of ase.Atoms")
    n = len(atoms)
    if n == 0:
        raise StructureError("structure has no atoms", path=path, structure=where, fix="drop empty structures from the input")
    numbers = np.asarray(atoms.numbers)
    unknown = (numbers < 1) | (numbers > MAX_Z)
    if unknown.any():
        bad = sorted({int(z) for z in numbers[unknown]})
        raise StructureError(f"unknown element number(s) {bad} (valid: 1..{MAX_Z})", path=path, structure=where,
                             fix="fix the atomic numbers (0 is ASE's dummy atom 'X') or drop this structure")
    if not np.isfinite(atoms.positions).all():
        raise StructureError("positions contain NaN or inf", path=path, structure=where, fix="drop or repair this structure")
    cell = np.asarray(atoms.cell.array, dtype=np.float64)
    if not np.isfinite(cell).all():
        raise StructureError("cell contains NaN or inf", path=path, structure=where, fix="drop or repair this structure")
    pbc = np.asarray(atoms.pbc, dtype=bool)
    if pbc.any():
        vecs = cell[pbc]
        lengths = np.linalg.norm(vecs, axis=1)
        for axis, length in zip(np.flatnonzero(pbc), lengths):
            if length < _ZERO_VECTOR:
                raise StructureError(
                    f"direction {axis} is periodic but cell vector {axis} is zero ({length:.3g} Å)",
                    path=path, structure=where,
                    fix="set the cell (atoms.set_cell) or make that direction non-periodic (atoms.pbc)",
                )
        gram = np.linalg.det(vecs @ vecs.T) / np.prod(lengths**2)
        if gram < _DEGENERATE:
            raise StructureError(
                f"the periodic cell vectors {np.flatnonzero(pbc).tolist()} are linearly dependent (degenerate cell)",
                path=path, structure=where,
                fix="fix the cell so the periodic vectors span a non-zero volume/area, or drop this structure",
            )

    # ---- labels: a calculator's results first, then atoms.info / atoms.arrays
    energy = _calc_property(atoms, "energy", compute=True, path=path, where=where)
    if energy is None:
        energy = atoms.info.get("energy")
    forces = _calc_property(atoms, "forces", compute=True, path=path, where=where)
    if forces is None:
        forces = atoms.arrays.get("forces")
    stress = _calc_property(atoms, "stress", compute=False, path=path, where=where)
    if stress is None:
        stress = atoms.info.get("stress")

    if energy is None and forces is None:
        if require_labels:
            raise StructureError("structure has no energy and no forces", path=path, structure=where, fix=_FIX_LABELS)
    elif energy is None:
        raise StructureError("structure has forces but no energy", path=path, structure=where, fix=_FIX_LABELS)
    elif forces is None:
        raise StructureError("structure has an energy but no forces", path=path, structure=where, fix=_FIX_LABELS)
    if energy is not None:
        if isinstance(energy, (bool, np.bool_, str)):
            raise StructureError(f"energy is not a number (got {energy!r})", path=path, structure=where, fix=_FIX_LABELS)
        energy = _as_finite_array(energy, "energy", None, path=path, where=where, fix=_FIX_LABELS)
        if energy.size != 1:
            raise StructureError(f"energy has shape {energy.shape}, expected a scalar", path=path, structure=where,
                                 fix=_FIX_LABELS)
        energy = float(energy.reshape(()))
        forces = _as_finite_array(forces, "forces", (n, 3), path=path, where=where,
                                  fix="give forces as an (N, 3) array in eV/Å, one row per atom")
    if stress is not None:
        stress = _stress_3x3(stress, path=path, where=where)

    raw_charge = atoms.info.get("charge")
    charge = None
    if raw_charge is not None:
        charge = _info_value(raw_charge)
        if not isinstance(charge, (int, float)) or isinstance(charge, bool) or not math.isfinite(charge):
            raise StructureError(f"info['charge'] must be a finite number (got {raw_charge!r})", path=path,
                                 structure=where, fix="set atoms.info['charge'] to the total charge in e")

    sid = atoms.info.get("structure_id")
    if sid is not None:
        if isinstance(sid, np.str_):
            sid = str(sid)
        if not isinstance(sid, str) or not sid:
            raise StructureError(f"info['structure_id'] must be a non-empty string (got {sid!r})", path=path,
                                 structure=where, fix="use ids like 'mp-1234:17', or remove the key to get '<split>:<index>'")

    try:
        info_json = _info_json(atoms.info)
    except ValueError as exc:  # e.g. a circular reference in a custom object
        raise StructureError(f"atoms.info cannot be stored as JSON: {exc}", path=path, structure=where,
                             fix="keep only scalar/str values in atoms.info") from exc
    if check_distances:
        _check_distances(atoms, path=path, where=where, structure_id=sid)
    return _Record(energy, forces, stress, charge, sid, info_json)


def validate_atoms(atoms, *, index, path=None, require_labels=True) -> None:
    """Raise :class:`~hessdistill.core.errors.StructureError` when ``atoms`` cannot be stored or trained on.

    Checks: at least one atom; finite positions and cell; atomic numbers in 1..118; every periodic
    direction has a non-zero cell vector and the periodic vectors are linearly independent; energy and
    forces present (when ``require_labels``; never only one of them), forces of shape (N, 3), no NaN/inf
    in energy, forces or stress; ``info['charge']`` numeric and ``info['structure_id']`` a string when set.
    Labels come from an attached calculator's results, else ``atoms.info['energy']`` /
    ``atoms.arrays['forces']`` / ``atoms.info['stress']``.  Overlapping atoms (closer than
    :data:`MIN_DISTANCE_A`) are not checked here, so that readers can return such structures for a selector to
    drop; :func:`write_structures` rejects them.
    """
    _inspect(atoms, index=index, path=path, require_labels=require_labels)


# ====================================================================== hashing
def content_hash(arrays: Mapping[str, Any]) -> str:
    """sha256 (hex) of one split's datasets, independent of HDF5 internals.

    Datasets are hashed in :data:`DATASET_ORDER`; each contributes its name, little-endian dtype and
    shape, then its C-order bytes; string datasets contribute each string's UTF-8 length and bytes.
    Absent datasets are skipped, so identical content always gives the identical hash.
    """
    h = hashlib.sha256(_HASH_TAG)
    for name in DATASET_ORDER:
        if name not in arrays:
            continue
        value = arrays[name]
        if name in STRING_DATASETS:
            strings = [s.decode("utf-8") if isinstance(s, bytes) else str(s) for s in value]
            h.update(f"{name}|utf-8|({len(strings)},)\n".encode())
            for s in strings:
                b = s.encode("utf-8")
                h.update(len(b).to_bytes(8, "little"))
                h.update(b)
        else:
            a = np.asarray(value)
            a = np.ascontiguousarray(a.astype(a.dtype.newbyteorder("<"), copy=False))
            h.update(f"{name}|{a.dtype.str}|{a.shape}\n".encode())
            h.update(a.tobytes())
    return h.hexdigest()


# ====================================================================== writing
def _split_arrays(split: str, atoms_list: list, *, path, require_labels: bool) -> dict:
    records = [_inspect(a, index=i, path=path, require_labels=require_labels, split=split, check_distances=True)
               for i, a in enumerate(atoms_list)]
    m = len(records)

    def all_or_nothing(attr, what, fix):
        present = [getattr(r, attr) is not None for r in records]
        if any(present) and not all(present):
            first_with = present.index(True)
            first_without = present.index(False)
            raise StructureError(
                f"structure has no {what} while other structures of split {split!r} do "
                f"(e.g. structure {first_with}); {what} must be given for all structures of a split or for none",
                path=path, structure=_where(first_without, split), fix=fix,
            )
        return m > 0 and all(present)

    has_labels = all_or_nothing("energy", "energy/forces", _FIX_LABELS)
    if m == 0:
        has_labels = require_labels
    has_stress = all_or_nothing("stress", "stress",
                                "give stress for every structure of the split, or remove it from all (e.g. "
                                "atoms.calc.results.pop('stress'))")
    has_charge = all_or_nothing("charge", "charge", "set atoms.info['charge'] for every structure of the split, or for none")

    n_atoms = np.array([len(a) for a in atoms_list], dtype=np.int64)
    offsets = np.zeros(m + 1, dtype=np.int64)
    np.cumsum(n_atoms, out=offsets[1:])
    arrays = {
        "numbers": np.concatenate([a.numbers for a in atoms_list]).astype(np.int64) if m else np.zeros(0, np.int64),
        "positions": (np.concatenate([a.positions for a in atoms_list]).astype(np.float64) if m
                      else np.zeros((0, 3), np.float64)),
        "cell": (np.stack([a.cell.array for a in atoms_list]).astype(np.float64) if m
                 else np.zeros((0, 3, 3), np.float64)),
        "pbc": np.stack([a.pbc for a in atoms_list]).astype(bool) if m else np.zeros((0, 3), bool),
        "n_atoms": n_atoms,
        "offsets": offsets,
    }
    if has_labels:
        arrays["energy"] = np.array([r.energy for r in records], dtype=np.float64)
        arrays["forces"] = np.concatenate([r.forces for r in records]) if m else np.zeros((0, 3), np.float64)
    if has_stress:
        arrays["stress"] = np.stack([r.stress for r in records]).astype(np.float64)
    if has_charge:
        charges = [r.charge for r in records]
        integral = all(isinstance(c, int) for c in charges)
        arrays["charge"] = np.array(charges, dtype=np.int64 if integral else np.float64)

    ids = [r.structure_id if r.structure_id is not None else f"{split}:{i}" for i, r in enumerate(records)]
    seen: dict[str, int] = {}
    for i, sid in enumerate(ids):
        if sid in seen:
            raise StructureError(
                f"structure_id {sid!r} is also used by structure {seen[sid]} of split {split!r}; ids must be unique "
                "within a split", path=path, structure=_where(i, split),
                fix="give every structure a distinct atoms.info['structure_id'], or remove the key to get '<split>:<index>'",
            )
        seen[sid] = i
    arrays["structure_id"] = ids
    arrays["info"] = [r.info_json for r in records]
    return arrays


def _attr_value(key, value):
    if isinstance(value, (bool, np.bool_)):
        return np.bool_(value)
    if isinstance(value, (str, np.str_)):
        return str(value)
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, (_numbers.Integral, np.integer)):
        return np.int64(value)
    if isinstance(value, (_numbers.Real, np.floating)):
        return np.float64(value)
    def default(o):
        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
        if isinstance(o, os.PathLike):
            return os.fspath(o)
        raise TypeError(f"{type(o).__name__} is not JSON serialisable")

    try:  # None, lists, dicts, arrays: a canonical JSON string
        return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=default)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"attribute {key!r}: cannot store a {type(value).__name__} ({exc})") from None


def _normalise_splits(splits) -> dict[str, list]:
    if isinstance(splits, Atoms):
        raise TypeError("write_structures takes a list of ase.Atoms or a dict split -> list of ase.Atoms, "
                        "not a single Atoms (wrap it in a list)")
    if not isinstance(splits, Mapping):
        splits = {"all": splits}
    out = {}
    for name, atoms_list in splits.items():
        if not isinstance(name, str) or not name or "/" in name or name in (".", ".."):
            raise ValueError(f"split names must be non-empty strings without '/', got {name!r}")
        if isinstance(atoms_list, Atoms):
            raise TypeError(f"split {name!r}: expected a list of ase.Atoms, got a single Atoms (wrap it in a list)")
        out[name] = list(atoms_list)
    if not out:
        raise ValueError("write_structures needs at least one split")
    return out


def write_structures(path, splits, *, attrs: Mapping | None = None, labels: str = "dft",
                     require_labels: bool = True) -> Path:
    """Validate and write structures to an HDF5 structure store; return ``path``.

    ``splits`` maps split names to lists of ``ase.Atoms`` (a plain list is written as split ``"all"``).
    Energy/forces/stress come from an attached calculator's results (a SinglePointCalculator, or any
    calculator, which is then asked for energy and forces), else from ``atoms.info['energy']``,
    ``atoms.arrays['forces']`` and ``atoms.info['stress']``.  ``atoms.info['charge']`` becomes the
    ``charge`` dataset, ``atoms.info['structure_id']`` the id.  Every structure is validated before the
    file is touched (:func:`validate_atoms`, and no two atoms closer than :data:`MIN_DISTANCE_A`, periodic
    images included); the file appears atomically.  ``labels`` is recorded as given, except that a file
    without any labels records ``"none"``.  ``attrs`` are free provenance attributes.
    """
    path = Path(path)
    splits = _normalise_splits(splits)
    attrs = dict(attrs or {})
    clash = sorted(_RESERVED_ATTRS & set(attrs))
    if clash:
        raise ValueError(f"attrs may not set the reserved attribute(s) {clash}; labels go in the labels= argument")
    file_attrs = {"format": FORMAT, "format_version": np.int64(FORMAT_VERSION), **UNITS}
    provenance = {str(k): _attr_value(k, v) for k, v in sorted(attrs.items(), key=lambda kv: str(kv[0]))}

    built = {name: _split_arrays(name, lst, path=path, require_labels=require_labels) for name, lst in splits.items()}
    any_labels = any("energy" in arrays for arrays in built.values())
    file_attrs["labels"] = str(labels) if any_labels else "none"

    string_dtype = h5py.string_dtype("utf-8")
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w", libver="earliest", track_order=True) as f:
            for key, value in {**file_attrs, **provenance}.items():
                f.attrs[key] = value
            for name, arrays in built.items():
                group = f.create_group(name, track_order=True)
                for ds in DATASET_ORDER:
                    if ds not in arrays:
                        continue
                    data = arrays[ds]
                    if ds in STRING_DATASETS:
                        data = np.array(data, dtype=object).reshape(len(data))
                        group.create_dataset(ds, data=data, dtype=string_dtype, track_times=False)
                    else:
                        group.create_dataset(ds, data=data, track_times=False)
                group.attrs["n_structures"] = np.int64(len(arrays["n_atoms"]))
                group.attrs["content_hash"] = content_hash(arrays)
    return path


# ====================================================================== reading
def _voigt(stress3):
    s = stress3
    return np.array([s[0, 0], s[1, 1], s[2, 2], s[1, 2], s[0, 2], s[0, 1]])


def _make_atoms(numbers, positions, cell, pbc, *, energy=None, forces=None, stress=None, charge=None,
                structure_id=None, info_json=None) -> Atoms:
    atoms = Atoms(numbers=numbers, positions=positions, cell=cell, pbc=pbc)
    info = json.loads(info_json) if info_json else {}
    if charge is not None:
        info["charge"] = charge
    if structure_id is not None:
        info["structure_id"] = structure_id
    atoms.info.update(info)
    results = {}
    if energy is not None:
        results["energy"] = energy
        results["forces"] = np.array(forces, dtype=np.float64)
    if stress is not None:
        results["stress"] = _voigt(stress)
    if results:
        atoms.calc = SinglePointCalculator(atoms, **results)
    return atoms


def _py(value):
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


@dataclass
class _SplitMeta:
    n_structures: int
    n_atoms_total: int
    offsets: np.ndarray
    datasets: tuple


class _SplitView:
    """``store[split]``: a sequence of ``ase.Atoms``, read on access."""

    def __init__(self, store: StructureStore, split: str):
        self.store = store
        self.split = split

    def __len__(self):
        return self.store.n_structures(self.split)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self.store.atoms(self.split, j) for j in range(*i.indices(len(self)))]
        return self.store.atoms(self.split, i)

    def __iter__(self):
        for i in range(len(self)):
            yield self.store.atoms(self.split, i)

    def arrays(self):
        return self.store.arrays(self.split)

    def __repr__(self):
        return f"<split {self.split!r} of {self.store.path}: {len(self)} structures>"


class StructureStore:
    """Reader of a structure store.

    Construction opens the file, checks the format and every split's layout (datasets present, shapes
    consistent, offsets consistent with ``n_atoms``) and closes it again; data is read lazily through a
    handle opened on first access (and reopened after a fork, so it is safe in DataLoader workers).  Use
    it as a context manager or call :meth:`close`.
    """

    def __init__(self, path):
        self.path = Path(path)
        self._h5: h5py.File | None = None
        self._pid: int | None = None
        self._meta: dict[str, _SplitMeta] = {}
        self._attrs: dict = {}
        with self._open_checked() as f:
            self._validate(f)

    # ---------------------------------------------------------------- opening
    def _error(self, problem, fix=_FIX_REWRITE, split=None, dataset=None):
        if dataset is not None:
            problem = f"dataset {split}/{dataset}: {problem}"
        elif split is not None:
            problem = f"split {split!r}: {problem}"
        return StoreError(problem, path=self.path, fix=fix)

    def _open_checked(self) -> h5py.File:
        if not self.path.exists():
            raise self._error("file does not exist", fix="check the path, or create the store first (write_structures)")
        if self.path.is_dir():
            raise self._error("is a directory, not a structure store file", fix="pass the path of the .h5 file")
        try:
            is_hdf5 = h5py.is_hdf5(self.path)
        except OSError:
            is_hdf5 = False
        if not is_hdf5:
            raise self._error("is not an HDF5 file",
                              fix="pass a store written by hessdistill.data.write_structures; read extxyz/traj files "
                                  "with hessdistill.data.structures_from_file")
        try:
            return h5py.File(self.path, "r")
        except OSError as exc:
            raise self._error(f"cannot be opened as HDF5 (truncated or corrupt file): {exc}") from exc

    def _validate(self, f: h5py.File) -> None:
        try:
            self._validate_inner(f)
        except StoreError:
            raise
        except (OSError, KeyError, RuntimeError, ValueError) as exc:
            raise self._error(f"cannot be read (truncated or corrupt file): {type(exc).__name__}: {exc}") from exc

    def _validate_inner(self, f: h5py.File) -> None:
        attrs = {k: _py(v) for k, v in f.attrs.items()}
        fmt = attrs.get("format")
        if fmt is None:
            raise self._error("has no 'format' attribute, so it is not a hessdistill structure store",
                              fix="write the structures with hessdistill.data.write_structures")
        if fmt != FORMAT:
            raise self._error(f"is a {fmt!r} file, not a {FORMAT!r} structure store",
                              fix="pass a structure store (e.g. results/<subset>/data/<split>.h5)")
        version = attrs.get("format_version")
        if not isinstance(version, int) or version < 1 or version > FORMAT_VERSION:
            raise self._error(f"has format_version {version!r}; this hessdistill reads version {FORMAT_VERSION}",
                              fix="upgrade hessdistill, or re-create the file with this version")
        self._attrs = attrs
        splits = [name for name in f.keys() if isinstance(f.get(name, getlink=False), h5py.Group)]
        if not splits:
            raise self._error("contains no splits (groups)", fix=_FIX_REWRITE)
        for split in splits:
            self._meta[split] = self._validate_split(f[split], split)

    def _validate_split(self, g: h5py.Group, split: str) -> _SplitMeta:
        for name in REQUIRED_DATASETS:
            if name not in g or not isinstance(g[name], h5py.Dataset):
                raise self._error(f"required dataset {name!r} is missing", split=split)
        m = g["n_atoms"].shape[0] if g["n_atoms"].ndim == 1 else None
        if m is None:
            raise self._error(f"has shape {g['n_atoms'].shape}, expected (M,)", split=split, dataset="n_atoms")
        total = g["numbers"].shape[0] if g["numbers"].ndim == 1 else None
        if total is None:
            raise self._error(f"has shape {g['numbers'].shape}, expected (ΣN,)", split=split, dataset="numbers")
        expected = {
            "positions": (total, 3), "cell": (m, 3, 3), "pbc": (m, 3), "offsets": (m + 1,),
            "energy": (m,), "forces": (total, 3), "stress": (m, 3, 3), "charge": (m,),
            "structure_id": (m,), "info": (m,),
        }
        present = []
        for name in DATASET_ORDER:
            if name not in g:
                continue
            if not isinstance(g[name], h5py.Dataset):
                raise self._error("is not a dataset", split=split, dataset=name)
            if name in expected and g[name].shape != expected[name]:
                raise self._error(f"has shape {g[name].shape}, expected {expected[name]} "
                                  f"({m} structures, {total} atoms)", split=split, dataset=name)
            present.append(name)
        if ("energy" in g) != ("forces" in g):
            have, missing = ("energy", "forces") if "energy" in g else ("forces", "energy")
            raise self._error(f"has {have!r} but no {missing!r}; labels must have both", split=split)
        n_atoms = np.asarray(g["n_atoms"][()], dtype=np.int64)
        offsets = np.asarray(g["offsets"][()], dtype=np.int64)
        if m and (n_atoms < 1).any():
            i = int(np.flatnonzero(n_atoms < 1)[0])
            raise StoreError(f"split {split!r}: n_atoms[{i}] = {n_atoms[i]}; every structure needs at least one atom",
                             path=self.path, structure=i, fix=_FIX_REWRITE)
        if offsets[0] != 0 or offsets[-1] != total or not np.array_equal(np.diff(offsets), n_atoms):
            bad = np.flatnonzero(np.diff(offsets) != n_atoms)
            detail = (f"offsets[{bad[0]}+1] - offsets[{bad[0]}] != n_atoms[{bad[0]}]" if bad.size
                      else f"offsets run from {offsets[0]} to {offsets[-1]}, expected 0 to {total}")
            raise StoreError(f"split {split!r}: inconsistent offsets ({detail})", path=self.path,
                             structure=int(bad[0]) if bad.size else None, fix=_FIX_REWRITE)
        n_attr = g.attrs.get("n_structures")
        if n_attr is not None and int(n_attr) != m:
            raise self._error(f"attribute n_structures = {int(n_attr)} but the datasets hold {m} structures", split=split)
        return _SplitMeta(n_structures=m, n_atoms_total=total, offsets=offsets, datasets=tuple(present))

    @property
    def _file(self) -> h5py.File:
        if self._h5 is None or self._pid != os.getpid():
            self._h5 = self._open_checked()
            self._pid = os.getpid()
        return self._h5

    def close(self) -> None:
        if self._h5 is not None and self._pid == os.getpid():
            self._h5.close()
        self._h5 = None
        self._pid = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_h5"] = None
        state["_pid"] = None
        return state

    # ---------------------------------------------------------------- metadata
    @property
    def splits(self) -> list[str]:
        return list(self._meta)

    @property
    def attrs(self) -> dict:
        return dict(self._attrs)

    @property
    def labels(self) -> str:
        return self._attrs.get("labels", "none")

    def _split(self, split) -> str:
        if split is None:
            if len(self._meta) == 1:
                return next(iter(self._meta))
            raise self._error(f"holds several splits {self.splits}; say which one to read",
                              fix=f"pass split=... (one of {', '.join(self.splits)})")
        if split not in self._meta:
            raise self._error(f"has no split {split!r} (it has {', '.join(self.splits)})",
                              fix=f"pass one of {', '.join(self.splits)}")
        return split

    def __contains__(self, split) -> bool:
        return split in self._meta

    def __iter__(self):
        return iter(self.splits)

    def __getitem__(self, split) -> _SplitView:
        return _SplitView(self, self._split(split))

    def n_structures(self, split=None) -> int:
        return self._meta[self._split(split)].n_structures

    def n_atoms_total(self, split=None) -> int:
        return self._meta[self._split(split)].n_atoms_total

    def datasets(self, split=None) -> tuple:
        return self._meta[self._split(split)].datasets

    def has_labels(self, split=None) -> bool:
        return "energy" in self.datasets(split)

    def content_hash(self, split=None) -> str:
        """The split's stored content hash (computed from the data when the attribute is missing)."""
        split = self._split(split)
        stored = self._read(lambda f: f[split].attrs.get("content_hash"), split)
        return _py(stored) if stored is not None else content_hash(self.arrays(split))

    def verify(self, split=None) -> dict[str, str]:
        """Recompute the content hash of ``split`` (default: all splits) and compare with the stored one."""
        out = {}
        for s in ([self._split(split)] if split is not None else self.splits):
            stored = self._read(lambda f: f[s].attrs.get("content_hash"), s)
            actual = content_hash(self.arrays(s))
            if stored is not None and _py(stored) != actual:
                raise self._error(f"content hash mismatch (stored {_py(stored)[:12]}..., data {actual[:12]}...): "
                                  "the data was modified after writing or is corrupt", split=s)
            out[s] = actual
        return out

    # ---------------------------------------------------------------- data
    def _read(self, fn, split=None, dataset=None):
        try:
            return fn(self._file)
        except StoreError:
            raise
        except (OSError, KeyError, RuntimeError, ValueError) as exc:
            raise self._error(f"cannot be read (truncated or corrupt file): {type(exc).__name__}: {exc}",
                              split=split, dataset=dataset) from exc

    def arrays(self, split=None, *, strings: bool = True) -> dict:
        """All datasets of ``split`` as numpy arrays (strings as object arrays of ``str``)."""
        split = self._split(split)
        meta = self._meta[split]
        out = {}
        for name in meta.datasets:
            if name in STRING_DATASETS:
                if strings:
                    out[name] = self._read(lambda f: f[split][name].asstr()[()], split, name).astype(object)
            else:
                out[name] = self._read(lambda f: f[split][name][()], split, name)
        if strings and "structure_id" not in out:
            out["structure_id"] = np.array([f"{split}:{i}" for i in range(meta.n_structures)], dtype=object)
        return out

    def atoms(self, split, i: int) -> Atoms:
        """Structure ``i`` of ``split`` as ``ase.Atoms`` (labels in a SinglePointCalculator)."""
        split = self._split(split)
        meta = self._meta[split]
        m = meta.n_structures
        if not -m <= i < m:
            raise IndexError(f"structure {i} out of range: split {split!r} of {self.path} has {m} structures")
        i = int(i) % m
        a, b = int(meta.offsets[i]), int(meta.offsets[i + 1])
        ds = set(meta.datasets)

        def read(f):
            g = f[split]
            kw = {}
            if "energy" in ds:
                kw["energy"] = float(g["energy"][i])
                kw["forces"] = g["forces"][a:b]
            if "stress" in ds:
                kw["stress"] = g["stress"][i]
            if "charge" in ds:
                kw["charge"] = g["charge"][i].item()
            kw["structure_id"] = g["structure_id"].asstr()[i] if "structure_id" in ds else f"{split}:{i}"
            kw["info_json"] = g["info"].asstr()[i] if "info" in ds else None
            return _make_atoms(g["numbers"][a:b], g["positions"][a:b], g["cell"][i], g["pbc"][i], **kw)

        return self._read(read, split)

    def read(self, split=None) -> list[Atoms]:
        """Every structure of ``split`` (read in one pass, faster than ``atoms`` in a loop)."""
        split = self._split(split)
        arr = self.arrays(split)
        off = self._meta[split].offsets
        out = []
        for i in range(self._meta[split].n_structures):
            a, b = off[i], off[i + 1]
            kw = {}
            if "energy" in arr:
                kw["energy"] = float(arr["energy"][i])
                kw["forces"] = arr["forces"][a:b]
            if "stress" in arr:
                kw["stress"] = arr["stress"][i]
            if "charge" in arr:
                kw["charge"] = arr["charge"][i].item()
            out.append(_make_atoms(arr["numbers"][a:b], arr["positions"][a:b], arr["cell"][i], arr["pbc"][i],
                                   structure_id=arr["structure_id"][i],
                                   info_json=arr["info"][i] if "info" in arr else None, **kw))
        return out

    def __repr__(self):
        parts = ", ".join(f"{s}: {m.n_structures}" for s, m in self._meta.items())
        return f"<StructureStore {self.path} labels={self.labels!r} ({parts})>"


def read_structures(path, split: str | None = None) -> list[Atoms]:
    """All structures of one split (``None``: the only split) with labels in a SinglePointCalculator."""
    with StructureStore(path) as store:
        return store.read(split)


# ====================================================================== extxyz and other ASE formats
def _relabel(atoms: Atoms, energy_key: str, forces_key: str, stress_key: str, charge_key: str = "charge") -> Atoms:
    """Move the labels found under the configured keys into a fresh SinglePointCalculator.

    ASE puts standard property names (energy, forces, stress, ...) into a SinglePointCalculator and keeps
    other names (REF_energy, ...) in ``info``/``arrays``; both places are searched.  Calculator results
    under other names are dropped; other ``info``/``arrays`` entries stay.
    """
    results = dict(atoms.calc.results) if atoms.calc is not None else {}
    atoms.calc = None

    def take_info(key):
        if key in results:
            return results.pop(key)
        return atoms.info.pop(key, None)

    energy = take_info(energy_key)
    stress = take_info(stress_key)
    if forces_key in results:
        forces = results.pop(forces_key)
    elif forces_key in atoms.arrays and forces_key not in ("positions", "numbers"):
        forces = atoms.arrays[forces_key]
        del atoms.arrays[forces_key]
    else:
        forces = None
    new = {}
    if energy is not None:
        new["energy"] = energy
    if forces is not None:
        new["forces"] = forces
    if stress is not None:
        new["stress"] = stress
    if new:
        atoms.calc = SinglePointCalculator(atoms, **new)
    if charge_key != "charge" and charge_key in atoms.info:
        atoms.info["charge"] = atoms.info.pop(charge_key)
    return atoms


def _check_file(path, what):
    path = Path(path)
    if not path.is_file():
        raise StructureError("file does not exist" if not path.exists() else "is not a regular file", path=path,
                             fix=f"check the path of the {what} file")
    return path


def _parse_error(exc, *, path, frame):
    if isinstance(exc, KeyError):
        sym = exc.args[0] if exc.args else "?"
        return StructureError(f"unknown element symbol {sym!r}", path=path, structure=frame,
                              fix="use standard element symbols (H, He, ..., Og) or drop this frame")
    return StructureError(f"cannot parse frame: {type(exc).__name__}: {exc}", path=path, structure=frame,
                          fix="repair the file (each frame: atom count, comment line, one line per atom)")


def _select(frames: list, index):
    if isinstance(index, str):
        from ase.io.formats import string2index
        index = string2index(index)
    if isinstance(index, int):
        return [frames[index]]
    return frames[index]


def read_extxyz(path, *, energy_key: str = "energy", forces_key: str = "forces", stress_key: str = "stress",
                require_labels: bool = True, index=":", charge_key: str = "charge") -> list[Atoms]:
    """Read an extended-XYZ file, take labels from the configured keys, validate every frame.

    Energies/forces/stress are looked up under ``energy_key`` etc. both in ASE's SinglePointCalculator
    (ASE moves standard names there) and in ``atoms.info``/``atoms.arrays`` (where ASE keeps other names,
    e.g. ``REF_energy``); each structure comes back with a SinglePointCalculator holding them under the
    standard names.  The total charge found under ``charge_key`` (e.g. ``total_charge``) is moved to
    ``info['charge']``.  ``index`` selects frames (ASE syntax, e.g. ``":"``, ``"10:20"``, ``-1``); the whole
    file is parsed so that errors name the frame's position in the file.
    """
    import ase.io

    path = _check_file(path, "extxyz")
    frames = []
    it = ase.io.iread(path, index=":", format="extxyz")
    while True:
        frame = len(frames)
        try:
            atoms = next(it)
        except StopIteration:
            break
        except Exception as exc:
            if frame == 0 and "expected xyz header" in str(exc).lower():  # ASE's scan of the frame table
                raise StructureError(f"not a valid extended XYZ file: {type(exc).__name__}: {exc}", path=path,
                                     fix="repair the file (each frame: atom count, comment line, one line per atom)") from exc
            raise _parse_error(exc, path=path, frame=frame) from exc
        frames.append(atoms)
    if not frames:
        raise StructureError("the file holds no structures", path=path, fix="check that the file was written completely")
    selected = _select(list(range(len(frames))), index)
    out = []
    for frame in selected:
        atoms = _relabel(frames[frame], energy_key, forces_key, stress_key, charge_key)
        _inspect(atoms, index=frame, path=path, require_labels=require_labels)
        out.append(atoms)
    return out


def write_extxyz(path, atoms_list, *, energy_key: str = "energy", forces_key: str = "forces",
                 stress_key: str = "stress") -> Path:
    """Write structures (with their labels under the given keys) to an extended-XYZ file, atomically.

    Labels are taken as in :func:`write_structures`; extxyz stores decimal text, so unlike the HDF5
    store this does not round-trip bit-exactly.
    """
    import ase.io

    path = Path(path)
    if isinstance(atoms_list, Atoms):
        atoms_list = [atoms_list]
    out = []
    for i, atoms in enumerate(atoms_list):
        rec = _inspect(atoms, index=i, path=path, require_labels=False)
        a = atoms.copy()  # drops the calculator
        for key in ("energy", "stress", energy_key, stress_key):
            a.info.pop(key, None)
        for key in {"forces", forces_key}:
            if key in a.arrays:
                del a.arrays[key]
        if rec.energy is not None:
            a.info[energy_key] = rec.energy
            a.arrays[forces_key] = rec.forces
        if rec.stress is not None:
            a.info[stress_key] = rec.stress if stress_key == "stress" else rec.stress.tolist()
        out.append(a)
    with atomic_path(path) as tmp:
        ase.io.write(tmp, out, format="extxyz")
    return path


def _read_ase(path, *, require_labels=True, index=":", fmt=None) -> list[Atoms]:
    import ase.io

    path = _check_file(path, "structure")
    try:
        images = ase.io.read(path, index=index, format=fmt)
    except Exception as exc:
        raise StructureError(f"cannot be read by ase.io.read: {type(exc).__name__}: {exc}", path=path,
                             fix="check that the file is complete and in the format its suffix says") from exc
    if isinstance(images, Atoms):
        images = [images]
    for i, atoms in enumerate(images):
        _inspect(atoms, index=i, path=path, require_labels=require_labels)
    return list(images)


_H5_SUFFIXES = (".h5", ".hdf5")
_XYZ_SUFFIXES = (".xyz", ".extxyz")
_ASE_SUFFIXES = (".traj", ".db")


def structures_from_file(path, **keys) -> list[Atoms]:
    """Read structures from any supported file, dispatching on the suffix.

    ``.h5``/``.hdf5``: a structure store (keys: ``split``, ``require_labels``); ``.xyz``/``.extxyz``:
    :func:`read_extxyz` (keys: ``energy_key``, ``forces_key``, ``stress_key``, ``charge_key``,
    ``require_labels``, ``index``); ``.traj``/``.db``: ``ase.io.read`` with validation (keys: ``require_labels``, ``index``).
    """
    path = Path(path)
    suffix = path.suffix.lower()

    def allowed(names):
        extra = sorted(set(keys) - set(names))
        if extra:
            raise TypeError(f"structures_from_file({path.name!r}): unexpected keyword(s) {extra} for {suffix} files "
                            f"(allowed: {sorted(names)})")

    if suffix in _H5_SUFFIXES:
        allowed({"split", "require_labels"})
        with StructureStore(path) as store:
            split = store._split(keys.get("split"))
            if keys.get("require_labels", True) and not store.has_labels(split):
                raise StoreError(f"split {split!r} has no energy/forces labels", path=path,
                                 fix="label the structures first (teacher or DFT), or pass require_labels=False")
            return store.read(split)
    if suffix in _XYZ_SUFFIXES:
        allowed({"energy_key", "forces_key", "stress_key", "charge_key", "require_labels", "index"})
        return read_extxyz(path, **keys)
    if suffix in _ASE_SUFFIXES:
        allowed({"require_labels", "index"})
        return _read_ase(path, **keys)
    raise StructureError(f"unsupported file type {suffix or '(no suffix)'!r}", path=path,
                         fix=f"use one of {', '.join(_H5_SUFFIXES + _XYZ_SUFFIXES + _ASE_SUFFIXES)}")
