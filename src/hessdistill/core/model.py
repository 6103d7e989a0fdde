"""The model under evaluation: one small contract that teachers and students both meet, and checks of its outputs.

Every evaluation (:mod:`hessdistill.evaluation`, :mod:`hessdistill.jobs.evaluate`) takes an :class:`EvaluatedModel`:
a teacher (:class:`hessdistill.teachers.Teacher`) or a student checkpoint
(:class:`hessdistill.students.evaluated.EvaluatedStudent`).  The contract is what the evaluations read, nothing
more; :func:`check_model` runs a model once on a structure and validates every output against it, and
:func:`validate_outputs` checks outputs computed elsewhere (shapes, finiteness), naming the structure.
Units: eV, Å; Hessians in eV/Å², coordinates flattened atom-major (row ``3 i + k`` is atom ``i``, axis ``k``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import numpy as np

from .errors import HessdistillError, compose_message

#: the kinds of model an evaluation reports (``kind`` in every evaluation JSON)
MODEL_KINDS = ("teacher", "student")


@runtime_checkable
class EvaluatedModel(Protocol):
    """What an evaluation needs of the model it evaluates.

    Attributes: ``name`` (reported as ``model`` in every evaluation JSON), ``kind`` (one of :data:`MODEL_KINDS`),
    ``device`` (a ``torch.device``; ``str(device)`` names it), ``dtype`` (the ``torch.dtype`` it computes in) and
    ``n_params`` (trainable parameters, None where the model has no torch parameters).
    """

    name: str
    kind: str
    device: Any
    dtype: Any

    @property
    def n_params(self) -> int | None:
        """Parameters of the underlying torch model, None when it has none."""

    def energy_forces(self, atoms) -> tuple[float, np.ndarray]:
        """Energy (eV) and forces (N, 3; eV/Å) of one ``ase.Atoms``."""

    def predictor(self, batch_size: int) -> Callable:
        """``predict(list of Atoms) -> (energies (M,), list of (N_m, 3) forces)``, in batches of ``batch_size`` where
        the model evaluates batches (the test-accuracy evaluation calls it)."""

    def hessian_rows(self, atoms, rows) -> np.ndarray:
        """Rows of the Hessian d²E/dx² (eV/Å²; -dF/dx for direct-force models), shape (len(rows), 3N)."""

    def hessian(self, atoms) -> np.ndarray:
        """The full (3N, 3N) Hessian."""

    def calculator(self):
        """An ASE calculator (energy, forces) of this model: the same instance on every call, so the evaluations of
        one model share it."""


def calculator_predictor(calc) -> Callable:
    """``predict(list of Atoms) -> (energies (M,), list of (N_m, 3) forces)`` for any ASE calculator, one structure
    at a time (each copied, so the caller's structures keep their own calculators)."""

    def predict(atoms_list):
        energies, forces = [], []
        for a in atoms_list:
            b = a.copy()
            b.calc = calc
            energies.append(float(b.get_potential_energy()))
            forces.append(np.asarray(b.get_forces(), dtype=np.float64))
        return np.asarray(energies), forces

    return predict


def validate_outputs(
    n_atoms: int, *, energy=None, forces=None, hessian=None, rows=None, structure=None, model: str | None = None
) -> None:
    """Check a model's outputs for a structure of ``n_atoms`` atoms: the energy a finite scalar, the forces a finite
    (N, 3) array, the Hessian finite and (len(rows), 3N) (rows given) or (3N, 3N).  Outputs left None are not
    checked.  Raises :class:`~hessdistill.core.errors.HessdistillError` naming the model, the structure (an index or
    a label) and the output."""
    who = f"model {model!r}: " if model else ""

    def fail(problem):
        raise HessdistillError(
            compose_message(
                who + problem,
                structure=structure,
                fix="check the model and its inputs (units eV, Å; coordinates flattened atom-major)",
            )
        )

    if energy is not None:
        e = np.asarray(energy)
        if e.size != 1:
            fail(f"energy must be a scalar, got shape {e.shape}")
        if not np.isfinite(e).all():
            fail(f"energy is not finite ({float(e.reshape(-1)[0])})")
    if forces is not None:
        f = np.asarray(forces)
        if f.shape != (n_atoms, 3):
            fail(f"forces must have shape ({n_atoms}, 3), got {f.shape}")
        if not np.isfinite(f).all():
            fail(f"forces have {int((~np.isfinite(f)).sum())} non-finite component(s)")
    if hessian is not None:
        h = np.asarray(hessian)
        want = (3 * n_atoms if rows is None else len(np.atleast_1d(rows)), 3 * n_atoms)
        if h.shape != want:
            fail(f"{'Hessian rows' if rows is not None else 'Hessian'} must have shape {want}, got {h.shape}")
        if not np.isfinite(h).all():
            fail(f"Hessian has {int((~np.isfinite(h)).sum())} non-finite element(s)")


def check_model(model: EvaluatedModel, atoms, *, rows=(0,), structure=None) -> dict:
    """Run ``model`` once on ``atoms`` through every method of :class:`EvaluatedModel` and validate what it returns
    (:func:`validate_outputs`; ``kind`` in :data:`MODEL_KINDS`; the calculator's energy and forces equal to
    :meth:`~EvaluatedModel.energy_forces`'s to 1e-6 relative).  Returns ``{"energy", "forces", "hessian_rows"}``."""
    if not isinstance(model, EvaluatedModel):
        missing = [
            m
            for m in (
                "name",
                "kind",
                "device",
                "dtype",
                "n_params",
                "energy_forces",
                "predictor",
                "hessian_rows",
                "hessian",
                "calculator",
            )
            if not hasattr(model, m)
        ]
        raise HessdistillError(f"{type(model).__name__} is not an EvaluatedModel: it lacks {missing}")
    if model.kind not in MODEL_KINDS:
        raise HessdistillError(f"model {model.name!r}: kind must be one of {MODEL_KINDS}, got {model.kind!r}")
    n = len(atoms)
    e, f = model.energy_forces(atoms)
    validate_outputs(n, energy=e, forces=f, structure=structure, model=model.name)
    h = model.hessian_rows(atoms, np.asarray(rows))
    validate_outputs(n, hessian=h, rows=rows, structure=structure, model=model.name)
    (pe,), (pf,) = model.predictor(1)([atoms])
    b = atoms.copy()
    b.calc = model.calculator()
    ce, cf = b.get_potential_energy(), b.get_forces()
    for what, (x, y) in {"predictor": (pe, pf), "calculator": (ce, cf)}.items():
        validate_outputs(n, energy=x, forces=y, structure=structure, model=model.name)
        if not (np.allclose(x, e, rtol=1e-6, atol=1e-8) and np.allclose(y, f, rtol=1e-6, atol=1e-8)):
            raise HessdistillError(
                compose_message(
                    f"model {model.name!r}: the {what}'s energy and forces differ from energy_forces'",
                    structure=structure,
                )
            )
    return {"energy": float(e), "forces": np.asarray(f), "hessian_rows": np.asarray(h)}
