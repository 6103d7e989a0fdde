"""SPICE 2 (``SPICE-2.0.1.hdf5``, Zenodo 10975225): one HDF5 group per molecule, atomic units."""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
from ase import Atoms

from ...core.errors import StructureError
from .common import BOHR_ANGSTROM, HARTREE_EV, check_numbers, existing_file, first_bad, frozen_atoms
from .smiles import smiles_formal_charge

__all__ = ["iter_spice_hdf5", "read_spice_hdf5", "spice_config_type"]

#: SPICE subset names (QCArchive dataset names in the HDF5 'subset' dataset) -> the short names of the
#: SPICE README's table, which are also MACE-OFF's config_type values.  Rules are tried in order on the
#: name without the leading "SPICE " and the trailing version.
_SPICE_SUBSET_RULES = (
    (re.compile(r"^DES Monomers\b", re.I), "DES370K Monomers"),
    (re.compile(r"^DES370K\b", re.I), "DES370K Dimers"),
    (re.compile(r"^Solvated PubChem\b", re.I), "Solvated PubChem"),
    (re.compile(r"^PubChem\b", re.I), "PubChem"),
    (re.compile(r"^Solvated Amino Acids\b", re.I), "Solvated Amino Acids"),
    (re.compile(r"^Dipeptides\b", re.I), "Dipeptides"),
    (re.compile(r"^Amino Acid Ligand\b", re.I), "Amino Acid Ligand Pairs"),
    (re.compile(r"^Ion Pairs\b", re.I), "Ion Pairs"),
    (re.compile(r"^Water Clusters\b", re.I), "Water Clusters"),
)
_SPICE_VERSION = re.compile(r"\s+v\d+(\.\d+)*\s*$")


def spice_config_type(subset: str) -> str:
    """The short subset name for a SPICE HDF5 ``subset`` string, matching MACE-OFF's ``config_type``.

    ``'SPICE DES Monomers Single Points Dataset v1.1'`` -> ``'DES370K Monomers'``,
    ``'SPICE Solvated Amino Acids Single Points Dataset v1.1'`` -> ``'Solvated Amino Acids'``,
    ``'SPICE PubChem Set 3 Single Points Dataset v1.3'`` -> ``'PubChem'``.  Unknown names come back
    without the ``SPICE`` prefix, the version and ``Single Points Dataset``.
    """
    name = _SPICE_VERSION.sub("", subset.strip())
    if name.upper().startswith("SPICE "):
        name = name[6:]
    for pattern, short in _SPICE_SUBSET_RULES:
        if pattern.search(name):
            return short
    return re.sub(r"\s+Single Points Dataset.*$", "", name).strip() or subset


_SPICE_REQUIRED = ("atomic_numbers", "conformations", "dft_total_energy", "dft_total_gradient", "smiles", "subset")
_FIX_SPICE = (
    "re-download SPICE-2.0.1.hdf5 and verify its checksum (SOURCES['spice2']); a file made with SPICE's "
    "downloader needs 'DFT TOTAL ENERGY' and 'DFT TOTAL GRADIENT' (and 'MBIS CHARGES' for "
    "charge_from='mbis') in its config.yaml"
)


def _open_hdf5(path):
    import h5py

    path = existing_file(path, "SPICE HDF5")
    try:
        is_hdf5 = h5py.is_hdf5(path)
    except OSError:
        is_hdf5 = False
    if not is_hdf5:
        raise StructureError("is not an HDF5 file (wrong file, or its header is damaged)", path=path, fix=_FIX_SPICE)
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise StructureError(
            f"cannot be opened as HDF5 (truncated or corrupt download): {exc}", path=path, fix=_FIX_SPICE
        ) from exc


def _h5_read(group, key, *, path, where):
    try:
        return group[key][()]
    except (OSError, RuntimeError, ValueError, KeyError) as exc:
        raise StructureError(
            f"dataset {key!r} cannot be read (truncated or corrupt file): {type(exc).__name__}: {exc}",
            path=path,
            structure=where,
            fix=_FIX_SPICE,
        ) from exc


def _h5_string(value, key, *, path, where) -> str:
    arr = np.asarray(value)
    if arr.shape not in ((), (1,)):
        raise StructureError(
            f"dataset {key!r} has shape {arr.shape}, expected one string (shape (1,))",
            path=path,
            structure=where,
            fix=_FIX_SPICE,
        )
    item = arr.reshape(()).item()
    if isinstance(item, bytes):
        item = item.decode("utf-8")
    if not isinstance(item, str):
        raise StructureError(
            f"dataset {key!r} is not a string (got {type(item).__name__})", path=path, structure=where, fix=_FIX_SPICE
        )
    return item


def iter_spice_hdf5(
    path,
    *,
    subsets: Iterable[str] | None = None,
    neutral_only: bool = False,
    charge_from: str = "smiles",
    molecules: Iterable[str] | None = None,
    skip_nonfinite: bool = False,
) -> Iterator[Atoms]:
    """Yield the conformations of a SPICE 2 HDF5 release (``SPICE-2.0.1.hdf5``), one ``Atoms`` each.

    Layout (SPICE's ``downloader/README.md`` and ``downloader.py``): one top-level group per molecule
    or cluster (named by PubChem id, peptide sequence or SMILES) holding ``subset`` and ``smiles``
    (one string each, shape (1,)), ``atomic_numbers`` (N,) int16, ``conformations`` (M, N, 3) float32
    in bohr, ``dft_total_energy`` (M,) float64 in hartree, ``dft_total_gradient`` (M, N, 3) in
    hartree/bohr, ``formation_energy`` (M,) hartree, ``mbis_charges`` (M, N, 1) in e, and other
    QM values that are not read here.

    Labels: energy = ``dft_total_energy`` in eV, forces = ``-dft_total_gradient`` in eV/Å;
    ``formation_energy`` (eV) goes to ``info``.  Molecules are not periodic (zero cell).

    Total charge (``info['charge']``, int): ``charge_from="smiles"`` (default) sums the formal
    charges written in the mapped SMILES, the charge the QM calculation was set up with;
    ``"mbis"`` rounds the per-conformation sum of ``mbis_charges`` (MBIS charges are constrained to
    the total charge) and raises when it is not within 0.01 e of an integer or differs between
    conformations.  ``info['charge_source']`` records which was used.

    Filters, applied while reading: ``subsets`` (raw subset names or the short names of
    :func:`spice_config_type`, e.g. ``"DES370K Monomers"``), ``molecules`` (group names) and
    ``neutral_only``.  ``skip_nonfinite=True`` drops conformations with NaN/inf (with a warning)
    instead of raising.

    ``info``: ``source`` ``"spice2"``, ``molecule`` (group name), ``conformation`` (index in the
    group), ``subset`` (raw), ``config_type`` (short name), ``smiles``, ``charge``,
    ``charge_source``, ``formation_energy`` (when present) and ``structure_id``
    ``"spice2:<group>:<conformation>"``.
    """
    if charge_from not in ("smiles", "mbis"):
        raise ValueError(f"charge_from must be 'smiles' or 'mbis', got {charge_from!r}")
    import h5py

    wanted_subsets = None if subsets is None else {str(s) for s in subsets}
    wanted_molecules = None if molecules is None else {str(m) for m in molecules}
    path = Path(path)
    f = _open_hdf5(path)
    with f:
        fmt = f.attrs.get("format")
        if isinstance(fmt, bytes):
            fmt = fmt.decode("utf-8", "replace")
        if fmt == "hessdistill.structures":
            raise StructureError(
                "is a hessdistill structure store, not a SPICE release",
                path=path,
                fix="read it with hessdistill.data.structures_from_file / read_structures",
            )
        try:
            names = list(f.keys())
        except (OSError, RuntimeError) as exc:
            raise StructureError(
                f"cannot list the molecule groups (truncated or corrupt file): {exc}", path=path, fix=_FIX_SPICE
            ) from exc
        if not names:
            raise StructureError("holds no molecule groups", path=path, fix=_FIX_SPICE)
        found_molecules = set()
        for name in names:
            if wanted_molecules is not None and name not in wanted_molecules:
                continue
            where = f"group {name!r}"
            try:
                g = f[name]
            except (OSError, RuntimeError, KeyError) as exc:
                raise StructureError(
                    f"cannot be read (truncated or corrupt file): {exc}", path=path, structure=where, fix=_FIX_SPICE
                ) from exc
            if not isinstance(g, h5py.Group):
                raise StructureError(
                    "top-level object is a dataset, not a molecule group: not a SPICE file",
                    path=path,
                    structure=where,
                    fix=_FIX_SPICE,
                )
            found_molecules.add(name)
            missing = [k for k in _SPICE_REQUIRED if k not in g]
            if charge_from == "mbis" and "mbis_charges" not in g:
                missing.append("mbis_charges")
            if missing:
                raise StructureError(
                    f"molecule group lacks dataset(s) {missing} (it has {sorted(g.keys())})",
                    path=path,
                    structure=where,
                    fix=_FIX_SPICE,
                )
            subset = _h5_string(_h5_read(g, "subset", path=path, where=where), "subset", path=path, where=where)
            config_type = spice_config_type(subset)
            if wanted_subsets is not None and subset not in wanted_subsets and config_type not in wanted_subsets:
                continue
            smiles = _h5_string(_h5_read(g, "smiles", path=path, where=where), "smiles", path=path, where=where)

            z = np.asarray(_h5_read(g, "atomic_numbers", path=path, where=where))
            if z.ndim != 1 or z.size == 0:
                raise StructureError(
                    f"dataset 'atomic_numbers' has shape {z.shape}, expected (N,) with N >= 1",
                    path=path,
                    structure=where,
                    fix=_FIX_SPICE,
                )
            z = check_numbers(z, path=path, structure=where, fix=_FIX_SPICE)
            n = z.size
            conf = np.asarray(_h5_read(g, "conformations", path=path, where=where), dtype=np.float64)
            if conf.ndim != 3 or conf.shape[1:] != (n, 3):
                raise StructureError(
                    f"dataset 'conformations' has shape {conf.shape}, expected (M, {n}, 3) for {n} atoms",
                    path=path,
                    structure=where,
                    fix=_FIX_SPICE,
                )
            m = conf.shape[0]
            expect = {"dft_total_energy": (m,), "dft_total_gradient": (m, n, 3), "formation_energy": (m,)}
            arrays = {}
            for key, shape in expect.items():
                if key not in g:
                    continue
                arr = np.asarray(_h5_read(g, key, path=path, where=where), dtype=np.float64)
                if arr.shape != shape:
                    raise StructureError(
                        f"dataset {key!r} has shape {arr.shape}, expected {shape} ({m} conformations, {n} atoms)",
                        path=path,
                        structure=where,
                        fix=_FIX_SPICE,
                    )
                arrays[key] = arr

            # ---- total charge
            if charge_from == "smiles":
                try:
                    charge = smiles_formal_charge(smiles)
                except ValueError as exc:
                    raise StructureError(
                        str(exc), path=path, structure=where, fix="use charge_from='mbis' for this file"
                    ) from exc
            else:
                q = np.asarray(_h5_read(g, "mbis_charges", path=path, where=where), dtype=np.float64)
                if q.shape == (m, n, 1):
                    q = q[..., 0]
                if q.shape != (m, n):
                    raise StructureError(
                        f"dataset 'mbis_charges' has shape {q.shape}, expected ({m}, {n}, 1)",
                        path=path,
                        structure=where,
                        fix=_FIX_SPICE,
                    )
                sums = q.sum(axis=1)
                if not np.isfinite(sums).all():
                    j = first_bad(~np.isfinite(sums))
                    raise StructureError(
                        "mbis_charges contain NaN or inf",
                        path=path,
                        structure=f"{where} conformation {j}",
                        fix="use charge_from='smiles'",
                    )
                rounded = np.rint(sums)
                off = np.abs(sums - rounded) > 0.01
                if off.any():
                    j = first_bad(off)
                    raise StructureError(
                        f"mbis_charges sum to {sums[j]:.4f} e, not an integer total charge",
                        path=path,
                        structure=f"{where} conformation {j}",
                        fix="use charge_from='smiles'",
                    )
                if m and (rounded != rounded[0]).any():
                    raise StructureError(
                        f"mbis_charges give different total charges across conformations "
                        f"({sorted({int(v) for v in rounded})})",
                        path=path,
                        structure=where,
                        fix="use charge_from='smiles'",
                    )
                charge = int(rounded[0]) if m else 0
            if neutral_only and charge != 0:
                continue

            # ---- labels and validity, all conformations at once
            positions = conf * BOHR_ANGSTROM
            energy = arrays["dft_total_energy"] * HARTREE_EV
            forces = -arrays["dft_total_gradient"] * (HARTREE_EV / BOHR_ANGSTROM)
            bad = (
                ~np.isfinite(positions).all(axis=(1, 2)) | ~np.isfinite(energy) | ~np.isfinite(forces).all(axis=(1, 2))
            )
            if "formation_energy" in arrays:
                bad |= ~np.isfinite(arrays["formation_energy"])
            if bad.any():
                j = first_bad(bad)
                what = (
                    "conformations"
                    if not np.isfinite(positions[j]).all()
                    else "dft_total_energy"
                    if not np.isfinite(energy[j])
                    else "dft_total_gradient"
                    if not np.isfinite(forces[j]).all()
                    else "formation_energy"
                )
                if not skip_nonfinite:
                    raise StructureError(
                        f"{what} contains NaN or inf ({int(bad.sum())} of {m} conformations affected)",
                        path=path,
                        structure=f"{where} conformation {j}",
                        fix="pass skip_nonfinite=True to drop such conformations, or re-download",
                    )
                warnings.warn(
                    f"{path}: group {name!r}: dropping {int(bad.sum())} conformation(s) with NaN/inf", stacklevel=2
                )
            formation = arrays.get("formation_energy")
            for j in range(m):
                if bad[j]:
                    continue
                info = {
                    "source": "spice2",
                    "molecule": name,
                    "conformation": j,
                    "subset": subset,
                    "config_type": config_type,
                    "smiles": smiles,
                    "charge": charge,
                    "charge_source": charge_from,
                    "structure_id": f"spice2:{name}:{j}",
                }
                if formation is not None:
                    info["formation_energy"] = float(formation[j] * HARTREE_EV)
                yield frozen_atoms(z, positions[j], energy=energy[j], forces=forces[j], info=info)
        if wanted_molecules is not None:
            absent = sorted(wanted_molecules - found_molecules)
            if absent:
                raise StructureError(
                    f"molecule group(s) {absent[:5]}{' ...' if len(absent) > 5 else ''} not found",
                    path=path,
                    fix="check the group names (h5py: list(f.keys()))",
                )


def read_spice_hdf5(path, **options) -> list[Atoms]:
    """All (selected) conformations of a SPICE 2 HDF5 file; see :func:`iter_spice_hdf5` for options."""
    return list(iter_spice_hdf5(path, **options))
