"""Readers for the published datasets the paper uses, plus a table of where to get them.

Each reader turns one file in its *published* format into a list of ``ase.Atoms`` carrying the file's
own reference labels in a :class:`~ase.calculators.singlepoint.SinglePointCalculator` (energy, forces
and, where the data has it, stress) and its metadata in ``atoms.info``.  Units are converted while
reading to eV, Å, eV/Å and eV/Å³ (ASE sign convention for stress: positive = tensile, the cell wants
to shrink).  Every structure gets ``info['structure_id']``, a stable string unique within its source
(``"<source>:<entry>:<frame>"``), and ``info['source']``.  The result can go straight into
:func:`hessdistill.data.write_structures`.  One module per reader:
:mod:`.spice`, :mod:`.maceoff`, :mod:`.mptrj`, :mod:`.md22`, :mod:`.generic`.

Sources and what is read (details and assumptions in each reader's docstring):

==============  ===================================================================================
``spice2``      ``SPICE-2.0.1.hdf5`` (Zenodo 10975225): one HDF5 group per molecule, atomic units.
``mace-off``    MACE-OFF23's SPICE files ``train_large_neut_no_bad_clean.xyz`` /
                ``test_large_neut_all.xyz`` (Apollo doi:10.17863/CAM.107498): extxyz, eV and Å.
                The paper (and the official code) train on these.
``mptrj``       ``MPtrj_2022.9_full.json`` (figshare 23713842): ``{mp_id: {frame_id: frame}}``, read
                as a stream (the file is ~12 GB), VASP stress in kBar converted to ASE's eV/Å³.
``md22``        sGDML ``md22_<molecule>.npz`` files (kcal/mol, Å).
``generic``     any extxyz / ASE ``.traj`` / ASE ``.db`` / structure store, with configurable keys.
==============  ===================================================================================

:data:`SOURCES` lists download URLs, file names, sizes, checksums (only where the published value is
known; otherwise ``None`` and the workflow's download rule records it on first download), licences and
citations (:mod:`.catalogue`).  :func:`verify_checksum` checks a downloaded file; :func:`read_source` dispatches by
name.  :mod:`.smiles` reads total charges from SMILES, :mod:`.jsonstream` streams MPtrj's JSON.

Errors on malformed input are :class:`~hessdistill.core.errors.StructureError` naming the file, the entry
(molecule group and conformation, ``mp_id`` and frame id, frame index) and a fix.
"""

from __future__ import annotations

from ase import Atoms

from .catalogue import SOURCES, ChecksumError, expected_checksum, verify_checksum
from .common import BOHR_ANGSTROM, HARTREE_EV, KCAL_MOL_EV
from .generic import read_generic
from .maceoff import read_maceoff_xyz
from .md22 import read_md22
from .mptrj import iter_mptrj, read_mptrj, vasp_stress_to_ase
from .smiles import smiles_formal_charge
from .spice import iter_spice_hdf5, read_spice_hdf5, spice_config_type

__all__ = [
    "BOHR_ANGSTROM",
    "HARTREE_EV",
    "KCAL_MOL_EV",
    "ChecksumError",
    "READERS",
    "SOURCES",
    "expected_checksum",
    "iter_mptrj",
    "iter_spice_hdf5",
    "read_generic",
    "read_maceoff_xyz",
    "read_md22",
    "read_mptrj",
    "read_source",
    "read_spice_hdf5",
    "smiles_formal_charge",
    "spice_config_type",
    "vasp_stress_to_ase",
    "verify_checksum",
]

#: reader per source name (the keys of :data:`SOURCES`, plus aliases)
READERS = {
    "spice2": read_spice_hdf5,
    "mace-off": read_maceoff_xyz,
    "mptrj": read_mptrj,
    "md22": read_md22,
    "generic": read_generic,
}
_ALIASES = {
    "spice": "spice2",
    "spice2-hdf5": "spice2",
    "maceoff": "mace-off",
    "mace_off": "mace-off",
    "spice-maceoff": "mace-off",
    "mp-trj": "mptrj",
    "mptraj": "mptrj",
}


def read_source(name: str, path, **options) -> list[Atoms]:
    """Read ``path`` with the reader of source ``name`` (``spice2``, ``mace-off``, ``mptrj``, ``md22``, ``generic``)."""
    key = _ALIASES.get(str(name).lower(), str(name).lower())
    if key not in READERS:
        raise ValueError(f"unknown source {name!r}; known: {', '.join(READERS)} (aliases: {', '.join(_ALIASES)})")
    reader = READERS[key]
    try:
        return reader(path, **options)
    except TypeError as exc:
        if "unexpected keyword" in str(exc):
            raise TypeError(f"read_source({key!r}): {exc}; see help({reader.__module__}.{reader.__name__})") from None
        raise
