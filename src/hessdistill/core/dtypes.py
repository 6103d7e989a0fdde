"""Floating-point precisions by name: the ``dtype`` option of training runs and teachers ("float32", "float64"),
and the name stored in student checkpoints."""

from __future__ import annotations

import torch

from .errors import HessdistillError

#: the precisions a model may run in, by the name the options and checkpoints use
DTYPES = {"float32": torch.float32, "float64": torch.float64}


class UnknownDtypeError(HessdistillError, ValueError):
    """A precision name that is not a key of :data:`DTYPES` (or a torch dtype that is not one of its values)."""


def torch_dtype(name) -> torch.dtype:
    """The torch dtype of ``name`` ("float32" or "float64"); a torch dtype of :data:`DTYPES` is returned as is."""
    if isinstance(name, torch.dtype):
        return torch_dtype(dtype_name(name))
    try:
        return DTYPES[str(name)]
    except KeyError:
        raise UnknownDtypeError(f"dtype must be one of {', '.join(DTYPES)}, got {name!r}") from None


def dtype_name(dtype: torch.dtype) -> str:
    """The name of ``dtype`` in :data:`DTYPES` ("float32" or "float64")."""
    for name, value in DTYPES.items():
        if value == dtype:
            return name
    raise UnknownDtypeError(f"dtype must be one of {', '.join(str(v) for v in DTYPES.values())}, got {dtype!r}")
