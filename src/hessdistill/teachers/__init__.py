"""Foundation-model teachers: energies, forces and Hessian rows in eV, Å."""

from .base import AutogradTeacher, ForwardResult, Teacher
from .registry import load_teacher, teacher_from_spec

__all__ = ["AutogradTeacher", "ForwardResult", "Teacher", "load_teacher", "teacher_from_spec"]
