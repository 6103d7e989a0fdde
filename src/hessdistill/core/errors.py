"""Exceptions raised by hessdistill.

Every error a user can trigger with bad input says three things: *where* (the file and, when there is
one, the structure index), *what* is wrong, and *how to fix it*.  The classes below only format those
parts consistently; raising code supplies the words.
"""

from __future__ import annotations


class HessdistillError(Exception):
    """Base class of all errors raised on purpose by hessdistill."""


def compose_message(problem: str, *, path=None, structure=None, fix: str | None = None) -> str:
    where = []
    if path is not None:
        where.append(f"file {str(path)!r}")
    if structure is not None:
        where.append(f"structure {structure}")
    msg = (", ".join(where) + ": " if where else "") + problem
    if fix:
        msg += f"\n  fix: {fix}"
    return msg


class StructureError(HessdistillError, ValueError):
    """A structure (or a file of structures) is malformed."""

    def __init__(self, problem: str, *, path=None, structure=None, fix: str | None = None):
        self.path = path
        self.structure = structure
        self.problem = problem
        self.fix = fix
        super().__init__(compose_message(problem, path=path, structure=structure, fix=fix))


class StoreError(HessdistillError, ValueError):
    """An HDF5 store is missing, truncated, or does not match what the caller expects."""

    def __init__(self, problem: str, *, path=None, structure=None, fix: str | None = None):
        self.path = path
        self.structure = structure
        super().__init__(compose_message(problem, path=path, structure=structure, fix=fix))


class TeacherError(HessdistillError, ValueError):
    """A teacher cannot be loaded (unknown name, missing package or weights) or cannot handle a structure."""


class UnsupportedElementError(TeacherError):
    """A structure holds elements the teacher was not trained on."""

    def __init__(self, teacher: str, symbols, *, structure=None, path=None, supported=None):
        symbols = sorted(set(symbols))
        problem = f"teacher {teacher!r} does not support element(s) {', '.join(symbols)}"
        fix = "remove these structures with a subset selector, or choose a teacher that covers these elements"
        if supported is not None and len(supported) <= 20:
            fix += f" (this teacher supports: {', '.join(supported)})"
        super().__init__(compose_message(problem, path=path, structure=structure, fix=fix))
        self.symbols = symbols
