"""Student architectures by name."""

from __future__ import annotations

import importlib

from ..core.errors import HessdistillError

#: name -> (module, class); modules are imported lazily
STUDENTS = {
    "schnet": ("hessdistill.students.schnet", "SchNet"),
    "painn": ("hessdistill.students.painn", "PaiNN"),
    "gemnet": ("hessdistill.students.gemnet", "GemNet"),
    "mace": ("hessdistill.students.mace", "MACEStudent"),  # needs mace-torch (the MACE environment)
}


def build_student(config: dict):
    """Build a student from ``{"arch": name, **hyper-parameters}`` (as stored in checkpoints)."""
    config = dict(config)
    arch = config.pop("arch", None)
    if arch not in STUDENTS:
        raise HessdistillError(f"unknown student architecture {arch!r}; choose one of {sorted(STUDENTS)}")
    module, cls = STUDENTS[arch]
    klass = getattr(importlib.import_module(module), cls)
    try:
        return klass(**config)
    except TypeError as exc:
        raise HessdistillError(f"student {arch!r}: bad hyper-parameters {sorted(config)} ({exc})") from exc
