"""A student as the model under evaluation (:class:`hessdistill.core.model.EvaluatedModel`).

:class:`EvaluatedStudent` wraps a checkpoint (``model.pt``) or a loaded student: energies and forces (batched,
:func:`student_predictor`), Hessian rows by double backpropagation (:func:`student_hessian_rows_fn`, through
:mod:`hessdistill.core.hessian`), an ASE calculator
(:class:`~hessdistill.students.calculator.StudentCalculator`) and the exported program users run, which the
speed evaluation times (:meth:`EvaluatedStudent.fast_program`).
"""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path

import numpy as np

from ..core.devices import resolve_device
from ..core.errors import HessdistillError
from ..core.graphs import atoms_to_data, collate

log = logging.getLogger("hessdistill.students.evaluated")


def student_predictor(model, *, batch_size: int = 32, device="cpu"):
    """``predict(list of Atoms) -> (energies (M,), list of forces)`` for a student, batched."""
    dtype = next(model.parameters()).dtype

    def predict(atoms_list):
        energies, forces = [], []
        model.eval()
        for b0 in range(0, len(atoms_list), batch_size):
            chunk = atoms_list[b0 : b0 + batch_size]
            batch = collate([atoms_to_data(a, model.cutoff, dtype=dtype, student=model) for a in chunk]).to(device)
            e, f = model(batch, create_graph=False)
            energies += e.detach().double().cpu().tolist()
            f = f.detach().double().cpu().numpy()
            ptr = batch.ptr.cpu().numpy()
            forces += [f[ptr[m] : ptr[m + 1]] for m in range(len(chunk))]
        return np.asarray(energies), forces

    return predict


def student_hessian_rows_fn(model, device="cpu"):
    """``hessian_rows_fn(atoms, rows)`` for a student: rows of H = -dF/dx by double backprop."""
    from ..core import hessian as hess

    dtype = next(model.parameters()).dtype

    def fn(atoms, rows):
        batch = collate([atoms_to_data(atoms, model.cutoff, dtype=dtype, student=model)]).to(device)
        batch.pos.requires_grad_(True)
        _, f = model(batch, create_graph=True)
        return hess.hessian_rows(f, batch.pos, rows).detach().double().cpu().numpy()

    return fn


class EvaluatedStudent:
    """A student under evaluation: ``EvaluatedStudent("runs/x/model.pt", device="auto")``.

    ``source``: a checkpoint path (loaded by :func:`~hessdistill.students.calculator.load_student`; the model is
    named ``student:<checkpoint's directory>``) or a loaded student module (named ``name``, default
    ``student``).  ``device``: cpu, cuda, cuda:N or auto (cuda where this process sees a GPU).
    """

    kind = "student"

    def __init__(self, source, device="cpu", name: str | None = None):
        from .calculator import load_student

        self.device = resolve_device(device)
        if isinstance(source, (str, Path)):
            self.model, _ = load_student(source, device=str(self.device))
            self.name = name or f"student:{Path(source).parent.name}"
        else:
            self.model = source.to(self.device)
            self.name = name or "student"
        self.dtype = next(self.model.parameters()).dtype
        self._rows_fn = student_hessian_rows_fn(self.model, device=str(self.device))
        self._calculator = None

    def __repr__(self):
        return f"<EvaluatedStudent {self.name} {self.dtype} on {self.device}>"

    @property
    def n_params(self) -> int:
        """Parameters of the student (its ``n_params``)."""
        return int(self.model.n_params)

    def predictor(self, batch_size: int = 32):
        """``predict(list of Atoms) -> (energies (M,), list of forces)``, ``batch_size`` structures per model call."""
        return student_predictor(self.model, batch_size=batch_size, device=str(self.device))

    def energy_forces(self, atoms) -> tuple[float, np.ndarray]:
        """Energy (eV) and forces (N, 3; eV/Å) of one structure."""
        (e,), (f,) = self.predictor(1)([atoms])
        return float(e), f

    def hessian_rows(self, atoms, rows) -> np.ndarray:
        """Rows of H = -dF/dx (eV/Å²), shape (len(rows), 3N), by double backpropagation."""
        return self._rows_fn(atoms, rows)

    def hessian(self, atoms) -> np.ndarray:
        """The full (3N, 3N) Hessian."""
        return self.hessian_rows(atoms, np.arange(3 * len(atoms)))

    def calculator(self):
        """The student as an ASE calculator (:class:`~hessdistill.students.calculator.StudentCalculator`), the same
        instance on every call."""
        if self._calculator is None:
            from .calculator import StudentCalculator

            self._calculator = StudentCalculator(self.model, device=str(self.device))
        return self._calculator

    def fast_program(self, fmt: str) -> dict:
        """The student on the fast path users run: ``{"program", "format", "export_s", "note"}``.

        ``aoti``/``torchscript``: exported to a temporary file (as ``hessdistill export`` does); ``eager``: the model
        on plain tensors.  A student that cannot be exported (e.g. MACE) is timed eagerly; an AOTI export that fails
        (e.g. no C++ compiler on the node) falls back to TorchScript.  ``format`` and ``note`` say what was timed.
        """
        from .deployed import EagerProgram
        from .export import export_student, extras_spec, load_exported

        device = str(self.device)
        if fmt != "eager":
            try:
                extras_spec(self.model)
            except HessdistillError as exc:
                return {
                    "program": EagerProgram(self.model),
                    "format": "eager",
                    "export_s": None,
                    "note": f"not exportable, timed eagerly: {str(exc).splitlines()[0]}",
                }
        if fmt == "eager":
            return {"program": EagerProgram(self.model), "format": "eager", "export_s": None, "note": None}
        note = None
        with tempfile.TemporaryDirectory(prefix="hessdistill-export-") as tmp:
            t0 = time.perf_counter()
            try:
                path = Path(tmp) / ("student.pt2" if fmt == "aoti" else "student.pt")
                export_student(self.model, path, fmt=fmt, device=device)
            except Exception as exc:  # noqa: BLE001 - compiler/toolchain failures of AOTInductor take many forms
                if fmt != "aoti":
                    raise
                note = (
                    f"AOTInductor export failed ({type(exc).__name__}: {str(exc).splitlines()[0][:200]}); "
                    "timed TorchScript"
                )
                log.warning("%s", note)
                fmt, path = "torchscript", Path(tmp) / "student.pt"
                export_student(self.model, path, fmt=fmt, device=device)
            return {
                "program": load_exported(path, device=device),
                "format": fmt,
                "export_s": time.perf_counter() - t0,
                "note": note,
            }
