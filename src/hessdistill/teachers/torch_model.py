"""Any differentiable torch model as a teacher (conservative or direct-force).

The factory named in ``torch:<module>:<factory>`` is called with the teacher's options and must return an
object with a ``__call__(positions, numbers, cell, pbc)`` that gives ``(energy, forces)`` from a positions
tensor (N,3) that requires grad; ``forces`` may be ``None``, in which case forces are -dE/dx (conservative).
An optional attribute ``conservative`` (default: True when forces are None) and ``supported_numbers`` are
honoured.  Placement: an ``nn.Module`` (or anything with a ``.to(device=..., dtype=...)``) is moved to the
teacher's device and dtype; a factory with a ``device`` (and ``dtype``) parameter receives them; any other
callable must already run where it is asked to, and is refused on a GPU (it would silently compute on the CPU).  Direct-force models give Hessian rows as rows of -dF/dx, which are not symmetric; stores written
from them say so (``conservative = False``).
"""

from __future__ import annotations

import importlib

import numpy as np
import torch

from ..core.errors import TeacherError
from .base import AutogradTeacher, ForwardResult


class TorchModelTeacher(AutogradTeacher):
    def __init__(
        self, model, *, name="torch-model", version="unknown", device=None, dtype="float64", conservative=None
    ):
        super().__init__(device=device, dtype=dtype)
        self.model = model.to(device=self.device, dtype=self.dtype) if callable(getattr(model, "to", None)) else model
        self.name = name
        self.version = version
        self._declared_conservative = conservative if conservative is not None else getattr(model, "conservative", None)
        if self._declared_conservative is not None:
            self.conservative = bool(self._declared_conservative)
        sn = getattr(model, "supported_numbers", None)
        self.supported_numbers = frozenset(int(z) for z in sn) if sn is not None else None

    @classmethod
    def from_factory(cls, module, factory, *, device=None, dtype="float64", **options):
        try:
            fn = getattr(importlib.import_module(module), factory)
        except (ImportError, AttributeError) as exc:
            raise TeacherError(f"torch teacher: cannot find {module}:{factory} ({exc})") from exc
        import inspect

        try:
            accepted = inspect.signature(fn).parameters
        except (TypeError, ValueError):
            accepted = {}
        placed = {}
        if "device" in accepted and "device" not in options:
            from ..core.devices import resolve_device

            placed["device"] = str(resolve_device(device))
        if "dtype" in accepted and "dtype" not in options:
            placed["dtype"] = dtype
        model = fn(**options, **placed)
        if not callable(getattr(model, "to", None)) and "device" not in placed and "device" not in options:
            from ..core.devices import resolve_device

            if resolve_device(device).type != "cpu":
                raise TeacherError(
                    f"torch teacher {module}:{factory} returned a {type(model).__name__}, which is not an nn.Module "
                    f"and has no .to(): it cannot be moved to {device}\n  fix: return an nn.Module, give the factory "
                    "a device parameter, or run this teacher on the CPU"
                )
        top = module.split(".")[0]
        version = str(getattr(importlib.import_module(top), "__version__", "unknown"))
        return cls(model, name=f"torch:{module}:{factory}", version=version, device=device, dtype=dtype)

    def forward(self, atoms, *, create_graph):
        pos = torch.tensor(atoms.get_positions(), dtype=self.dtype, device=self.device, requires_grad=True)
        numbers = torch.tensor(atoms.numbers, dtype=torch.long, device=self.device)
        cell = torch.tensor(np.asarray(atoms.cell), dtype=self.dtype, device=self.device)
        pbc = torch.tensor(atoms.pbc, device=self.device)
        energy, forces = self.model(pos, numbers, cell, pbc)
        if forces is None:
            if self._declared_conservative is False:
                raise TeacherError(f"{self.name}: declared non-conservative but returned no forces")
            self.conservative = True
            (g,) = torch.autograd.grad(energy, pos, create_graph=create_graph)
            forces = -g
        else:
            if self._declared_conservative is None:
                self.conservative = False
        return ForwardResult(positions=pos, energy=energy, forces=forces)
