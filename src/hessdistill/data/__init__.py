"""Structures and their storage: the HDF5 structure store and the extxyz/ASE file formats.

Validation of one structure lives in :mod:`hessdistill.core.structures` (teachers check atoms too).
"""

from .formats import read_extxyz, structures_from_file, write_extxyz
from .store import FORMAT, FORMAT_VERSION, UNITS, StructureStore, content_hash, read_structures, write_structures

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "UNITS",
    "StructureStore",
    "content_hash",
    "read_extxyz",
    "read_structures",
    "structures_from_file",
    "write_extxyz",
    "write_structures",
]
