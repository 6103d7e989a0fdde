"""Structures and their storage: the HDF5 structure store, extxyz/ASE readers and validation."""

from .store import (
    FORMAT,
    FORMAT_VERSION,
    UNITS,
    StructureStore,
    content_hash,
    read_extxyz,
    read_structures,
    structures_from_file,
    validate_atoms,
    write_extxyz,
    write_structures,
)

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "UNITS",
    "StructureStore",
    "content_hash",
    "read_extxyz",
    "read_structures",
    "structures_from_file",
    "validate_atoms",
    "write_extxyz",
    "write_structures",
]
