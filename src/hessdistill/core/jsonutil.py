"""Plain-Python conversion for reports and HDF5 attributes (JSON-able, stable)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np


def plain(value):
    """``value`` with mappings as dicts (str keys), tuples as lists, paths as str, numpy scalars/arrays as Python."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value
