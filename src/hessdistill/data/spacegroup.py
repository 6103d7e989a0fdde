"""Space groups with spglib, for the ``space_group`` selector (:mod:`hessdistill.data.subsets`).

Data layer only: imports numpy, ase and (lazily) spglib; nothing from teachers, students, training or
evaluation.  spglib is a dependency of phonopy, which hessdistill requires.

* :func:`space_group` -- ``(number, international short symbol)`` of a periodic ``ase.Atoms`` (or
  ``(None, None)`` when it is not periodic in all three directions or spglib finds no symmetry).
* :func:`space_group_numbers` -- resolve ``221`` / ``"Pm-3m"`` / ``"P m -3 m"`` / ``"P4/m-32/m"`` to numbers.
* :func:`mptrj_frame_order` -- ``(calc_id, ionic_step)`` from an MPtrj frame id ``"mp-1234-<calc>-<step>"``.
* :func:`spglib_version` -- recorded in the selection report next to ``symprec`` and ``angle_tolerance``.
"""

from __future__ import annotations

import re

import numpy as np

__all__ = [
    "DEFAULT_ANGLE_TOLERANCE",
    "DEFAULT_SYMPREC",
    "mptrj_frame_order",
    "space_group",
    "space_group_numbers",
    "spglib_version",
    "symbol_table",
]

#: Å.  The Materials Project assigns space groups with spglib at symprec 0.1 Å (its builders' default),
#: and MPtrj's frames are relaxation snapshots whose atoms sit up to a few hundredths of an Å off their
#: ideal positions; at spglib's own default (1e-5 Å) almost no MPtrj frame would be found cubic.
DEFAULT_SYMPREC = 0.1
#: degrees; -1 lets spglib choose (its default)
DEFAULT_ANGLE_TOLERANCE = -1.0


def _spglib():
    import spglib

    return spglib


def spglib_version() -> str:
    spglib = _spglib()
    return str(getattr(spglib, "__version__", None) or spglib.get_version())


def space_group(
    atoms, *, symprec: float = DEFAULT_SYMPREC, angle_tolerance: float = DEFAULT_ANGLE_TOLERANCE
) -> tuple[int | None, str | None]:
    """``(number, international short symbol)`` of ``atoms`` found by spglib, or ``(None, None)``.

    ``(None, None)`` when the structure is not periodic in all three directions (a space group needs a
    3D lattice) or spglib cannot analyse it (e.g. overlapping atoms).
    """
    if not np.asarray(atoms.pbc, dtype=bool).all():
        return None, None
    cell = (
        np.asarray(atoms.cell.array, dtype=np.float64),
        atoms.get_scaled_positions(wrap=True),
        np.asarray(atoms.numbers),
    )
    ds = _spglib().get_symmetry_dataset(cell, symprec=float(symprec), angle_tolerance=float(angle_tolerance))
    if ds is None:
        return None, None
    if hasattr(ds, "number"):
        return int(ds.number), str(ds.international)
    return int(ds["number"]), str(ds["international"])  # spglib < 2.5 returns a dict


def _norm(symbol: str) -> str:
    return re.sub(r"[\s_]", "", symbol)


_SYMBOLS: dict[str, int] | None = None


def symbol_table() -> dict[str, int]:
    """Normalised Hermann-Mauguin symbol (short, full and spaced forms, spaces removed) -> number."""
    global _SYMBOLS
    if _SYMBOLS is None:
        spglib = _spglib()
        table: dict[str, int] = {}
        for hall in range(1, 531):
            t = spglib.get_spacegroup_type(hall)
            get = (lambda k, t=t: getattr(t, k)) if hasattr(t, "number") else (lambda k, t=t: t[k])
            for key in ("international_short", "international_full", "international"):
                table.setdefault(_norm(str(get(key))), int(get("number")))
        _SYMBOLS = table
    return _SYMBOLS


def space_group_numbers(numbers=(), symbols=()) -> tuple[tuple[int, ...], list[str]]:
    """Numbers for the given numbers (checked 1..230) and symbols; second value: the symbols not found."""
    out: list[int] = []
    unknown: list[str] = []
    for n in numbers:
        if int(n) not in out:
            out.append(int(n))
    if symbols:
        table = symbol_table()
        for s in symbols:
            n = table.get(_norm(s))
            if n is None:
                unknown.append(s)
            elif n not in out:
                out.append(n)
    return tuple(out), unknown


_FRAME_ID = re.compile(r"-(\d+)-(\d+)$")


def mptrj_frame_order(frame_id) -> tuple[int, int] | None:
    """``(calc_id, ionic_step)`` of an MPtrj frame id such as ``"mp-1234-1-17"`` (None when it has no such tail).

    In MPtrj (CHGNet's ``MPtrj_2022.9_full.json``) a frame id is ``<task id>-<calc id>-<ionic step>``: the
    calculations of a relaxation task are numbered in order and the ionic steps within each, so the
    largest ``(calc_id, ionic_step)`` of a task is its final, relaxed structure.
    """
    if not isinstance(frame_id, str):
        return None
    m = _FRAME_ID.search(frame_id)
    return (int(m.group(1)), int(m.group(2))) if m else None
