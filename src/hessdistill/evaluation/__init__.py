"""Evaluation of students and teachers: accuracy, speed, vibrations, MD stability, relaxation.

Every evaluation runs identically for a student (``hessdistill.calculator.StudentCalculator``) and for a
teacher (``hessdistill.teachers.calculator.TeacherCalculator``), or for any other ASE calculator.
Hessian-based evaluations take ``hessian_fn(atoms) -> (3N, 3N)`` (eV/Å²), defaulting to finite
differences of the calculator's forces.  Every function returns a plain JSON-able dict with units in the
key names; :func:`write_json` writes one atomically.
"""

from __future__ import annotations

import json
import math

import numpy as np

from ..core.atomic import atomic_write_text
from .accuracy import (accuracy, accuracy_from_stores, calculator_predictor, hessian_accuracy, student_hessian_rows_fn,
                       student_predictor)
from .speed import speed_comparison, time_student, time_teacher
from .md import (BOND_TOLERANCE, find_bonds, md_stability_suite, mean_sem, reference_bond_lengths, run_md,
                 smeared_rdf, rdf_grid)
from .relax import kabsch_rmsd, periodic_rmsd, relax_comparison, run_optimizer, structure_rmsd
from .vibrations import (
    compare_frequencies,
    eigenvalues_to_cm1,
    fd_hessian_fn,
    frequency_suite,
    harmonic_frequencies,
    n_vibrational_modes,
    rigid_body_basis,
    vibrational_comparison,
)


def to_jsonable(obj):
    """Recursively convert numpy scalars/arrays and tuples to plain Python; non-finite floats become None."""
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return [to_jsonable(v) for v in obj.tolist()]
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        x = float(obj)
        return x if math.isfinite(x) else None
    return obj


def write_json(path, result) -> None:
    """Write ``result`` as indented JSON, atomically (temporary file + rename)."""
    atomic_write_text(path, json.dumps(to_jsonable(result), indent=2, allow_nan=False) + "\n")


__all__ = [
    "BOND_TOLERANCE", "compare_frequencies", "eigenvalues_to_cm1", "fd_hessian_fn", "find_bonds",
    "frequency_suite", "harmonic_frequencies", "kabsch_rmsd", "md_stability_suite", "mean_sem",
    "n_vibrational_modes", "periodic_rmsd", "rdf_grid",
    "reference_bond_lengths", "relax_comparison", "rigid_body_basis", "run_md", "run_optimizer",
    "smeared_rdf", "structure_rmsd", "to_jsonable", "vibrational_comparison", "write_json",
]
