"""Structure files other than the store: extended XYZ (read and write), ASE trajectories and databases, and
:func:`structures_from_file`, which reads any supported file by its suffix.

Every structure read is validated (:func:`hessdistill.core.structures.validate_atoms`); errors are
:class:`~hessdistill.core.errors.StructureError` naming the file, the frame and the fix.
"""

from __future__ import annotations

from pathlib import Path

from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator

from ..core.atomic import atomic_path
from ..core.errors import StructureError
from ..core.structures import inspect_atoms
from .store import read_structures

__all__ = ["SUFFIXES", "read_extxyz", "structures_from_file", "write_extxyz"]


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
        raise StructureError(
            "file does not exist" if not path.exists() else "is not a regular file",
            path=path,
            fix=f"check the path of the {what} file",
        )
    return path


def _parse_error(exc, *, path, frame):
    if isinstance(exc, KeyError):
        sym = exc.args[0] if exc.args else "?"
        return StructureError(
            f"unknown element symbol {sym!r}",
            path=path,
            structure=frame,
            fix="use standard element symbols (H, He, ..., Og) or drop this frame",
        )
    return StructureError(
        f"cannot parse frame: {type(exc).__name__}: {exc}",
        path=path,
        structure=frame,
        fix="repair the file (each frame: atom count, comment line, one line per atom)",
    )


def _select(frames: list, index):
    if isinstance(index, str):
        from ase.io.formats import string2index

        index = string2index(index)
    if isinstance(index, int):
        return [frames[index]]
    return frames[index]


def read_extxyz(
    path,
    *,
    energy_key: str = "energy",
    forces_key: str = "forces",
    stress_key: str = "stress",
    require_labels: bool = True,
    index=":",
    charge_key: str = "charge",
) -> list[Atoms]:
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
                raise StructureError(
                    f"not a valid extended XYZ file: {type(exc).__name__}: {exc}",
                    path=path,
                    fix="repair the file (each frame: atom count, comment line, one line per atom)",
                ) from exc
            raise _parse_error(exc, path=path, frame=frame) from exc
        frames.append(atoms)
    if not frames:
        raise StructureError(
            "the file holds no structures", path=path, fix="check that the file was written completely"
        )
    selected = _select(list(range(len(frames))), index)
    out = []
    for frame in selected:
        atoms = _relabel(frames[frame], energy_key, forces_key, stress_key, charge_key)
        inspect_atoms(atoms, index=frame, path=path, require_labels=require_labels)
        out.append(atoms)
    return out


def write_extxyz(
    path, atoms_list, *, energy_key: str = "energy", forces_key: str = "forces", stress_key: str = "stress"
) -> Path:
    """Write structures (with their labels under the given keys) to an extended-XYZ file, atomically.

    Labels are taken as in :func:`~hessdistill.data.store.write_structures`; extxyz stores decimal text, so unlike
    the HDF5 store this does not round-trip bit-exactly.
    """
    import ase.io

    path = Path(path)
    if isinstance(atoms_list, Atoms):
        atoms_list = [atoms_list]
    out = []
    for i, atoms in enumerate(atoms_list):
        rec = inspect_atoms(atoms, index=i, path=path, require_labels=False)
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
        raise StructureError(
            f"cannot be read by ase.io.read: {type(exc).__name__}: {exc}",
            path=path,
            fix="check that the file is complete and in the format its suffix says",
        ) from exc
    if isinstance(images, Atoms):
        images = [images]
    for i, atoms in enumerate(images):
        inspect_atoms(atoms, index=i, path=path, require_labels=require_labels)
    return list(images)


def _read_store(path, *, split=None, require_labels=True) -> list[Atoms]:
    return read_structures(path, split, require_labels=require_labels)


#: suffix -> (reader, the keyword arguments it takes); the one dispatch of :func:`structures_from_file`
SUFFIXES = {
    ".h5": (_read_store, ("split", "require_labels")),
    ".hdf5": (_read_store, ("split", "require_labels")),
    ".xyz": (read_extxyz, ("energy_key", "forces_key", "stress_key", "charge_key", "require_labels", "index")),
    ".extxyz": (read_extxyz, ("energy_key", "forces_key", "stress_key", "charge_key", "require_labels", "index")),
    ".traj": (_read_ase, ("require_labels", "index")),
    ".db": (_read_ase, ("require_labels", "index")),
}


def structures_from_file(path, **keys) -> list[Atoms]:
    """Read structures from any supported file, dispatching on the suffix (:data:`SUFFIXES`).

    ``.h5``/``.hdf5``: a structure store (keys: ``split``, ``require_labels``); ``.xyz``/``.extxyz``:
    :func:`read_extxyz` (keys: ``energy_key``, ``forces_key``, ``stress_key``, ``charge_key``,
    ``require_labels``, ``index``); ``.traj``/``.db``: ``ase.io.read`` with validation (keys: ``require_labels``,
    ``index``).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise StructureError(
            f"unsupported file type {suffix or '(no suffix)'!r}", path=path, fix=f"use one of {', '.join(SUFFIXES)}"
        )
    reader, names = SUFFIXES[suffix]
    extra = sorted(set(keys) - set(names))
    if extra:
        raise TypeError(
            f"structures_from_file({path.name!r}): unexpected keyword(s) {extra} for {suffix} files "
            f"(allowed: {sorted(names)})"
        )
    return reader(path, **keys)
