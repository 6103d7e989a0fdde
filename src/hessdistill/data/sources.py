"""Readers for the published datasets the paper uses, plus a table of where to get them.

Each reader turns one file in its *published* format into a list of ``ase.Atoms`` carrying the file's
own reference labels in a :class:`~ase.calculators.singlepoint.SinglePointCalculator` (energy, forces
and, where the data has it, stress) and its metadata in ``atoms.info``.  Units are converted while
reading to eV, Å, eV/Å and eV/Å³ (ASE sign convention for stress: positive = tensile, the cell wants
to shrink).  Every structure gets ``info['structure_id']``, a stable string unique within its source
(``"<source>:<entry>:<frame>"``), and ``info['source']``.  The result can go straight into
:func:`hessdistill.data.write_structures`.

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
citations.  :func:`verify_checksum` checks a downloaded file; :func:`read_source` dispatches by name.

Errors on malformed input are :class:`~hessdistill.core.errors.StructureError` naming the file, the entry
(molecule group and conformation, ``mp_id`` and frame id, frame index) and a fix.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import math
import re
import warnings
import zipfile
import zlib
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms, units
from ase.calculators.singlepoint import SinglePointCalculator
from ase.data import atomic_numbers as _SYMBOL_TO_Z

from ..core.errors import StructureError
from .store import MAX_Z, _as_finite_array, read_extxyz, structures_from_file, validate_atoms

__all__ = [
    "BOHR_ANGSTROM",
    "HARTREE_EV",
    "KCAL_MOL_EV",
    "ChecksumError",
    "READERS",
    "SOURCES",
    "expected_checksum",
    "file_digest",
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

# ====================================================================== units (all from ase.units, CODATA 2014)
HARTREE_EV = units.Hartree  # 27.211386... eV
BOHR_ANGSTROM = units.Bohr  # 0.52917721... Å
KCAL_MOL_EV = units.kcal / units.mol  # 0.0433641... eV
KJ_MOL_EV = units.kJ / units.mol  # 0.0103643... eV
KBAR_EV_A3 = 0.1 * units.GPa  # 1 kBar = 0.1 GPa = 6.2415e-4 eV/Å³ (magnitude; see vasp_stress_to_ase)


def vasp_stress_to_ase(stress_kbar) -> np.ndarray:
    """VASP/pymatgen stress (kBar, positive = compressive) -> ASE stress (eV/Å³, positive = tensile).

    VASP prints the stress with the sign of a pressure: a compressed cell (one that pushes outwards)
    has a *positive* stress in kBar.  ASE's stress is ``(1/V) dE/dε``, which is *negative* for that
    same cell (stretching lowers the energy).  So ``σ_ASE = -0.1 · units.GPa · σ_VASP``; e.g.
    +10 kBar (1 GPa of compression) -> -0.0062415 eV/Å³.  This is what ASE's own VASP readers
    (``ase.io.vasp``) and CHGNet's MPtrj loader (``stress * -0.1`` to GPa) do.
    """
    return -KBAR_EV_A3 * np.asarray(stress_kbar, dtype=np.float64)


# ====================================================================== source table
_FILL_ON_DOWNLOAD = ("not published in a form we could confirm: left None; the workflow's download rule "
                     "records the digest of the first download and verifies later downloads against it")

#: Where each dataset comes from.  Per source: ``reader`` (key of :data:`READERS`), ``landing_page``,
#: ``files`` (per file: ``name``, ``urls``, ``size_bytes``, ``md5``, ``sha256``, ``checksum_source``;
#: a checksum is given only where the published value is known, otherwise ``None`` with the reason in
#: ``checksum_source``), ``license``, ``citation`` and free ``notes``.  Sizes and counts marked as
#: reported come from the publishers' metadata as quoted by others; they are informative, not checked.
SOURCES: dict[str, dict[str, Any]] = {
    "spice2": {
        "title": "SPICE 2.0.1 (Small-Molecule/Protein Interaction Chemical Energies)",
        "reader": "spice2",
        "landing_page": "https://doi.org/10.5281/zenodo.10975225",
        "files": [
            {
                "name": "SPICE-2.0.1.hdf5",
                "urls": ["https://zenodo.org/records/10975225/files/SPICE-2.0.1.hdf5?download=1"],
                "size_bytes": 37_479_271_148,
                "md5": "bfba2224b6540e1390a579569b475510",
                "sha256": None,
                "checksum_source": "md5 listed in the Zenodo record's file metadata (record 10975225; value as "
                                   "quoted from that metadata by independent users, not recomputed by us)",
            },
        ],
        "license": "CC0-1.0 (Zenodo record licence 'cc-zero'; the spice-dataset README says CC0)",
        "citation": [
            "P. Eastman et al., 'SPICE, A Dataset of Drug-like Molecules and Peptides for Training Machine "
            "Learning Potentials', Sci. Data 10, 11 (2023), doi:10.1038/s41597-022-01882-6",
            "P. Eastman, B. P. Pritchard, J. D. Chodera, T. E. Markland, 'Nutmeg and SPICE: Models and Data for "
            "Biomolecular Machine Learning', J. Chem. Theory Comput. 20, 8583 (2024), doi:10.1021/acs.jctc.4c00794",
        ],
        "units_in_file": "bohr, hartree, hartree/bohr",
        "notes": "Not what the paper trained on (it used MACE-OFF's files, built from SPICE 1); kept to rebuild "
                 "subsets from the primary data. About 2.0 M conformations, charged and neutral.",
    },
    "mace-off": {
        "title": "MACE-OFF23 training/test data (SPICE-derived, neutral molecules, eV/Å)",
        "reader": "mace-off",
        "landing_page": "https://doi.org/10.17863/CAM.107498",
        "files": [
            {
                "name": "train_large_neut_no_bad_clean.xyz",
                "archive": "train_large_neut_no_bad_clean.tar.gz",
                "urls": ["https://doi.org/10.17863/CAM.107498"],
                "url_is_landing_page": True,
                "size_bytes": None,
                "md5": None,
                "sha256": None,
                "checksum_source": _FILL_ON_DOWNLOAD,
                "n_structures_reported": 951_005,
            },
            {
                "name": "test_large_neut_all.xyz",
                "archive": "test_large_neut_all.tar.gz",
                "urls": ["https://doi.org/10.17863/CAM.107498"],
                "url_is_landing_page": True,
                "size_bytes": None,
                "md5": None,
                "sha256": None,
                "checksum_source": _FILL_ON_DOWNLOAD,
                "n_structures_reported": 50_195,
            },
        ],
        "license": "SPICE-derived (SPICE is CC0-1.0); check the licence shown on the Apollo record before "
                   "redistributing",
        "citation": [
            "D. P. Kovács, J. H. Moore, N. J. Browning et al., 'MACE-OFF: Short-Range Transferable Machine "
            "Learning Force Fields for Organic Molecules', J. Am. Chem. Soc. (2025), doi:10.1021/jacs.4c07099",
            "P. Eastman et al., Sci. Data 10, 11 (2023), doi:10.1038/s41597-022-01882-6",
        ],
        "units_in_file": "eV, Angstrom, eV/Angstrom",
        "notes": "The files the paper and the official code use for SPICE (section 1.2 of the code notes). "
                 "Archives on the Apollo record hold one .xyz each; config_type holds the SPICE subset name "
                 "('DES370K Monomers', 'Solvated Amino Acids', 'PubChem', ...).",
    },
    "mptrj": {
        "title": "Materials Project Trajectory (MPtrj) dataset, 2022.9",
        "reader": "mptrj",
        "landing_page": "https://figshare.com/articles/dataset/23713842",
        "files": [
            {
                "name": "MPtrj_2022.9_full.json",
                "urls": ["https://figshare.com/ndownloader/files/41619375"],
                "size_bytes": 12_188_168_685,
                "md5": "50ead5f27f9a4f6beb7564c4188f1e9f",
                "sha256": None,
                "checksum_source": "md5 from the figshare file metadata (file 41619375; value as quoted from "
                                   "that metadata by independent users, not recomputed by us)",
                "n_structures_reported": 1_580_395,
            },
        ],
        "license": "see the figshare record (Materials Project data are distributed under CC BY 4.0)",
        "citation": [
            "B. Deng et al., 'CHGNet as a pretrained universal neural network potential for charge-informed "
            "atomistic modelling', Nat. Mach. Intell. 5, 1031 (2023), doi:10.1038/s42256-023-00716-3",
        ],
        "units_in_file": "eV, Angstrom, eV/Angstrom, stress in kBar with VASP's sign",
        "notes": "One JSON object of about 12 GB: read it with iter_mptrj (streaming), never json.load.",
    },
    "md22": {
        "title": "MD22 (sGDML) molecular dynamics datasets",
        "reader": "md22",
        "landing_page": "http://www.sgdml.org/#datasets",
        "files": [
            {
                "name": "md22_buckyball-catcher.npz",
                "urls": ["http://www.quantum-machine.org/gdml/repo/datasets/md22_buckyball-catcher.npz"],
                "size_bytes": None,
                "md5": None,
                "sha256": None,
                "checksum_source": _FILL_ON_DOWNLOAD,
                "n_structures_reported": 6_102,
                "n_atoms": 148,
            },
            {
                "name": "md22_double-walled_nanotube.npz",
                "urls": ["http://www.quantum-machine.org/gdml/repo/datasets/md22_double-walled_nanotube.npz"],
                "size_bytes": None,
                "md5": None,
                "sha256": None,
                "checksum_source": _FILL_ON_DOWNLOAD,
                "n_structures_reported": 5_032,
                "n_atoms": 370,
            },
        ],
        "license": "not stated on sgdml.org; ask the authors before redistributing",
        "citation": [
            "S. Chmiela et al., 'Accurate global machine learning force fields for molecules with hundreds of "
            "atoms', Sci. Adv. 9, eadf0873 (2023), doi:10.1126/sciadv.adf0873",
        ],
        "units_in_file": "kcal/mol, Angstrom, kcal/mol/Angstrom (PBE+MBD)",
        "notes": "The npz's own 'md5' entry is sGDML's fingerprint of the arrays, not a file checksum.",
    },
    "generic": {
        "title": "Any extxyz / ASE trajectory / ASE database / hessdistill structure store",
        "reader": "generic",
        "landing_page": None,
        "files": [],
        "license": None,
        "citation": [],
        "units_in_file": "eV, Angstrom, eV/Angstrom, eV/Angstrom^3 (assumed)",
        "notes": "Keys for energy/forces/stress/charge are configurable.",
    },
}


def expected_checksum(source: str, file_name: str) -> tuple[str, str] | None:
    """``(algorithm, hex digest)`` published for ``file_name`` of ``source`` (sha256 preferred), or None."""
    if source not in SOURCES:
        raise KeyError(f"unknown source {source!r} (known: {', '.join(SOURCES)})")
    for entry in SOURCES[source]["files"]:
        if entry["name"] == file_name:
            for algorithm in ("sha256", "md5"):
                if entry.get(algorithm):
                    return algorithm, entry[algorithm]
            return None
    names = [entry["name"] for entry in SOURCES[source]["files"]]
    raise KeyError(f"source {source!r} has no file {file_name!r} (files: {', '.join(names) or 'none'})")


# ====================================================================== checksums
class ChecksumError(StructureError):
    """A downloaded file does not have the expected checksum."""


_HEX = re.compile(r"^[0-9a-f]+$")


def file_digest(path, algorithm: str = "sha256", *, block_size: int = 1 << 20) -> str:
    """Hex digest of a file, read in blocks (works for files larger than memory)."""
    path = Path(path)
    try:
        h = hashlib.new(algorithm)
    except (ValueError, TypeError):
        raise ValueError(f"unknown checksum algorithm {algorithm!r} (use one of md5, sha1, sha256, sha512)") from None
    if not path.is_file():
        raise StructureError("file does not exist" if not path.exists() else "is not a regular file", path=path,
                             fix="download the file first (see hessdistill.data.sources.SOURCES for URLs)")
    with open(path, "rb") as fh:
        while True:
            block = fh.read(block_size)
            if not block:
                break
            h.update(block)
    return h.hexdigest()


def verify_checksum(path, expected: str, algorithm: str = "sha256") -> str:
    """Check that ``path`` has the hex digest ``expected``; return the digest.

    Raises :class:`ChecksumError` (naming the file, both digests and what to do) on a mismatch, and
    ``ValueError`` when ``expected`` is not a hex digest of the right length for ``algorithm``.
    """
    if not isinstance(expected, str) or not expected.strip():
        raise ValueError(f"verify_checksum({str(path)!r}): expected must be a hex digest string, got {expected!r}; "
                         "use file_digest() to compute one when no published value exists")
    expected = expected.strip().lower()
    if ":" in expected:  # "md5:abc..." / "sha256:..."
        prefix, expected = expected.split(":", 1)
        algorithm = prefix
    try:
        size = hashlib.new(algorithm).digest_size
    except (ValueError, TypeError):
        raise ValueError(f"unknown checksum algorithm {algorithm!r} (use one of md5, sha1, sha256, sha512)") from None
    if len(expected) != 2 * size or not _HEX.match(expected):
        raise ValueError(f"verify_checksum({str(path)!r}): {expected!r} is not a {algorithm} digest "
                         f"({2 * size} hex characters)")
    actual = file_digest(path, algorithm)
    if actual != expected:
        raise ChecksumError(
            f"{algorithm} checksum mismatch: expected {expected}, got {actual} (size {Path(path).stat().st_size} "
            "bytes): the download is incomplete, corrupt, or a different version of the file",
            path=path, fix="delete the file and download it again; if the mismatch persists, the publisher changed "
                           "the file: check the source's landing page and update SOURCES",
        )
    return actual


# ====================================================================== shared helpers
def _existing_file(path, what: str) -> Path:
    path = Path(path)
    if not path.is_file():
        raise StructureError("file does not exist" if not path.exists() else "is not a regular file", path=path,
                             fix=f"check the path of the {what} file (download URLs: hessdistill.data.sources.SOURCES)")
    return path


def _first_bad(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


def _check_numbers(z, *, path, structure, fix):
    z = np.asarray(z)
    if not np.issubdtype(z.dtype, np.integer):
        if not np.issubdtype(z.dtype, np.floating) or not np.all(np.isfinite(z)) or np.any(z != np.round(z)):
            raise StructureError(f"atomic numbers are not integers (dtype {z.dtype})", path=path, structure=structure,
                                 fix=fix)
    z = z.astype(np.int64)
    bad = (z < 1) | (z > MAX_Z)
    if bad.any():
        raise StructureError(f"unknown atomic number(s) {sorted({int(v) for v in z[bad]})} (valid: 1..{MAX_Z})",
                             path=path, structure=structure, fix=fix)
    return z


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


_BRACKET = re.compile(r"\[([^\]]*)\]")
_ATOM_CLASS = re.compile(r":\d+$")
_CHARGE = re.compile(r"([+-])(\d+|\++|-+)?$")


def smiles_formal_charge(smiles: str) -> int:
    """Sum of the formal charges written in a SMILES string (bracket atoms only; others are neutral).

    Handles atom maps (``[O-:3]``), counts (``[Ca+2]``) and repeated signs (``[O--]``).  Needs no RDKit.
    """
    if not isinstance(smiles, str):
        raise TypeError(f"smiles must be a string, got {type(smiles).__name__}")
    total = 0
    for content in _BRACKET.findall(smiles):
        content = _ATOM_CLASS.sub("", content)
        m = _CHARGE.search(content)
        if m is None:
            continue
        sign = 1 if m.group(1) == "+" else -1
        rest = m.group(2) or ""
        if rest.isdigit():
            magnitude = int(rest)
        else:
            if rest and rest[0] != m.group(1):
                raise ValueError(f"cannot read the charge of bracket atom [{content}] in SMILES {smiles!r}")
            magnitude = 1 + len(rest)
        total += sign * magnitude
    return total


def _frozen_atoms(numbers, positions, *, cell=None, pbc=False, energy, forces, stress=None, magmoms=None,
                  info) -> Atoms:
    atoms = Atoms(numbers=numbers, positions=positions, cell=cell, pbc=pbc)
    results = {"energy": float(energy), "forces": forces}
    if stress is not None:
        results["stress"] = stress
    if magmoms is not None:
        results["magmoms"] = magmoms
    atoms.calc = SinglePointCalculator(atoms, **results)
    atoms.info.update(info)
    return atoms


# ====================================================================== SPICE 2 (HDF5)
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
_FIX_SPICE = ("re-download SPICE-2.0.1.hdf5 and verify its checksum (SOURCES['spice2']); a file made with SPICE's "
              "downloader needs 'DFT TOTAL ENERGY' and 'DFT TOTAL GRADIENT' (and 'MBIS CHARGES' for "
              "charge_from='mbis') in its config.yaml")


def _open_hdf5(path):
    import h5py

    path = _existing_file(path, "SPICE HDF5")
    try:
        is_hdf5 = h5py.is_hdf5(path)
    except OSError:
        is_hdf5 = False
    if not is_hdf5:
        raise StructureError("is not an HDF5 file (wrong file, or its header is damaged)", path=path, fix=_FIX_SPICE)
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise StructureError(f"cannot be opened as HDF5 (truncated or corrupt download): {exc}", path=path,
                             fix=_FIX_SPICE) from exc


def _h5_read(group, key, *, path, where):
    try:
        return group[key][()]
    except (OSError, RuntimeError, ValueError, KeyError) as exc:
        raise StructureError(f"dataset {key!r} cannot be read (truncated or corrupt file): {type(exc).__name__}: {exc}",
                             path=path, structure=where, fix=_FIX_SPICE) from exc


def _h5_string(value, key, *, path, where) -> str:
    arr = np.asarray(value)
    if arr.shape not in ((), (1,)):
        raise StructureError(f"dataset {key!r} has shape {arr.shape}, expected one string (shape (1,))", path=path,
                             structure=where, fix=_FIX_SPICE)
    item = arr.reshape(()).item()
    if isinstance(item, bytes):
        item = item.decode("utf-8")
    if not isinstance(item, str):
        raise StructureError(f"dataset {key!r} is not a string (got {type(item).__name__})", path=path,
                             structure=where, fix=_FIX_SPICE)
    return item


def iter_spice_hdf5(path, *, subsets: Iterable[str] | None = None, neutral_only: bool = False,
                    charge_from: str = "smiles", molecules: Iterable[str] | None = None,
                    skip_nonfinite: bool = False) -> Iterator[Atoms]:
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
            raise StructureError("is a hessdistill structure store, not a SPICE release", path=path,
                                 fix="read it with hessdistill.data.structures_from_file / read_structures")
        try:
            names = list(f.keys())
        except (OSError, RuntimeError) as exc:
            raise StructureError(f"cannot list the molecule groups (truncated or corrupt file): {exc}", path=path,
                                 fix=_FIX_SPICE) from exc
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
                raise StructureError(f"cannot be read (truncated or corrupt file): {exc}", path=path, structure=where,
                                     fix=_FIX_SPICE) from exc
            if not isinstance(g, h5py.Group):
                raise StructureError("top-level object is a dataset, not a molecule group: not a SPICE file",
                                     path=path, structure=where, fix=_FIX_SPICE)
            found_molecules.add(name)
            missing = [k for k in _SPICE_REQUIRED if k not in g]
            if charge_from == "mbis" and "mbis_charges" not in g:
                missing.append("mbis_charges")
            if missing:
                raise StructureError(f"molecule group lacks dataset(s) {missing} (it has {sorted(g.keys())})",
                                     path=path, structure=where, fix=_FIX_SPICE)
            subset = _h5_string(_h5_read(g, "subset", path=path, where=where), "subset", path=path, where=where)
            config_type = spice_config_type(subset)
            if wanted_subsets is not None and subset not in wanted_subsets and config_type not in wanted_subsets:
                continue
            smiles = _h5_string(_h5_read(g, "smiles", path=path, where=where), "smiles", path=path, where=where)

            z = np.asarray(_h5_read(g, "atomic_numbers", path=path, where=where))
            if z.ndim != 1 or z.size == 0:
                raise StructureError(f"dataset 'atomic_numbers' has shape {z.shape}, expected (N,) with N >= 1",
                                     path=path, structure=where, fix=_FIX_SPICE)
            z = _check_numbers(z, path=path, structure=where, fix=_FIX_SPICE)
            n = z.size
            conf = np.asarray(_h5_read(g, "conformations", path=path, where=where), dtype=np.float64)
            if conf.ndim != 3 or conf.shape[1:] != (n, 3):
                raise StructureError(f"dataset 'conformations' has shape {conf.shape}, expected (M, {n}, 3) for "
                                     f"{n} atoms", path=path, structure=where, fix=_FIX_SPICE)
            m = conf.shape[0]
            expect = {"dft_total_energy": (m,), "dft_total_gradient": (m, n, 3), "formation_energy": (m,)}
            arrays = {}
            for key, shape in expect.items():
                if key not in g:
                    continue
                arr = np.asarray(_h5_read(g, key, path=path, where=where), dtype=np.float64)
                if arr.shape != shape:
                    raise StructureError(f"dataset {key!r} has shape {arr.shape}, expected {shape} ({m} conformations, "
                                         f"{n} atoms)", path=path, structure=where, fix=_FIX_SPICE)
                arrays[key] = arr

            # ---- total charge
            if charge_from == "smiles":
                try:
                    charge = smiles_formal_charge(smiles)
                except ValueError as exc:
                    raise StructureError(str(exc), path=path, structure=where,
                                         fix="use charge_from='mbis' for this file") from exc
            else:
                q = np.asarray(_h5_read(g, "mbis_charges", path=path, where=where), dtype=np.float64)
                if q.shape == (m, n, 1):
                    q = q[..., 0]
                if q.shape != (m, n):
                    raise StructureError(f"dataset 'mbis_charges' has shape {q.shape}, expected ({m}, {n}, 1)",
                                         path=path, structure=where, fix=_FIX_SPICE)
                sums = q.sum(axis=1)
                if not np.isfinite(sums).all():
                    j = _first_bad(~np.isfinite(sums))
                    raise StructureError("mbis_charges contain NaN or inf", path=path,
                                         structure=f"{where} conformation {j}", fix="use charge_from='smiles'")
                rounded = np.rint(sums)
                off = np.abs(sums - rounded) > 0.01
                if off.any():
                    j = _first_bad(off)
                    raise StructureError(f"mbis_charges sum to {sums[j]:.4f} e, not an integer total charge", path=path,
                                         structure=f"{where} conformation {j}", fix="use charge_from='smiles'")
                if m and (rounded != rounded[0]).any():
                    raise StructureError(f"mbis_charges give different total charges across conformations "
                                         f"({sorted({int(v) for v in rounded})})", path=path, structure=where,
                                         fix="use charge_from='smiles'")
                charge = int(rounded[0]) if m else 0
            if neutral_only and charge != 0:
                continue

            # ---- labels and validity, all conformations at once
            positions = conf * BOHR_ANGSTROM
            energy = arrays["dft_total_energy"] * HARTREE_EV
            forces = -arrays["dft_total_gradient"] * (HARTREE_EV / BOHR_ANGSTROM)
            bad = (~np.isfinite(positions).all(axis=(1, 2)) | ~np.isfinite(energy)
                   | ~np.isfinite(forces).all(axis=(1, 2)))
            if "formation_energy" in arrays:
                bad |= ~np.isfinite(arrays["formation_energy"])
            if bad.any():
                j = _first_bad(bad)
                what = ("conformations" if not np.isfinite(positions[j]).all() else
                        "dft_total_energy" if not np.isfinite(energy[j]) else
                        "dft_total_gradient" if not np.isfinite(forces[j]).all() else "formation_energy")
                if not skip_nonfinite:
                    raise StructureError(f"{what} contains NaN or inf ({int(bad.sum())} of {m} conformations affected)",
                                         path=path, structure=f"{where} conformation {j}",
                                         fix="pass skip_nonfinite=True to drop such conformations, or re-download")
                warnings.warn(f"{path}: group {name!r}: dropping {int(bad.sum())} conformation(s) with NaN/inf",
                              stacklevel=2)
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
                yield _frozen_atoms(z, positions[j], energy=energy[j], forces=forces[j], info=info)
        if wanted_molecules is not None:
            absent = sorted(wanted_molecules - found_molecules)
            if absent:
                raise StructureError(f"molecule group(s) {absent[:5]}{' ...' if len(absent) > 5 else ''} not found",
                                     path=path, fix="check the group names (h5py: list(f.keys()))")


def read_spice_hdf5(path, **options) -> list[Atoms]:
    """All (selected) conformations of a SPICE 2 HDF5 file; see :func:`iter_spice_hdf5` for options."""
    return list(iter_spice_hdf5(path, **options))


# ====================================================================== MACE-OFF extxyz
def _charge_from_info(atoms, *, default_charge, index, path):
    """Fill ``info['charge']`` (total_charge, else the SMILES, else ``default_charge``) and its source."""
    info = atoms.info
    if "charge" in info:
        info["charge_source"] = "total_charge"
    elif isinstance(info.get("smiles"), str):
        try:
            info["charge"] = smiles_formal_charge(info["smiles"])
        except ValueError as exc:
            raise StructureError(str(exc), path=path, structure=index,
                                 fix="add total_charge to the frame or pass a charge_key that is present") from exc
        info["charge_source"] = "smiles"
    elif default_charge is not None:
        info["charge"] = default_charge
        info["charge_source"] = "default"


_FIX_MACEOFF_KEYS = ("pass energy_key=/forces_key= naming the file's label keys (MACE-OFF: 'REF_energy', "
                     "'REF_forces'), or repair/remove this frame")


def read_maceoff_xyz(path, *, energy_key: str = "REF_energy", forces_key: str = "REF_forces",
                     stress_key: str = "REF_stress", charge_key: str = "total_charge",
                     default_charge: int | None = 0, neutral_only: bool = False,
                     config_types: Iterable[str] | None = None) -> list[Atoms]:
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
    path = _existing_file(path, "MACE-OFF extxyz")
    try:
        frames = read_extxyz(path, energy_key=energy_key, forces_key=forces_key, stress_key=stress_key,
                             charge_key=charge_key, require_labels=False)
    except StructureError as exc:  # say which of the configured label keys is missing
        missing = {"structure has forces but no energy": energy_key,
                   "structure has an energy but no forces": forces_key}.get(getattr(exc, "problem", None))
        if missing is None:
            raise
        raise StructureError(f"frame has no {missing!r}", path=path, structure=exc.structure,
                             fix=_FIX_MACEOFF_KEYS) from exc
    wanted = None if config_types is None else {str(c) for c in config_types}
    out = []
    for i, atoms in enumerate(frames):
        results = atoms.calc.results if atoms.calc is not None else {}
        for key, name in ((energy_key, "energy"), (forces_key, "forces")):
            if name not in results:
                raise StructureError(
                    f"frame has no {key!r} (header keys: {sorted(atoms.info)}; per-atom arrays: "
                    f"{sorted(k for k in atoms.arrays if k not in ('numbers', 'positions'))})",
                    path=path, structure=i, fix=_FIX_MACEOFF_KEYS)
        _charge_from_info(atoms, default_charge=default_charge, index=i, path=path)
        if neutral_only:
            if "charge" not in atoms.info:
                raise StructureError("neutral_only needs the total charge, but the frame has no "
                                     f"{charge_key!r}, no smiles, and default_charge is None", path=path,
                                     structure=i, fix="pass default_charge=0 or the file's charge_key")
            if atoms.info["charge"] != 0:
                continue
        if wanted is not None and atoms.info.get("config_type") not in wanted:
            continue
        atoms.info.update({"source": "mace-off", "file": path.stem, "frame": i,
                           "structure_id": f"mace-off:{path.stem}:{i}"})
        out.append(atoms)
    return out


# ====================================================================== MPtrj (streamed JSON)
_WS = re.compile(r"[ \t\n\r]*")
_FIX_MPTRJ = "re-download MPtrj_2022.9_full.json and verify its checksum (SOURCES['mptrj'])"


class _JsonObjectStream:
    """Iterate the (key, value) pairs of a file's top-level JSON object without loading the whole file.

    Each value is decoded by :class:`json.JSONDecoder` from a text buffer that grows (doubling) until
    the value is complete, so memory is bounded by the largest single value, not the file.
    """

    def __init__(self, fh, path, chunk_chars: int):
        self.fh = fh
        self.path = path
        self.chunk = max(1, int(chunk_chars))
        self.buf = ""
        self.pos = 0
        self.dropped = 0  # characters discarded before buf[0]
        self.eof = False
        self.decoder = json.JSONDecoder()
        self.last_key = None

    def _more(self, n: int | None = None) -> bool:
        if self.eof:
            return False
        try:
            data = self.fh.read(n or self.chunk)
        except (OSError, EOFError, UnicodeDecodeError, zlib.error) as exc:
            raise self._error(f"cannot be read (corrupt or truncated file): {type(exc).__name__}: {exc}") from exc
        if not data:
            self.eof = True
            return False
        if self.pos:
            self.dropped += self.pos
            self.buf = self.buf[self.pos:]
            self.pos = 0
        self.buf += data
        return True

    def _peek(self) -> str:
        while True:
            self.pos = _WS.match(self.buf, self.pos).end()
            if self.pos < len(self.buf):
                return self.buf[self.pos]
            if not self._more():
                return ""

    def _error(self, problem, structure=None):
        return StructureError(problem, path=self.path, structure=structure, fix=_FIX_MPTRJ)

    def _after(self):
        return f"after mp_id {self.last_key!r}" if self.last_key is not None else "before the first mp_id"

    def _decode(self, what, structure):
        while True:
            try:
                value, end = self.decoder.raw_decode(self.buf, self.pos)
            except json.JSONDecodeError as exc:
                incomplete = exc.pos >= len(self.buf) - 64 or exc.msg.startswith("Unterminated string")
                if incomplete and self._more(max(self.chunk, len(self.buf) - self.pos)):
                    continue
                if incomplete:
                    raise self._error(f"the file ends inside {what} (truncated download)", structure) from None
                raise self._error(f"invalid JSON in {what} at character {self.dropped + exc.pos}: {exc.msg}",
                                  structure) from None
            self.pos = end
            return value

    def __iter__(self):
        c = self._peek()
        if c == "":
            raise self._error("is empty")
        if c != "{":
            raise self._error(f"does not hold a JSON object (starts with {c!r}); an MPtrj file is one object "
                              "{mp_id: {frame_id: frame}}")
        self.pos += 1
        first = True
        while True:
            c = self._peek()
            if c == "":
                raise self._error(f"the file ends {self._after()} without the closing '}}' (truncated download)")
            if c == "}":
                self.pos += 1
                return
            if not first:
                if c != ",":
                    raise self._error(f"invalid JSON {self._after()} at character {self.dropped + self.pos}: "
                                      f"expected ',' or '}}', found {c!r}")
                self.pos += 1
                c = self._peek()
            if c != '"':
                raise self._error(f"invalid JSON {self._after()} at character {self.dropped + self.pos}: expected "
                                  f"a quoted mp_id, found {c!r}" if c else
                                  f"the file ends {self._after()} (truncated download)")
            key = self._decode("an mp_id key", None)
            c = self._peek()
            if c != ":":
                raise self._error(f"invalid JSON after key {key!r}: expected ':'" if c else
                                  f"the file ends after key {key!r} (truncated download)", f"mp_id {key!r}")
            self.pos += 1
            if self._peek() == "":
                raise self._error(f"the file ends after key {key!r} (truncated download)", f"mp_id {key!r}")
            value = self._decode(f"the frames of mp_id {key!r}", f"mp_id {key!r}")
            self.last_key = key
            first = False
            yield key, value


def _open_text(path):
    with open(path, "rb") as fh:
        magic = fh.read(2)
    if magic == b"\x1f\x8b":
        return gzip.open(path, "rt", encoding="utf-8")
    return open(path, encoding="utf-8")


_MPTRJ_ENERGY = {"corrected": "corrected_total_energy", "uncorrected": "uncorrected_total_energy"}
_MPTRJ_INFO_KEYS = ("corrected_total_energy", "uncorrected_total_energy", "energy_per_atom", "ef_per_atom",
                    "e_per_atom_relaxed", "ef_per_atom_relaxed", "bandgap")


def _finite_array(value, what, shape, *, path, where, fix=_FIX_MPTRJ):
    return _as_finite_array(value, what, shape, path=path, where=where, fix=fix,
                            nan_fix="drop this frame (mp_ids filter) or re-download")


def _parse_pymatgen_structure(d, *, path, where):
    """numbers, cartesian positions (Å), cell (rows = lattice vectors, Å), pbc of a ``Structure.as_dict()``."""
    fix = "the 'structure' entry must be a pymatgen Structure.as_dict() (lattice.matrix, sites[].species/xyz)"
    if not isinstance(d, Mapping):
        raise StructureError(f"'structure' is a {type(d).__name__}, not a pymatgen Structure dict", path=path,
                             structure=where, fix=fix)
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
            raise StructureError(f"site {k} has {n_sp} species; only ordered sites (one species, occupancy 1) "
                                 "can become atoms", path=path, structure=where, fix=fix)
        sp = species[0]
        occu = sp.get("occu", 1)
        if not isinstance(occu, (int, float)) or abs(occu - 1) > 1e-6:
            raise StructureError(f"site {k} has occupancy {occu!r}: disordered sites cannot become atoms",
                                 path=path, structure=where, fix=fix)
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
            raise StructureError(f"site {k} has neither 'xyz' nor 'abc' coordinates", path=path, structure=where,
                                 fix=fix)
    return numbers, positions, cell, [bool(p) for p in pbc]


def _mptrj_atoms(mp_id, frame_id, frame, *, path, energy_key, include_stress):
    where = f"mp_id {mp_id!r} frame {frame_id!r}"
    if not isinstance(frame, Mapping):
        raise StructureError(f"frame is a {type(frame).__name__}, not an object", path=path, structure=where,
                             fix=_FIX_MPTRJ)
    required = ["structure", "force", energy_key] + (["stress"] if include_stress else [])
    missing = [k for k in required if k not in frame]
    if missing:
        fix = _FIX_MPTRJ
        if missing == ["stress"]:
            fix = "pass include_stress=False to read frames without stress"
        raise StructureError(f"frame lacks key(s) {missing} (it has {sorted(frame)})", path=path, structure=where,
                             fix=fix)
    numbers, positions, cell, pbc = _parse_pymatgen_structure(frame["structure"], path=path, where=where)
    n = len(numbers)
    forces = _finite_array(frame["force"], "force", (n, 3), path=path, where=where)
    e = frame[energy_key]
    if isinstance(e, bool) or not isinstance(e, (int, float)) or not math.isfinite(e):
        raise StructureError(f"{energy_key} is {e!r}, not a finite number", path=path, structure=where,
                             fix="choose the other energy (energy='corrected'/'uncorrected') or drop this frame")
    stress = None
    if include_stress:
        if frame["stress"] is None:
            raise StructureError("frame has stress = null", path=path, structure=where,
                                 fix="pass include_stress=False to read frames without stress")
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
    info = {"source": "mptrj", "mp_id": mp_id, "frame_id": frame_id, "energy_label": energy_key,
            "structure_id": f"mptrj:{mp_id}:{frame_id}"}
    for key in _MPTRJ_INFO_KEYS:
        if key in frame:
            value = _scalar_or_none(frame[key])
            info[key] = float(value) if isinstance(value, int) and not isinstance(value, bool) else value
    return _frozen_atoms(numbers, positions, cell=cell, pbc=pbc, energy=e, forces=forces, stress=stress,
                         magmoms=magmoms, info=info)


def iter_mptrj(path, *, energy: str = "corrected", mp_ids: Iterable[str] | None = None,
               include_stress: bool = True, stop_when_found: bool = True,
               chunk_chars: int = 1 << 22) -> Iterator[Atoms]:
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
    path = _existing_file(path, "MPtrj JSON")
    wanted = None if mp_ids is None else {str(m) for m in mp_ids}
    if wanted is not None and not wanted:
        return
    seen = set()
    try:
        fh = _open_text(path)
    except OSError as exc:
        raise StructureError(f"cannot be opened: {exc}", path=path, fix=_FIX_MPTRJ) from exc
    with fh:
        for mp_id, frames in _JsonObjectStream(fh, path, chunk_chars):
            if wanted is not None and mp_id not in wanted:
                continue
            if not isinstance(frames, Mapping):
                raise StructureError(f"the value of mp_id {mp_id!r} is a {type(frames).__name__}, expected an object "
                                     "{frame_id: frame}", path=path, structure=f"mp_id {mp_id!r}", fix=_FIX_MPTRJ)
            for frame_id, frame in frames.items():
                yield _mptrj_atoms(mp_id, frame_id, frame, path=path, energy_key=energy_key,
                                   include_stress=include_stress)
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


# ====================================================================== MD22 (sGDML npz)
_LENGTH_UNITS = {"ang": 1.0, "angstrom": 1.0, "a": 1.0, "å": 1.0, "bohr": BOHR_ANGSTROM, "nm": 10.0}
_ENERGY_UNITS = {"kcal/mol": KCAL_MOL_EV, "ev": 1.0, "kj/mol": KJ_MOL_EV, "hartree": HARTREE_EV, "ha": HARTREE_EV,
                 "au": HARTREE_EV}
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
    path = _existing_file(path, "MD22 npz")
    try:
        data = np.load(path, allow_pickle=False)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        raise StructureError(f"cannot be read as an npz archive (truncated or corrupt download): "
                             f"{type(exc).__name__}: {exc}", path=path, fix=_FIX_MD22) from exc
    if not isinstance(data, np.lib.npyio.NpzFile):
        raise StructureError("holds a single array, not an npz archive of z/R/E/F", path=path, fix=_FIX_MD22)
    with data:
        keys = set(data.files)
        missing = [k for k in ("z", "R", "E", "F") if k not in keys]
        if missing:
            raise StructureError(f"lacks array(s) {missing} (it has {sorted(keys)})", path=path,
                                 fix=f"{_FIX_MD22}; an sGDML dataset needs z, R, E and F")
        if "lattice" in keys:
            raise StructureError("is a periodic sGDML dataset ('lattice' key); MD22 molecules are not periodic",
                                 path=path, fix="read periodic data through read_generic (extxyz/traj)")

        def load(key):
            try:
                return np.asarray(data[key])
            except (zipfile.BadZipFile, OSError, EOFError, ValueError, zlib.error) as exc:
                raise StructureError(f"array {key!r} cannot be read (truncated or corrupt archive): "
                                     f"{type(exc).__name__}: {exc}", path=path, fix=_FIX_MD22) from exc

        z, R, E, F = load("z"), load("R"), load("E"), load("F")
        name = molecule or _npz_string(data, "name") or re.sub(r"^md22_", "", path.stem)
        theory = _npz_string(data, "theory")
        r_unit = _npz_string(data, "r_unit") or "Ang"
        e_unit = _npz_string(data, "e_unit") or "kcal/mol"
    if r_unit.strip().lower() not in _LENGTH_UNITS:
        raise StructureError(f"unknown length unit r_unit={r_unit!r}", path=path,
                             fix=f"supported: {', '.join(_LENGTH_UNITS)}")
    if e_unit.strip().lower() not in _ENERGY_UNITS:
        raise StructureError(f"unknown energy unit e_unit={e_unit!r}", path=path,
                             fix=f"supported: {', '.join(_ENERGY_UNITS)}")
    length = _LENGTH_UNITS[r_unit.strip().lower()]
    energy_unit = _ENERGY_UNITS[e_unit.strip().lower()]

    if z.ndim != 1 or z.size == 0:
        raise StructureError(f"array 'z' has shape {z.shape}, expected (N,) with N >= 1", path=path, fix=_FIX_MD22)
    z = _check_numbers(z, path=path, structure=None, fix=_FIX_MD22)
    n = z.size
    if R.ndim != 3 or R.shape[1:] != (n, 3):
        raise StructureError(f"array 'R' has shape {R.shape}, expected (M, {n}, 3) for {n} atoms", path=path,
                             fix=_FIX_MD22)
    m = R.shape[0]
    if E.shape == (m, 1):
        E = E[:, 0]
    if E.shape != (m,):
        raise StructureError(f"array 'E' has shape {E.shape}, expected ({m},) or ({m}, 1) for {m} frames",
                             path=path, fix=_FIX_MD22)
    if F.shape != (m, n, 3):
        raise StructureError(f"array 'F' has shape {F.shape}, expected ({m}, {n}, 3) ({m} frames, {n} atoms)",
                             path=path, fix=_FIX_MD22)
    try:
        positions = R.astype(np.float64) * length
        energy = E.astype(np.float64) * energy_unit
        forces = F.astype(np.float64) * (energy_unit / length)
    except (TypeError, ValueError) as exc:
        raise StructureError(f"R/E/F are not numeric: {exc}", path=path, fix=_FIX_MD22) from exc
    for key, arr in (("R", positions), ("E", energy), ("F", forces)):
        bad = ~np.isfinite(arr.reshape(m, -1)).all(axis=1)
        if bad.any():
            raise StructureError(f"array {key!r} contains NaN or inf ({int(bad.sum())} of {m} frames affected)",
                                 path=path, structure=f"frame {_first_bad(bad)}",
                                 fix="drop these frames or re-download the file")
    out = []
    for i in range(m):
        info = {"source": "md22", "molecule": name, "config_type": name, "frame": i,
                "structure_id": f"md22:{name}:{i}"}
        if theory:
            info["theory"] = theory
        out.append(_frozen_atoms(z, positions[i], energy=energy[i], forces=forces[i], info=info))
    return out


# ====================================================================== generic files
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
        raise StructureError(f"cannot be read as an ASE database: {type(exc).__name__}: {exc}", path=path,
                             fix="check that the file is a complete ASE .db (sqlite or json) file") from exc
    for row in rows:
        where = f"row id {row.id}"
        try:
            atoms = row.toatoms()
        except Exception as exc:  # noqa: BLE001 -- any damage inside a row
            raise StructureError(f"cannot be turned into Atoms: {type(exc).__name__}: {exc}", path=path,
                                 structure=where, fix="repair or remove this row") from exc
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
                raise StructureError(f"labels are malformed: {exc}", path=path, structure=where,
                                     fix=f"give {forces_key!r} as an (N, 3) array") from exc
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


def read_generic(path, *, energy_key: str = "energy", forces_key: str = "forces", stress_key: str = "stress",
                 charge_key: str = "charge", require_labels: bool = True, index=":",
                 selection=None, split: str | None = None) -> list[Atoms]:
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
    path = _existing_file(path, "structure")
    suffix = path.suffix.lower()
    if suffix == ".db":
        atoms_list = _read_ase_db(path, energy_key=energy_key, forces_key=forces_key, stress_key=stress_key,
                                  charge_key=charge_key, require_labels=require_labels, selection=selection)
    elif suffix in (".xyz", ".extxyz"):
        atoms_list = structures_from_file(path, energy_key=energy_key, forces_key=forces_key, stress_key=stress_key,
                                          charge_key=charge_key, require_labels=require_labels, index=index)
    elif suffix in (".h5", ".hdf5"):
        keys = {"require_labels": require_labels}
        if split is not None:
            keys["split"] = split
        return structures_from_file(path, **keys)  # ids and provenance are already in the store
    else:
        non_default = {k: v for k, v in (("energy_key", energy_key), ("forces_key", forces_key),
                                         ("stress_key", stress_key)) if v != k.split("_")[0]}
        if non_default:
            raise TypeError(f"read_generic({path.name!r}): {sorted(non_default)} apply to .xyz/.extxyz/.db files; "
                            f"{suffix or 'this'} files keep labels in ASE's calculator")
        atoms_list = structures_from_file(path, require_labels=require_labels, index=index)
    for i, atoms in enumerate(atoms_list):
        atoms.info.setdefault("source", "generic")
        atoms.info.setdefault("structure_id", f"{path.stem}:{i}")
    return atoms_list


# ====================================================================== dispatch
#: reader per source name (the keys of :data:`SOURCES`, plus aliases)
READERS = {
    "spice2": read_spice_hdf5,
    "mace-off": read_maceoff_xyz,
    "mptrj": read_mptrj,
    "md22": read_md22,
    "generic": read_generic,
}
_ALIASES = {"spice": "spice2", "spice2-hdf5": "spice2", "maceoff": "mace-off", "mace_off": "mace-off",
            "spice-maceoff": "mace-off", "mp-trj": "mptrj", "mptraj": "mptrj"}


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
