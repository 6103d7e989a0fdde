"""MPtrj (``MPtrj_2022.9_full.json``, figshare 23713842): ``{mp_id: {frame_id: frame}}``, read as a stream (the file
is ~12 GB); VASP stress in kBar converted to ASE's eV/Å³."""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Iterator, Mapping

import numpy as np
from ase import Atoms
from ase.data import atomic_numbers as _SYMBOL_TO_Z

from ...core.errors import StructureError
from ...core.structures import as_finite_array
from .common import KBAR_EV_A3, existing_file, frozen_atoms
from .jsonstream import JsonObjectStream, open_text

__all__ = ["iter_mptrj", "read_mptrj", "vasp_stress_to_ase"]


def vasp_stress_to_ase(stress_kbar) -> np.ndarray:
    """VASP/pymatgen stress (kBar, positive = compressive) -> ASE stress (eV/Å³, positive = tensile).

    VASP prints the stress with the sign of a pressure: a compressed cell (one that pushes outwards)
    has a *positive* stress in kBar.  ASE's stress is ``(1/V) dE/dε``, which is *negative* for that
    same cell (stretching lowers the energy).  So ``σ_ASE = -0.1 · units.GPa · σ_VASP``; e.g.
    +10 kBar (1 GPa of compression) -> -0.0062415 eV/Å³.  This is what ASE's own VASP readers
    (``ase.io.vasp``) and CHGNet's MPtrj loader (``stress * -0.1`` to GPa) do.
    """
    return -KBAR_EV_A3 * np.asarray(stress_kbar, dtype=np.float64)


def _scalar_or_none(value):
    """A JSON-friendly scalar (int/float/str/bool/None) or None for anything else."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value
    return None


_FIX_MPTRJ = "re-download MPtrj_2022.9_full.json and verify its checksum (SOURCES['mptrj'])"


_MPTRJ_ENERGY = {"corrected": "corrected_total_energy", "uncorrected": "uncorrected_total_energy"}
_MPTRJ_INFO_KEYS = (
    "corrected_total_energy",
    "uncorrected_total_energy",
    "energy_per_atom",
    "ef_per_atom",
    "e_per_atom_relaxed",
    "ef_per_atom_relaxed",
    "bandgap",
)


def _finite_array(value, what, shape, *, path, where, fix=_FIX_MPTRJ):
    return as_finite_array(
        value, what, shape, path=path, where=where, fix=fix, nan_fix="drop this frame (mp_ids filter) or re-download"
    )


def _parse_pymatgen_structure(d, *, path, where):
    """numbers, cartesian positions (Å), cell (rows = lattice vectors, Å), pbc of a ``Structure.as_dict()``."""
    fix = "the 'structure' entry must be a pymatgen Structure.as_dict() (lattice.matrix, sites[].species/xyz)"
    if not isinstance(d, Mapping):
        raise StructureError(
            f"'structure' is a {type(d).__name__}, not a pymatgen Structure dict", path=path, structure=where, fix=fix
        )
    lattice = d.get("lattice")
    if not isinstance(lattice, Mapping) or "matrix" not in lattice:
        raise StructureError("'structure' has no lattice.matrix", path=path, structure=where, fix=fix)
    cell = _finite_array(lattice["matrix"], "structure lattice.matrix", (3, 3), path=path, where=where, fix=fix)
    pbc = lattice.get("pbc", (True, True, True))
    if not (isinstance(pbc, (list, tuple)) and len(pbc) == 3):
        raise StructureError(f"lattice.pbc is {pbc!r}, expected three booleans", path=path, structure=where, fix=fix)
    sites = d.get("sites")
    if not isinstance(sites, list) or not sites:
        raise StructureError("'structure' has no sites", path=path, structure=where, fix=fix)
    numbers = np.empty(len(sites), dtype=np.int64)
    positions = np.empty((len(sites), 3), dtype=np.float64)
    for k, site in enumerate(sites):
        species = site.get("species") if isinstance(site, Mapping) else None
        if not isinstance(species, list) or len(species) != 1 or not isinstance(species[0], Mapping):
            n_sp = len(species) if isinstance(species, list) else "no"
            raise StructureError(
                f"site {k} has {n_sp} species; only ordered sites (one species, occupancy 1) can become atoms",
                path=path,
                structure=where,
                fix=fix,
            )
        sp = species[0]
        occu = sp.get("occu", 1)
        if not isinstance(occu, (int, float)) or abs(occu - 1) > 1e-6:
            raise StructureError(
                f"site {k} has occupancy {occu!r}: disordered sites cannot become atoms",
                path=path,
                structure=where,
                fix=fix,
            )
        symbol = sp.get("element")
        z = _SYMBOL_TO_Z.get(symbol) if isinstance(symbol, str) else None
        if not z:
            raise StructureError(f"site {k} has unknown element {symbol!r}", path=path, structure=where, fix=fix)
        numbers[k] = z
        if "xyz" in site:
            positions[k] = _finite_array(site["xyz"], f"site {k} xyz", (3,), path=path, where=where, fix=fix)
        elif "abc" in site:
            positions[k] = _finite_array(site["abc"], f"site {k} abc", (3,), path=path, where=where, fix=fix) @ cell
        else:
            raise StructureError(
                f"site {k} has neither 'xyz' nor 'abc' coordinates", path=path, structure=where, fix=fix
            )
    return numbers, positions, cell, [bool(p) for p in pbc]


def _mptrj_atoms(mp_id, frame_id, frame, *, path, energy_key, include_stress):
    where = f"mp_id {mp_id!r} frame {frame_id!r}"
    if not isinstance(frame, Mapping):
        raise StructureError(
            f"frame is a {type(frame).__name__}, not an object", path=path, structure=where, fix=_FIX_MPTRJ
        )
    required = ["structure", "force", energy_key] + (["stress"] if include_stress else [])
    missing = [k for k in required if k not in frame]
    if missing:
        fix = _FIX_MPTRJ
        if missing == ["stress"]:
            fix = "pass include_stress=False to read frames without stress"
        raise StructureError(
            f"frame lacks key(s) {missing} (it has {sorted(frame)})", path=path, structure=where, fix=fix
        )
    numbers, positions, cell, pbc = _parse_pymatgen_structure(frame["structure"], path=path, where=where)
    n = len(numbers)
    forces = _finite_array(frame["force"], "force", (n, 3), path=path, where=where)
    e = frame[energy_key]
    if isinstance(e, bool) or not isinstance(e, (int, float)) or not math.isfinite(e):
        raise StructureError(
            f"{energy_key} is {e!r}, not a finite number",
            path=path,
            structure=where,
            fix="choose the other energy (energy='corrected'/'uncorrected') or drop this frame",
        )
    stress = None
    if include_stress:
        if frame["stress"] is None:
            raise StructureError(
                "frame has stress = null",
                path=path,
                structure=where,
                fix="pass include_stress=False to read frames without stress",
            )
        stress = vasp_stress_to_ase(_finite_array(frame["stress"], "stress", (3, 3), path=path, where=where))
        stress = np.array([stress[0, 0], stress[1, 1], stress[2, 2], stress[1, 2], stress[0, 2], stress[0, 1]])
    magmoms = frame.get("magmom")
    if magmoms is not None:
        try:
            magmoms = np.array(magmoms, dtype=np.float64)
        except (TypeError, ValueError):
            magmoms = None
        if magmoms is not None and (magmoms.shape != (n,) or not np.isfinite(magmoms).all()):
            magmoms = None  # magnetic moments are kept only when well-formed; they are not a training label
    info = {
        "source": "mptrj",
        "mp_id": mp_id,
        "frame_id": frame_id,
        "energy_label": energy_key,
        "structure_id": f"mptrj:{mp_id}:{frame_id}",
    }
    for key in _MPTRJ_INFO_KEYS:
        if key in frame:
            value = _scalar_or_none(frame[key])
            info[key] = float(value) if isinstance(value, int) and not isinstance(value, bool) else value
    return frozen_atoms(
        numbers, positions, cell=cell, pbc=pbc, energy=e, forces=forces, stress=stress, magmoms=magmoms, info=info
    )


def iter_mptrj(
    path,
    *,
    energy: str = "corrected",
    mp_ids: Iterable[str] | None = None,
    include_stress: bool = True,
    stop_when_found: bool = True,
    chunk_chars: int = 1 << 22,
) -> Iterator[Atoms]:
    """Yield the frames of ``MPtrj_2022.9_full.json`` (plain or gzip-compressed), streaming the file.

    Layout (figshare 23713842; CHGNet's ``StructureJsonData``): one JSON object
    ``{mp_id: {frame_id: frame}}``; each frame has ``structure`` (pymatgen ``Structure.as_dict()``:
    ``lattice.matrix`` rows in Å, ``sites[].species[0].element``, ``sites[].xyz`` in Å and ``abc``),
    ``uncorrected_total_energy`` and ``corrected_total_energy`` (eV, the latter with MP2020
    compatibility corrections), ``energy_per_atom``, ``ef_per_atom``, ``e_per_atom_relaxed``,
    ``ef_per_atom_relaxed`` (eV/atom), ``force`` (N×3, eV/Å), ``stress`` (3×3, kBar, VASP sign),
    ``magmom`` (per atom or null), ``bandgap`` (eV) and ``mp_id``.  Frame ids look like
    ``"mp-1234-0-5"``; their prefix need not equal the enclosing mp_id, so both are kept.

    Labels: energy = ``corrected_total_energy`` (``energy="corrected"``, the paper's and the official
    code's target) or ``uncorrected_total_energy``; both stay in ``info``.  Stress is converted with
    :func:`vasp_stress_to_ase`.  Structures are periodic (``lattice.pbc``, default all True); pymatgen
    is not needed.  ``magmom`` goes into the calculator as ``magmoms`` when it is a length-N list.

    ``mp_ids`` keeps only those materials (filtered while reading; with ``stop_when_found`` the read
    stops once all have been seen, so the rest of the file is not checked).  The stream holds one
    material's frames at a time; ``chunk_chars`` is the read size.

    ``info``: ``source`` ``"mptrj"``, ``mp_id``, ``frame_id``, ``energy_label``, the energies listed
    above, ``bandgap`` and ``structure_id`` ``"mptrj:<mp_id>:<frame_id>"``.
    """
    if energy not in _MPTRJ_ENERGY:
        raise ValueError(f"energy must be 'corrected' or 'uncorrected', got {energy!r}")
    energy_key = _MPTRJ_ENERGY[energy]
    path = existing_file(path, "MPtrj JSON")
    wanted = None if mp_ids is None else {str(m) for m in mp_ids}
    if wanted is not None and not wanted:
        return
    seen = set()
    try:
        fh = open_text(path)
    except OSError as exc:
        raise StructureError(f"cannot be opened: {exc}", path=path, fix=_FIX_MPTRJ) from exc
    with fh:
        for mp_id, frames in JsonObjectStream(fh, path, chunk_chars, fix=_FIX_MPTRJ):
            if wanted is not None and mp_id not in wanted:
                continue
            if not isinstance(frames, Mapping):
                raise StructureError(
                    f"the value of mp_id {mp_id!r} is a {type(frames).__name__}, expected an object "
                    "{frame_id: frame}",
                    path=path,
                    structure=f"mp_id {mp_id!r}",
                    fix=_FIX_MPTRJ,
                )
            for frame_id, frame in frames.items():
                yield _mptrj_atoms(
                    mp_id, frame_id, frame, path=path, energy_key=energy_key, include_stress=include_stress
                )
            seen.add(mp_id)
            if wanted is not None and stop_when_found and seen >= wanted:
                return
    if wanted is not None and not seen >= wanted:
        absent = sorted(wanted - seen)
        warnings.warn(f"{path}: {len(absent)} requested mp_id(s) not in the file, e.g. {absent[:5]}", stacklevel=2)


def read_mptrj(path, **options) -> list[Atoms]:
    """All (selected) MPtrj frames as a list; see :func:`iter_mptrj`.

    Memory: a list of ``Atoms`` for all 1.58 M frames needs tens of GB; filter with ``mp_ids`` or
    consume :func:`iter_mptrj` directly when reading the whole file.
    """
    return list(iter_mptrj(path, **options))
