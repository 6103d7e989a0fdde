"""Foundation-model teachers: energies, forces and Hessian rows in eV, Å."""

from .base import AutogradTeacher, ForwardResult, Teacher
from .registry import TEACHER_DEFAULTS, load_teacher, reloadable, teacher_from_spec

__all__ = [
    "AutogradTeacher",
    "ForwardResult",
    "TEACHER_DEFAULTS",
    "Teacher",
    "load_teacher",
    "reloadable",
    "teacher_from_spec",
]
