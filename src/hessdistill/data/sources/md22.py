"""MD22 (sGDML ``md22_<molecule>.npz`` files, kcal/mol and Å)."""

from __future__ import annotations

import re
import zipfile
import zlib

import numpy as np
from ase import Atoms

from ...core.errors import StructureError
from .common import (
    BOHR_ANGSTROM,
    HARTREE_EV,
    KCAL_MOL_EV,
    KJ_MOL_EV,
    check_numbers,
    existing_file,
    first_bad,
    frozen_atoms,
)

__all__ = ["read_md22"]

_LENGTH_UNITS = {"ang": 1.0, "angstrom": 1.0, "a": 1.0, "å": 1.0, "bohr": BOHR_ANGSTROM, "nm": 10.0}
_ENERGY_UNITS = {
    "kcal/mol": KCAL_MOL_EV,
    "ev": 1.0,
    "kj/mol": KJ_MOL_EV,
    "hartree": HARTREE_EV,
    "ha": HARTREE_EV,
    "au": HARTREE_EV,
}
_FIX_MD22 = "re-download the npz from sgdml.org (SOURCES['md22'])"


def _npz_string(data, key):
    try:
        value = data[key]
    except Exception:  # noqa: BLE001 -- object arrays (allow_pickle=False), damaged members: metadata is optional
        return None
    arr = np.asarray(value)
    if arr.dtype.kind not in "US" or arr.size != 1:
        return None
    item = arr.reshape(()).item()
    return item.decode("utf-8", "replace") if isinstance(item, bytes) else str(item)


def read_md22(path, *, molecule: str | None = None) -> list[Atoms]:
    """Read an sGDML/MD22 dataset (``md22_<molecule>.npz``) into one ``Atoms`` per frame.

    Keys (sGDML dataset format): ``z`` (N,) atomic numbers, ``R`` (M, N, 3) positions, ``E`` (M,) or
    (M, 1) total energies, ``F`` (M, N, 3) forces; metadata ``name``, ``theory``, ``r_unit``,
    ``e_unit``, ``type``, ``md5``.  Units: ``r_unit``/``e_unit`` when present, otherwise Å and kcal/mol
    (MD22's units); forces are in e_unit/r_unit.  Energies become eV (1 kcal/mol = 0.0433641 eV).
    Molecules are not periodic; periodic sGDML sets (a ``lattice`` key) are refused.

    ``info``: ``source`` ``"md22"``, ``molecule`` (``molecule`` argument, else the file's ``name``,
    else the file stem without ``md22_``), ``config_type`` (= molecule), ``frame``, ``theory`` and
    ``structure_id`` ``"md22:<molecule>:<frame>"``.
    """
    path = existing_file(path, "MD22 npz")
    try:
        data = np.load(path, allow_pickle=False)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        raise StructureError(
            f"cannot be read as an npz archive (truncated or corrupt download): {type(exc).__name__}: {exc}",
            path=path,
            fix=_FIX_MD22,
        ) from exc
    if not isinstance(data, np.lib.npyio.NpzFile):
        raise StructureError("holds a single array, not an npz archive of z/R/E/F", path=path, fix=_FIX_MD22)
    with data:
        keys = set(data.files)
        missing = [k for k in ("z", "R", "E", "F") if k not in keys]
        if missing:
            raise StructureError(
                f"lacks array(s) {missing} (it has {sorted(keys)})",
                path=path,
                fix=f"{_FIX_MD22}; an sGDML dataset needs z, R, E and F",
            )
        if "lattice" in keys:
            raise StructureError(
                "is a periodic sGDML dataset ('lattice' key); MD22 molecules are not periodic",
                path=path,
                fix="read periodic data through read_generic (extxyz/traj)",
            )

        def load(key):
            try:
                return np.asarray(data[key])
            except (zipfile.BadZipFile, OSError, EOFError, ValueError, zlib.error) as exc:
                raise StructureError(
                    f"array {key!r} cannot be read (truncated or corrupt archive): {type(exc).__name__}: {exc}",
                    path=path,
                    fix=_FIX_MD22,
                ) from exc

        z, R, E, F = load("z"), load("R"), load("E"), load("F")
        name = molecule or _npz_string(data, "name") or re.sub(r"^md22_", "", path.stem)
        theory = _npz_string(data, "theory")
        r_unit = _npz_string(data, "r_unit") or "Ang"
        e_unit = _npz_string(data, "e_unit") or "kcal/mol"
    if r_unit.strip().lower() not in _LENGTH_UNITS:
        raise StructureError(
            f"unknown length unit r_unit={r_unit!r}", path=path, fix=f"supported: {', '.join(_LENGTH_UNITS)}"
        )
    if e_unit.strip().lower() not in _ENERGY_UNITS:
        raise StructureError(
            f"unknown energy unit e_unit={e_unit!r}", path=path, fix=f"supported: {', '.join(_ENERGY_UNITS)}"
        )
    length = _LENGTH_UNITS[r_unit.strip().lower()]
    energy_unit = _ENERGY_UNITS[e_unit.strip().lower()]

    if z.ndim != 1 or z.size == 0:
        raise StructureError(f"array 'z' has shape {z.shape}, expected (N,) with N >= 1", path=path, fix=_FIX_MD22)
    z = check_numbers(z, path=path, structure=None, fix=_FIX_MD22)
    n = z.size
    if R.ndim != 3 or R.shape[1:] != (n, 3):
        raise StructureError(
            f"array 'R' has shape {R.shape}, expected (M, {n}, 3) for {n} atoms", path=path, fix=_FIX_MD22
        )
    m = R.shape[0]
    if E.shape == (m, 1):
        E = E[:, 0]
    if E.shape != (m,):
        raise StructureError(
            f"array 'E' has shape {E.shape}, expected ({m},) or ({m}, 1) for {m} frames", path=path, fix=_FIX_MD22
        )
    if F.shape != (m, n, 3):
        raise StructureError(
            f"array 'F' has shape {F.shape}, expected ({m}, {n}, 3) ({m} frames, {n} atoms)", path=path, fix=_FIX_MD22
        )
    try:
        positions = R.astype(np.float64) * length
        energy = E.astype(np.float64) * energy_unit
        forces = F.astype(np.float64) * (energy_unit / length)
    except (TypeError, ValueError) as exc:
        raise StructureError(f"R/E/F are not numeric: {exc}", path=path, fix=_FIX_MD22) from exc
    for key, arr in (("R", positions), ("E", energy), ("F", forces)):
        bad = ~np.isfinite(arr.reshape(m, -1)).all(axis=1)
        if bad.any():
            raise StructureError(
                f"array {key!r} contains NaN or inf ({int(bad.sum())} of {m} frames affected)",
                path=path,
                structure=f"frame {first_bad(bad)}",
                fix="drop these frames or re-download the file",
            )
    out = []
    for i in range(m):
        info = {"source": "md22", "molecule": name, "config_type": name, "frame": i, "structure_id": f"md22:{name}:{i}"}
        if theory:
            info["theory"] = theory
        out.append(frozen_atoms(z, positions[i], energy=energy[i], forces=forces[i], info=info))
    return out
