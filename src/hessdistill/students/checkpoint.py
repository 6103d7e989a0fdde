"""Student checkpoints (``model.pt``/``best.pt``): written by the training loop, read by the calculator,
the evaluation jobs and the command line.

A student checkpoint is a dict with ``format`` = ``"hessdistill.student"``, the student's configuration
(``student_config``: what :func:`hessdistill.students.build_student` rebuilds it from), its weights
(``state_dict``, on the CPU), the name of its precision (``dtype``) and what the writer adds about it (the training
loop: epoch, validation and teacher force MAE, method).  Training checkpoints (``last.pt``, for resuming a run)
are another format, written by :mod:`hessdistill.training.checkpoint`.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..core.atomic import atomic_torch_save
from ..core.dtypes import dtype_name, torch_dtype
from ..core.errors import HessdistillError, compose_message

#: the ``format`` entry of a student checkpoint
FORMAT = "hessdistill.student"

_FIX_MODEL = "pass the model.pt written by training (results/<subset>/runs/<teacher>/<run>/model.pt)"
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


def _unreadable(path: Path, head: bytes, exc: Exception) -> HessdistillError:
    """The error for a file ``torch.load`` cannot read, saying what the file (``head``: its first bytes) is instead."""
    if not head:
        problem = "is empty, not a student checkpoint (an interrupted copy or write?)"
    elif head.startswith(_HDF5_MAGIC):
        problem = "is an HDF5 file (a structure, label or Hessian store?), not a student checkpoint"
    elif head.startswith(b"PK\x03\x04"):
        problem = f"is a truncated or damaged torch file ({type(exc).__name__}: {exc})"
    elif b"\0" not in head and _is_text(head):
        problem = "is a text file, not a student checkpoint"
    else:
        problem = f"cannot be read as a torch checkpoint ({type(exc).__name__}: {exc}): truncated, or not a torch file"
    return HessdistillError(compose_message(problem, path=path, fix=_FIX_MODEL))


def _is_text(head: bytes) -> bool:
    """Whether the first bytes of a file read as UTF-8 text."""
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc.start >= len(head) - 3  # a multi-byte character cut off by the 512-byte read
    return True


def read_student_checkpoint(path) -> dict:
    """The checkpoint dict of a student file (``model.pt``/``best.pt``), or a HessdistillError naming the file.

    Missing files, directories, unreadable or truncated files, other file types (text, HDF5) and training
    checkpoints (``last.pt``: optimiser state for resuming, not the model) each get their own message and fix.
    """
    path = Path(path)
    if not path.exists():
        raise HessdistillError(compose_message("does not exist", path=path, fix=_FIX_MODEL))
    if path.is_dir():
        found = [p for p in (path / "model.pt", path / "best.pt") if p.is_file()]
        fix = f"pass {found[0]}" if found else _FIX_MODEL
        raise HessdistillError(compose_message("is a directory, not a student checkpoint", path=path, fix=fix))
    try:
        with open(path, "rb") as f:
            head = f.read(512)
    except OSError as exc:
        raise HessdistillError(
            compose_message(f"cannot be read: {exc}", path=path, fix="check the path and its permissions")
        ) from exc
    try:
        ck = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # UnpicklingError, EOFError, RuntimeError/OSError (zip reader), ModuleNotFoundError, ...
        raise _unreadable(path, head, exc) from exc
    if isinstance(ck, dict) and ck.get("format") == FORMAT:
        missing = [k for k in ("student_config", "state_dict") if k not in ck]
        if missing:
            raise HessdistillError(
                compose_message(
                    f"is a student checkpoint without {', '.join(missing)} (damaged or written by other code)",
                    path=path,
                    fix=_FIX_MODEL,
                )
            )
        return ck
    if isinstance(ck, dict) and {"ema", "optimizer", "state"} <= set(ck):
        run = path.parent
        problem = "is a training checkpoint (optimiser and EMA state for resuming a run, as in last.pt), not the model"
        fix = (
            f"pass {run / 'model.pt'} (written when training finishes), or {run / 'best.pt'} (the best weights "
            "so far) from the same run directory"
        )
        raise HessdistillError(compose_message(problem, path=path, fix=fix))
    if isinstance(ck, dict) and ck and all(isinstance(v, torch.Tensor) for v in ck.values()):
        what = "holds bare weights (a state_dict) without the student configuration needed to rebuild the model"
    else:
        what = f"holds a {type(ck).__name__}, not a hessdistill student checkpoint"
    raise HessdistillError(compose_message(what, path=path, fix=_FIX_MODEL))


def with_legacy_hparams(config: dict) -> dict:
    """A checkpoint's student config with the values of hyper-parameters added after it was written (the
    architecture module's ``LEGACY_HPARAMS``), so that an old checkpoint rebuilds the function it was trained as."""
    import importlib

    from .registry import STUDENTS

    entry = STUDENTS.get(config.get("arch"))
    legacy = getattr(importlib.import_module(entry[0]), "LEGACY_HPARAMS", {}) if entry else {}
    return {**legacy, **config}


def load_student(path, device="cpu"):
    """Rebuild a student from a ``model.pt``/``best.pt`` checkpoint written by the training loop.

    Returns ``(model, checkpoint dict)``; any other file raises a HessdistillError that names it and the fix
    (see :func:`read_student_checkpoint`).
    """
    from . import build_student

    ck = read_student_checkpoint(path)
    model = build_student(with_legacy_hparams(ck["student_config"]))
    model = model.to(dtype=torch_dtype(ck.get("dtype", "float32")))
    model.load_state_dict(ck["state_dict"])
    model.eval()
    return model.to(device), ck


def save_student(path, model, *, dtype: str | None = None, **info) -> None:
    """Write ``model`` (a :class:`hessdistill.students.Student`) to ``path`` as a student checkpoint, atomically.

    ``dtype``: the name of the precision to record ("float32"/"float64"; default: that of the model's first
    parameter); ``info``: further entries (JSON-like values) stored after it, e.g. the epoch and validation MAE.
    """
    cfgd = model.config()
    if dtype is None:
        dtype = dtype_name(next(model.parameters()).dtype)
    atomic_torch_save(
        path,
        {
            "format": FORMAT,
            "student_config": cfgd,
            "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "dtype": dtype,
            **info,
        },
    )
