"""A trained student as an ASE calculator: the public entry point.

    from hessdistill.calculator import StudentCalculator
    atoms.calc = StudentCalculator("results/<subset>/runs/<teacher>/<run>/model.pt")

The implementation lives in :mod:`hessdistill.students.calculator`; this module only names it for users.
"""

from .students.calculator import StudentCalculator, load_student

__all__ = ["StudentCalculator", "load_student"]
