"""MACE-OFF23's SPICE extxyz files (``train_large_neut_no_bad_clean.xyz``, ``test_large_neut_all.xyz``; Apollo
doi:10.17863/CAM.107498): extxyz in eV and Å, the files the paper trains on."""

from __future__ import annotations

from collections.abc import Iterable

from ase import Atoms

from ...core.errors import StructureError
from ..formats import read_extxyz
from .common import existing_file
from .smiles import smiles_formal_charge

__all__ = ["read_maceoff_xyz"]


def _charge_from_info(atoms, *, default_charge, index, path):
    """Fill ``info['charge']`` (total_charge, else the SMILES, else ``default_charge``) and its source."""
    info = atoms.info
    if "charge" in info:
        info["charge_source"] = "total_charge"
    elif isinstance(info.get("smiles"), str):
        try:
            info["charge"] = smiles_formal_charge(info["smiles"])
        except ValueError as exc:
            raise StructureError(
                str(exc),
                path=path,
                structure=index,
                fix="add total_charge to the frame or pass a charge_key that is present",
            ) from exc
        info["charge_source"] = "smiles"
    elif default_charge is not None:
        info["charge"] = default_charge
        info["charge_source"] = "default"


_FIX_MACEOFF_KEYS = (
    "pass energy_key=/forces_key= naming the file's label keys (MACE-OFF: 'REF_energy', "
    "'REF_forces'), or repair/remove this frame"
)


def read_maceoff_xyz(
    path,
    *,
    energy_key: str = "REF_energy",
    forces_key: str = "REF_forces",
    stress_key: str = "REF_stress",
    charge_key: str = "total_charge",
    default_charge: int | None = 0,
    neutral_only: bool = False,
    config_types: Iterable[str] | None = None,
) -> list[Atoms]:
    """Read MACE-OFF23's SPICE extxyz files (``train_large_neut_no_bad_clean.xyz``, ``test_large_neut_all.xyz``).

    Frame headers hold ``REF_energy`` (eV), per-atom ``REF_forces`` (eV/Å), ``config_type`` (the SPICE
    subset: ``"DES370K Monomers"``, ``"Solvated Amino Acids"``, ``"PubChem"``, ...), ``smiles`` (the
    mapped, explicit-hydrogen SMILES) and, in some versions, ``total_charge``.  Keys are configurable.
    Parsing and validation go through :func:`hessdistill.data.read_extxyz`, so every frame is checked
    (finite labels, (N, 3) forces, known elements).

    Total charge (``info['charge']``): the ``charge_key`` entry when present, else the formal charges
    of ``smiles``, else ``default_charge`` (0: the files hold neutral molecules only, as their names
    and the MACE-OFF paper say; None leaves it unset); ``info['charge_source']`` says which.
    ``neutral_only`` and ``config_types`` filter.  ``info`` also gets ``source`` ``"mace-off"``,
    ``file`` (stem), ``frame`` (index in the file) and ``structure_id`` ``"mace-off:<stem>:<frame>"``.
    """
    path = existing_file(path, "MACE-OFF extxyz")
    try:
        frames = read_extxyz(
            path,
            energy_key=energy_key,
            forces_key=forces_key,
            stress_key=stress_key,
            charge_key=charge_key,
            require_labels=False,
        )
    except StructureError as exc:  # say which of the configured label keys is missing
        missing = {
            "structure has forces but no energy": energy_key,
            "structure has an energy but no forces": forces_key,
        }.get(getattr(exc, "problem", None))
        if missing is None:
            raise
        raise StructureError(
            f"frame has no {missing!r}", path=path, structure=exc.structure, fix=_FIX_MACEOFF_KEYS
        ) from exc
    wanted = None if config_types is None else {str(c) for c in config_types}
    out = []
    for i, atoms in enumerate(frames):
        results = atoms.calc.results if atoms.calc is not None else {}
        for key, name in ((energy_key, "energy"), (forces_key, "forces")):
            if name not in results:
                raise StructureError(
                    f"frame has no {key!r} (header keys: {sorted(atoms.info)}; per-atom arrays: "
                    f"{sorted(k for k in atoms.arrays if k not in ('numbers', 'positions'))})",
                    path=path,
                    structure=i,
                    fix=_FIX_MACEOFF_KEYS,
                )
        _charge_from_info(atoms, default_charge=default_charge, index=i, path=path)
        if neutral_only:
            if "charge" not in atoms.info:
                raise StructureError(
                    "neutral_only needs the total charge, but the frame has no "
                    f"{charge_key!r}, no smiles, and default_charge is None",
                    path=path,
                    structure=i,
                    fix="pass default_charge=0 or the file's charge_key",
                )
            if atoms.info["charge"] != 0:
                continue
        if wanted is not None and atoms.info.get("config_type") not in wanted:
            continue
        atoms.info.update(
            {"source": "mace-off", "file": path.stem, "frame": i, "structure_id": f"mace-off:{path.stem}:{i}"}
        )
        out.append(atoms)
    return out
