"""Atomic file output: write to a temporary file beside the target, then rename.

A reader (or a rerun after a crash) therefore sees either the previous complete file or the new complete
file, never a half-written one.  ``os.replace`` is atomic on POSIX within one file system, which is why the
temporary file lives in the target's directory.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path, suffix: str | None = None):
    """Yield a temporary path next to ``path``; on success it is renamed onto ``path``, on error removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{path.name}.", suffix=suffix if suffix is not None else ".partial", dir=path.parent
    )
    os.close(fd)
    os.unlink(tmp)  # writers (h5py, ase.io) create the file themselves
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_text(path, text: str) -> None:
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text)


def atomic_torch_save(path, obj) -> None:
    """``torch.save(obj)`` to ``path`` atomically: serialised in memory first, then written and renamed in one go."""
    import io

    import torch  # here, not at module level: this module is imported where torch need not be installed

    buf = io.BytesIO()
    torch.save(obj, buf)
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(buf.getvalue())
