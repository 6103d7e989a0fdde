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

Every structure is validated before anything is written (see :func:`hessdistill.core.structures.validate_atoms`).
On write, moreover, no two atoms may be closer than :data:`~hessdistill.core.structures.MIN_DISTANCE_A` (0.5 Å),
periodic images included: overlapping atoms make the training loss non-finite, so :func:`write_structures` raises a
:class:`~hessdistill.core.errors.StructureError` naming the structure, the atom pair and its distance (readers
do not check this, so that a subset selector can drop such structures before the store is written).  Extended XYZ
and other ASE formats are read and written by :mod:`hessdistill.data.formats`.

Writes go through :func:`hessdistill.core.atomic.atomic_path` and are deterministic: the same input gives a
byte-identical file.
"""

from __future__ import annotations

import hashlib
import json
import numbers as _numbers
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator

from ..core.atomic import atomic_path
from ..core.errors import StoreError, StructureError
from ..core.structures import FIX_LABELS, inspect_atoms, located

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "UNITS",
    "StructureStore",
    "content_hash",
    "read_structures",
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

REQUIRED_DATASETS = ("numbers", "positions", "cell", "pbc", "n_atoms", "offsets")
LABEL_DATASETS = ("energy", "forces")
OPTIONAL_DATASETS = ("stress", "charge")
STRING_DATASETS = ("structure_id", "info")
#: the fixed order in which datasets are written and hashed
DATASET_ORDER = REQUIRED_DATASETS + LABEL_DATASETS + OPTIONAL_DATASETS + STRING_DATASETS

_RESERVED_ATTRS = frozenset({"format", "format_version", "labels", *UNITS})

_HASH_TAG = b"hessdistill.structures/content_hash/v1\n"

_FIX_REWRITE = "re-create the file (rerun the step that wrote it, e.g. with hessdistill.data.write_structures)"


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
    records = [
        inspect_atoms(a, index=i, path=path, require_labels=require_labels, split=split, check_distances=True)
        for i, a in enumerate(atoms_list)
    ]
    m = len(records)

    def all_or_nothing(attr, what, fix):
        present = [getattr(r, attr) is not None for r in records]
        if any(present) and not all(present):
            first_with = present.index(True)
            first_without = present.index(False)
            raise StructureError(
                f"structure has no {what} while other structures of split {split!r} do "
                f"(e.g. structure {first_with}); {what} must be given for all structures of a split or for none",
                path=path,
                structure=located(first_without, split),
                fix=fix,
            )
        return m > 0 and all(present)

    has_labels = all_or_nothing("energy", "energy/forces", FIX_LABELS)
    if m == 0:
        has_labels = require_labels
    has_stress = all_or_nothing(
        "stress",
        "stress",
        "give stress for every structure of the split, or remove it from all (e.g. atoms.calc.results.pop('stress'))",
    )
    has_charge = all_or_nothing(
        "charge", "charge", "set atoms.info['charge'] for every structure of the split, or for none"
    )

    n_atoms = np.array([len(a) for a in atoms_list], dtype=np.int64)
    offsets = np.zeros(m + 1, dtype=np.int64)
    np.cumsum(n_atoms, out=offsets[1:])
    arrays = {
        "numbers": np.concatenate([a.numbers for a in atoms_list]).astype(np.int64) if m else np.zeros(0, np.int64),
        "positions": (
            np.concatenate([a.positions for a in atoms_list]).astype(np.float64) if m else np.zeros((0, 3), np.float64)
        ),
        "cell": (
            np.stack([a.cell.array for a in atoms_list]).astype(np.float64) if m else np.zeros((0, 3, 3), np.float64)
        ),
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
                "within a split",
                path=path,
                structure=located(i, split),
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
        raise TypeError(
            "write_structures takes a list of ase.Atoms or a dict split -> list of ase.Atoms, "
            "not a single Atoms (wrap it in a list)"
        )
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


def write_structures(
    path, splits, *, attrs: Mapping | None = None, labels: str = "dft", require_labels: bool = True
) -> Path:
    """Validate and write structures to an HDF5 structure store; return ``path``.

    ``splits`` maps split names to lists of ``ase.Atoms`` (a plain list is written as split ``"all"``).
    Energy/forces/stress come from an attached calculator's results (a SinglePointCalculator, or any
    calculator, which is then asked for energy and forces), else from ``atoms.info['energy']``,
    ``atoms.arrays['forces']`` and ``atoms.info['stress']``.  ``atoms.info['charge']`` becomes the
    ``charge`` dataset, ``atoms.info['structure_id']`` the id.  Every structure is validated before the
    file is touched (:func:`~hessdistill.core.structures.validate_atoms`, and no two atoms closer than
    :data:`~hessdistill.core.structures.MIN_DISTANCE_A`, periodic images included); the file appears atomically.
    ``labels`` is recorded as given, except that a file without any labels records ``"none"``.  ``attrs`` are free
    provenance attributes.
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


def _make_atoms(
    numbers,
    positions,
    cell,
    pbc,
    *,
    energy=None,
    forces=None,
    stress=None,
    charge=None,
    structure_id=None,
    info_json=None,
) -> Atoms:
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
            raise self._error(
                "is not an HDF5 file",
                fix="pass a store written by hessdistill.data.write_structures; read extxyz/traj files "
                "with hessdistill.data.structures_from_file",
            )
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
            raise self._error(
                "has no 'format' attribute, so it is not a hessdistill structure store",
                fix="write the structures with hessdistill.data.write_structures",
            )
        if fmt != FORMAT:
            raise self._error(
                f"is a {fmt!r} file, not a {FORMAT!r} structure store",
                fix="pass a structure store (e.g. results/<subset>/data/<split>.h5)",
            )
        version = attrs.get("format_version")
        if not isinstance(version, int) or version < 1 or version > FORMAT_VERSION:
            raise self._error(
                f"has format_version {version!r}; this hessdistill reads version {FORMAT_VERSION}",
                fix="upgrade hessdistill, or re-create the file with this version",
            )
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
            "positions": (total, 3),
            "cell": (m, 3, 3),
            "pbc": (m, 3),
            "offsets": (m + 1,),
            "energy": (m,),
            "forces": (total, 3),
            "stress": (m, 3, 3),
            "charge": (m,),
            "structure_id": (m,),
            "info": (m,),
        }
        present = []
        for name in DATASET_ORDER:
            if name not in g:
                continue
            if not isinstance(g[name], h5py.Dataset):
                raise self._error("is not a dataset", split=split, dataset=name)
            if name in expected and g[name].shape != expected[name]:
                raise self._error(
                    f"has shape {g[name].shape}, expected {expected[name]} ({m} structures, {total} atoms)",
                    split=split,
                    dataset=name,
                )
            present.append(name)
        if ("energy" in g) != ("forces" in g):
            have, missing = ("energy", "forces") if "energy" in g else ("forces", "energy")
            raise self._error(f"has {have!r} but no {missing!r}; labels must have both", split=split)
        n_atoms = np.asarray(g["n_atoms"][()], dtype=np.int64)
        offsets = np.asarray(g["offsets"][()], dtype=np.int64)
        if m and (n_atoms < 1).any():
            i = int(np.flatnonzero(n_atoms < 1)[0])
            raise StoreError(
                f"split {split!r}: n_atoms[{i}] = {n_atoms[i]}; every structure needs at least one atom",
                path=self.path,
                structure=i,
                fix=_FIX_REWRITE,
            )
        if offsets[0] != 0 or offsets[-1] != total or not np.array_equal(np.diff(offsets), n_atoms):
            bad = np.flatnonzero(np.diff(offsets) != n_atoms)
            detail = (
                f"offsets[{bad[0]}+1] - offsets[{bad[0]}] != n_atoms[{bad[0]}]"
                if bad.size
                else f"offsets run from {offsets[0]} to {offsets[-1]}, expected 0 to {total}"
            )
            raise StoreError(
                f"split {split!r}: inconsistent offsets ({detail})",
                path=self.path,
                structure=int(bad[0]) if bad.size else None,
                fix=_FIX_REWRITE,
            )
        n_attr = g.attrs.get("n_structures")
        if n_attr is not None and int(n_attr) != m:
            raise self._error(
                f"attribute n_structures = {int(n_attr)} but the datasets hold {m} structures", split=split
            )
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
            raise self._error(
                f"holds several splits {self.splits}; say which one to read",
                fix=f"pass split=... (one of {', '.join(self.splits)})",
            )
        if split not in self._meta:
            raise self._error(
                f"has no split {split!r} (it has {', '.join(self.splits)})", fix=f"pass one of {', '.join(self.splits)}"
            )
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
        for s in [self._split(split)] if split is not None else self.splits:
            stored = self._read(lambda f, s=s: f[s].attrs.get("content_hash"), s)
            actual = content_hash(self.arrays(s))
            if stored is not None and _py(stored) != actual:
                raise self._error(
                    f"content hash mismatch (stored {_py(stored)[:12]}..., data {actual[:12]}...): "
                    "the data was modified after writing or is corrupt",
                    split=s,
                )
            out[s] = actual
        return out

    # ---------------------------------------------------------------- data
    def _read(self, fn, split=None, dataset=None):
        try:
            return fn(self._file)
        except StoreError:
            raise
        except (OSError, KeyError, RuntimeError, ValueError) as exc:
            raise self._error(
                f"cannot be read (truncated or corrupt file): {type(exc).__name__}: {exc}", split=split, dataset=dataset
            ) from exc

    def arrays(self, split=None, *, strings: bool = True) -> dict:
        """All datasets of ``split`` as numpy arrays (strings as object arrays of ``str``)."""
        split = self._split(split)
        meta = self._meta[split]
        out = {}
        for name in meta.datasets:
            if name in STRING_DATASETS:
                if strings:
                    out[name] = self._read(lambda f, name=name: f[split][name].asstr()[()], split, name).astype(object)
            else:
                out[name] = self._read(lambda f, name=name: f[split][name][()], split, name)
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
            out.append(
                _make_atoms(
                    arr["numbers"][a:b],
                    arr["positions"][a:b],
                    arr["cell"][i],
                    arr["pbc"][i],
                    structure_id=arr["structure_id"][i],
                    info_json=arr["info"][i] if "info" in arr else None,
                    **kw,
                )
            )
        return out

    def __repr__(self):
        parts = ", ".join(f"{s}: {m.n_structures}" for s, m in self._meta.items())
        return f"<StructureStore {self.path} labels={self.labels!r} ({parts})>"


def read_structures(path, split: str | None = None, *, require_labels: bool = False) -> list[Atoms]:
    """All structures of one split (``None``: the only split) with labels in a SinglePointCalculator.

    ``require_labels`` raises a :class:`~hessdistill.core.errors.StoreError` when the split has no energy/forces.
    """
    with StructureStore(path) as store:
        split = store._split(split)
        if require_labels and not store.has_labels(split):
            raise StoreError(
                f"split {split!r} has no energy/forces labels",
                path=path,
                fix="label the structures first (teacher or DFT), or pass require_labels=False",
            )
        return store.read(split)
