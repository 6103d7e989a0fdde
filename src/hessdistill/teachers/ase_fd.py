"""Any ASE calculator as a teacher, with Hessian rows from central finite differences of forces.

Accuracy (documented in :mod:`hessdistill.core.hessian`): with the default 2nd-order stencil and ``step`` h the
truncation error is (h²/6)·∂³F/∂x³ and the rounding error about ε·|F|/h.  Measured against the closed-form
Hessian of a stiff Lennard-Jones cluster (σ = 1 Å, ε = 1 eV, neighbours near σ; tests/test_hessian.py):
relative error 2.6e-5 at the default h = 1e-3 Å and 2.6e-7 at h = 1e-4 Å with ``order: 2``; 9e-10 at
h = 1e-3 Å with ``order: 4``.  Softer potentials do better.  Each row costs 2 (order 2) or 4 (order 4)
force calls.  For float32 calculators use h ~ 1e-2 Å (rounding dominates below).

Finite differences give *columns* of the Jacobian.  For a conservative calculator (the usual case) these
are the Hessian rows.  Set ``conservative: false`` for a calculator whose forces are not -dE/dx; then every
requested row is taken from the full finite-difference Jacobian (6N force calls per structure) as a row
of -dF/dx, which is not symmetric.
"""

from __future__ import annotations

import importlib

import numpy as np
import torch

from ..core import hessian as hess
from ..core.errors import TeacherError
from .base import Teacher


def distribution_version(module: str) -> str:
    """Version of the installed distribution that provides top-level ``module`` (else its ``__version__``:
    tblite, for one, has none)."""
    from importlib.metadata import PackageNotFoundError, packages_distributions, version

    top = module.split(".")[0]
    for dist in packages_distributions().get(top, []) + [top]:
        try:
            return version(dist)
        except PackageNotFoundError:
            continue
    try:
        return str(getattr(importlib.import_module(top), "__version__", "unknown"))
    except ImportError:
        return "unknown"


class ASETeacher(Teacher):
    hessian_method = "finite-difference"

    def __init__(
        self,
        module: str,
        cls: str,
        *,
        device=None,
        dtype="float64",
        step: float = 1e-3,
        order: int = 2,
        conservative: bool = True,
        calculator_kwargs: dict | None = None,
        **kwargs,
    ):
        super().__init__(device="cpu", dtype=dtype)
        try:
            mod = importlib.import_module(module)
        except ImportError as exc:
            raise TeacherError(
                f"ASE teacher: cannot import module {module!r} ({exc})\n  fix: install the package that provides it"
            ) from exc
        try:
            klass = getattr(mod, cls)
        except AttributeError:
            raise TeacherError(f"ASE teacher: module {module!r} has no calculator class {cls!r}") from None
        calc_kwargs = dict(calculator_kwargs or {})
        calc_kwargs.update(kwargs)
        try:
            self.calc = klass(**calc_kwargs)
        except TypeError as exc:
            raise TeacherError(
                f"ASE teacher {module}:{cls}: bad calculator options {sorted(calc_kwargs)} ({exc})"
            ) from exc
        if step <= 0:
            raise TeacherError(f"ASE teacher: finite-difference step must be positive, got {step}")
        self.step = float(step)
        self.order = int(order)
        self.conservative = bool(conservative)
        self.name = f"ase:{module}:{cls}"
        self.version = distribution_version(module)
        self.options = {"step": self.step, "order": self.order, **calc_kwargs}

    def _forces(self, atoms, positions=None):
        a = atoms.copy()
        if positions is not None:
            a.set_positions(positions)
        a.calc = self.calc
        return a.get_forces()

    def _energy_forces_one(self, atoms):
        a = atoms.copy()
        a.calc = self.calc
        f = np.asarray(a.get_forces(), dtype=np.float64)
        return float(a.get_potential_energy()), f

    def hessian_rows(self, atoms, rows) -> np.ndarray:
        self.check_atoms(atoms)
        n_coords = 3 * len(atoms)
        rows = hess.as_row_indices(rows, n_coords)
        fn = lambda p: self._forces(atoms, p)  # noqa: E731
        pos = atoms.get_positions()
        if self.conservative:
            h = hess.finite_difference_columns(fn, pos, rows, step=self.step, order=self.order)
        else:
            cols = hess.finite_difference_columns(fn, pos, np.arange(n_coords), step=self.step, order=self.order)
            h = cols.T[rows]  # cols[c] = -dF/dx_c, so row r of -dF/dx is cols[:, r]
        return h.astype(np.float64) if self.dtype == torch.float64 else h.astype(np.float32).astype(np.float64)

    def metadata(self):
        md = super().metadata()
        md["teacher_options"] = repr(sorted(self.options.items()))
        return md
