"""Plain, canonical JSON values: the one converter of the package (reports, HDF5 attributes, workflow params).

Standard library only: the Snakefile imports :func:`canon` (through :mod:`hessdistill.workflow.params`) on the
submitting (login) node, whose environment need have neither numpy nor torch.  numpy scalars and arrays are
still converted, but numpy is never imported here: it is looked up in ``sys.modules``, so the numpy branch only
engages when numpy is loaded, which it is whenever a numpy object has been made.

* :func:`plain`: mappings as dicts with str keys, tuples as lists, paths as str, numpy scalars and arrays as
  Python values (optionally non-finite floats as None); anything else unchanged.
* :func:`canon`: :func:`plain` with sorted keys, and any other object as its str: a stable value whose ``repr`` is
  equal exactly when the settings are (what Snakemake's params rerun trigger compares).
* :func:`canonical_json`: the canonical JSON text of a value (sorted keys, no spaces, UTF-8 kept).
"""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Mapping


def _numpy_value(value):
    """(True, the Python value) for a numpy scalar or array, (False, None) for anything else or without numpy."""
    np = sys.modules.get("numpy")
    if np is None:
        return False, None
    if isinstance(value, np.generic):
        return True, value.item()
    if isinstance(value, np.ndarray):
        return True, value.tolist()
    return False, None


def plain(value, *, finite: bool = False):
    """``value`` with mappings as dicts (str keys), tuples as lists, paths as str, numpy scalars/arrays as Python.

    ``finite=True``: non-finite floats (nan, inf) become None, so that strict JSON (``allow_nan=False``) takes
    the result.  Other objects are returned unchanged."""
    if isinstance(value, Mapping):
        return {str(k): plain(v, finite=finite) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v, finite=finite) for v in value]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    is_numpy, converted = _numpy_value(value)
    if is_numpy:
        return plain(converted, finite=True) if finite else converted
    if finite and isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def canon(value):
    """A canonical, plain copy of ``value``: dicts with sorted string keys (recursively), lists for tuples, plain
    scalars (numpy ones as Python), any other object as its str.

    Snakemake compares params by ``repr``: key order, tuples, numpy scalars or paths would give spurious or
    missed reruns, so every workflow param goes through this."""
    if isinstance(value, Mapping):
        return {str(k): canon(value[k]) for k in sorted(value, key=str)}
    if isinstance(value, (list, tuple)):
        return [canon(v) for v in value]
    is_numpy, converted = _numpy_value(value)  # first: numpy's float64 is a float
    if is_numpy:
        return canon(converted)
    if value is None or isinstance(value, (bool, str, int, float)):
        return value
    if hasattr(value, "item"):  # a numpy-like scalar of another library
        return canon(value.item())
    return str(value)


def canonical_json(value) -> str:
    """The canonical JSON text of ``value`` (as :func:`plain`; sorted keys, no spaces, non-ASCII kept): equal
    values give equal text, so it can be hashed or compared."""
    return json.dumps(plain(value), sort_keys=True, ensure_ascii=False, separators=(",", ":"))
