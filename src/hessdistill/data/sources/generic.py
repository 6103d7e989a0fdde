"""Any extxyz / ASE trajectory / ASE database / structure store, with configurable label keys."""

from __future__ import annotations

import json

from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator

from ...core.errors import StructureError
from ...core.structures import validate_atoms
from ..formats import structures_from_file
from .common import existing_file

__all__ = ["read_generic"]


def _db_value(key, results, row):
    if key in results:
        return results.pop(key)
    if key in row.key_value_pairs:
        return row.key_value_pairs[key]
    data = row.data if hasattr(row, "data") else {}
    if key in data:
        return data[key]
    return None


def _read_ase_db(path, *, energy_key, forces_key, stress_key, charge_key, require_labels, selection):
    import sqlite3

    import ase.db

    out = []
    try:
        db = ase.db.connect(str(path))
        rows = list(db.select(selection) if selection is not None else db.select())
    except (sqlite3.DatabaseError, OSError, ValueError, KeyError, json.JSONDecodeError) as exc:
        raise StructureError(
            f"cannot be read as an ASE database: {type(exc).__name__}: {exc}",
            path=path,
            fix="check that the file is a complete ASE .db (sqlite or json) file",
        ) from exc
    for row in rows:
        where = f"row id {row.id}"
        try:
            atoms = row.toatoms()
        except Exception as exc:  # noqa: BLE001 -- any damage inside a row
            raise StructureError(
                f"cannot be turned into Atoms: {type(exc).__name__}: {exc}",
                path=path,
                structure=where,
                fix="repair or remove this row",
            ) from exc
        results = dict(atoms.calc.results) if atoms.calc is not None else {}
        atoms.calc = None
        energy = _db_value(energy_key, results, row)
        forces = _db_value(forces_key, results, row)
        stress = _db_value(stress_key, results, row)
        labels = {}
        if energy is not None:
            labels["energy"] = energy
        if forces is not None:
            labels["forces"] = forces
        if stress is not None:
            labels["stress"] = stress
        if labels:
            try:
                atoms.calc = SinglePointCalculator(atoms, **labels)
            except (ValueError, TypeError) as exc:
                raise StructureError(
                    f"labels are malformed: {exc}",
                    path=path,
                    structure=where,
                    fix=f"give {forces_key!r} as an (N, 3) array",
                ) from exc
        consumed = {energy_key, forces_key, stress_key, charge_key}
        for key, value in row.key_value_pairs.items():
            if key not in consumed:
                atoms.info[key] = value
        charge = _db_value(charge_key, {}, row)
        if charge is not None:
            atoms.info["charge"] = charge
        atoms.info["db_id"] = int(row.id)
        atoms.info.setdefault("structure_id", f"{path.stem}:{row.id}")
        validate_atoms(atoms, index=where, path=path, require_labels=require_labels)
        out.append(atoms)
    return out


def read_generic(
    path,
    *,
    energy_key: str = "energy",
    forces_key: str = "forces",
    stress_key: str = "stress",
    charge_key: str = "charge",
    require_labels: bool = True,
    index=":",
    selection=None,
    split: str | None = None,
) -> list[Atoms]:
    """Read any extxyz / ASE trajectory / ASE database / structure store with configurable label keys.

    ``.xyz``/``.extxyz``: :func:`hessdistill.data.read_extxyz` (keys looked up in the calculator,
    ``info`` and ``arrays``; ``index`` selects frames).  ``.db``: ``ase.db``; each label is taken from
    the row's stored calculator results, else its key-value pairs, else ``row.data`` (so energies in
    ``key_value_pairs['dft_energy']`` and forces in ``data['dft_forces']`` work); other key-value
    pairs go to ``info``, with ``db_id``; ``selection`` is an ``ase.db`` query.  ``.traj``: ASE's
    reader (labels from the stored calculator).  ``.h5``/``.hdf5``: a hessdistill structure store
    (``split``).  Every structure is validated; ``info['structure_id']`` defaults to
    ``"<stem>:<frame>"`` (``"<stem>:<row id>"`` for databases) and ``info['source']`` to ``"generic"``.
    """
    path = existing_file(path, "structure")
    suffix = path.suffix.lower()
    if suffix == ".db":
        atoms_list = _read_ase_db(
            path,
            energy_key=energy_key,
            forces_key=forces_key,
            stress_key=stress_key,
            charge_key=charge_key,
            require_labels=require_labels,
            selection=selection,
        )
    elif suffix in (".xyz", ".extxyz"):
        atoms_list = structures_from_file(
            path,
            energy_key=energy_key,
            forces_key=forces_key,
            stress_key=stress_key,
            charge_key=charge_key,
            require_labels=require_labels,
            index=index,
        )
    elif suffix in (".h5", ".hdf5"):
        keys = {"require_labels": require_labels}
        if split is not None:
            keys["split"] = split
        return structures_from_file(path, **keys)  # ids and provenance are already in the store
    else:
        non_default = {
            k: v
            for k, v in (("energy_key", energy_key), ("forces_key", forces_key), ("stress_key", stress_key))
            if v != k.split("_")[0]
        }
        if non_default:
            raise TypeError(
                f"read_generic({path.name!r}): {sorted(non_default)} apply to .xyz/.extxyz/.db files; "
                f"{suffix or 'this'} files keep labels in ASE's calculator"
            )
        atoms_list = structures_from_file(path, require_labels=require_labels, index=index)
    for i, atoms in enumerate(atoms_list):
        atoms.info.setdefault("source", "generic")
        atoms.info.setdefault("structure_id", f"{path.stem}:{i}")
    return atoms_list
