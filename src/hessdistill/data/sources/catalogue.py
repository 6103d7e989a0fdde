"""Where each dataset comes from (:data:`SOURCES`: URLs, file names, sizes, checksums, licences, citations) and the
check of a downloaded file against its checksum (:func:`verify_checksum`, :class:`ChecksumError`).

Digests are computed by :func:`hessdistill.core.digest.file_digest`.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

from ...core.digest import file_digest
from ...core.errors import StructureError

__all__ = ["SOURCES", "ChecksumError", "expected_checksum", "verify_checksum"]

_FILL_ON_DOWNLOAD = (
    "not published in a form we could confirm: left None; the workflow's download rule "
    "records the digest of the first download and verifies later downloads against it"
)

#: Where each dataset comes from.  Per source: ``reader`` (key of :data:`~hessdistill.data.sources.READERS`),
#: ``landing_page``, ``files`` (per file: ``name``, ``urls``, ``size_bytes``, ``md5``, ``sha256``, ``checksum_source``;
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


def verify_checksum(path, expected: str, algorithm: str = "sha256") -> str:
    """Check that ``path`` has the hex digest ``expected``; return the digest.

    Raises :class:`ChecksumError` (naming the file, both digests and what to do) on a mismatch, and
    ``ValueError`` when ``expected`` is not a hex digest of the right length for ``algorithm``.
    """
    if not isinstance(expected, str) or not expected.strip():
        raise ValueError(
            f"verify_checksum({str(path)!r}): expected must be a hex digest string, got {expected!r}; "
            "use hessdistill.core.digest.file_digest() to compute one when no published value exists"
        )
    expected = expected.strip().lower()
    if ":" in expected:  # "md5:abc..." / "sha256:..."
        prefix, expected = expected.split(":", 1)
        algorithm = prefix
    try:
        size = hashlib.new(algorithm).digest_size
    except (ValueError, TypeError):
        raise ValueError(f"unknown checksum algorithm {algorithm!r} (use one of md5, sha1, sha256, sha512)") from None
    if len(expected) != 2 * size or not _HEX.match(expected):
        raise ValueError(
            f"verify_checksum({str(path)!r}): {expected!r} is not a {algorithm} digest ({2 * size} hex characters)"
        )
    path = Path(path)
    if not path.is_file():
        raise StructureError(
            "file does not exist" if not path.exists() else "is not a regular file",
            path=path,
            fix="download the file first (see hessdistill.data.sources.SOURCES for URLs)",
        )
    actual = file_digest(path, algorithm)
    if actual != expected:
        raise ChecksumError(
            f"{algorithm} checksum mismatch: expected {expected}, got {actual} (size {path.stat().st_size} "
            "bytes): the download is incomplete, corrupt, or a different version of the file",
            path=path,
            fix="delete the file and download it again; if the mismatch persists, the publisher changed "
            "the file: check the source's landing page and update SOURCES",
        )
    return actual
