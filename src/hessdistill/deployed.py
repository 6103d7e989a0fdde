"""The fast path for users: an exported (or eager) student on plain tensors, as an ASE calculator.

    from hessdistill.deployed import FastCalculator
    atoms.calc = FastCalculator("student.pt2")   # written by `hessdistill export`

The implementation lives in :mod:`hessdistill.students.deployed`; this module only names it for users.
"""

from .students.deployed import EagerProgram, FastCalculator, Runner, load_program

__all__ = ["EagerProgram", "FastCalculator", "Runner", "load_program"]
