"""Student force fields: a common interface and the architectures (PaiNN, GemNet-dT/T, SchNet, ...)."""

from .base import AtomwiseOutput, Student
from .registry import STUDENTS, build_student

__all__ = ["AtomwiseOutput", "STUDENTS", "Student", "build_student"]
