"""Evaluation results as files: :func:`to_jsonable` (plain Python, non-finite floats as None) and :func:`write_json`
(indented JSON, written atomically)."""

from __future__ import annotations

import json
import math

import numpy as np

from ..core.atomic import atomic_write_text


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
