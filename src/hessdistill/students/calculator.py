"""Trained students as ASE calculators.

    from hessdistill.calculator import StudentCalculator
    atoms.calc = StudentCalculator.from_checkpoint("results/<subset>/runs/<teacher>/<run>/model.pt")

Energy (eV) and forces (eV/Å) for every student; stress (eV/Å³, ASE convention) for conservative students
on periodic structures, from the derivative of the energy with respect to a homogeneous strain ε applied to
positions and cell: σ = (1/V) ∂E/∂ε.  The neighbour graph is rebuilt for every new geometry.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from ase.calculators.calculator import Calculator, all_changes

from ..core.errors import HessdistillError, compose_message


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
        raise HessdistillError(compose_message(f"cannot be read: {exc}", path=path,
                                        fix="check the path and its permissions")) from exc
    try:
        ck = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # UnpicklingError, EOFError, RuntimeError/OSError (zip reader), ModuleNotFoundError, ...
        raise _unreadable(path, head, exc) from exc
    if isinstance(ck, dict) and ck.get("format") == "hessdistill.student":
        missing = [k for k in ("student_config", "state_dict") if k not in ck]
        if missing:
            raise HessdistillError(compose_message(f"is a student checkpoint without {', '.join(missing)} (damaged or written "
                                            "by other code)", path=path, fix=_FIX_MODEL))
        return ck
    if isinstance(ck, dict) and {"ema", "optimizer", "state"} <= set(ck):
        run = path.parent
        problem = "is a training checkpoint (optimiser and EMA state for resuming a run, as in last.pt), not the model"
        fix = (f"pass {run / 'model.pt'} (written when training finishes), or {run / 'best.pt'} (the best weights "
               "so far) from the same run directory")
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
    dtype = {"float32": torch.float32, "float64": torch.float64}[ck.get("dtype", "float32")]
    model = model.to(dtype=dtype)
    model.load_state_dict(ck["state_dict"])
    model.eval()
    return model.to(device), ck


class StudentCalculator(Calculator):
    implemented_properties = ["energy", "free_energy", "forces", "stress"]

    def __init__(self, model, device="cpu", **kwargs):
        super().__init__(**kwargs)
        self.model = model.to(device)
        self.device = torch.device(device)
        self.dtype = next(model.parameters()).dtype

    @classmethod
    def from_checkpoint(cls, path, device="cpu", **kwargs):
        model, _ = load_student(path, device=device)
        return cls(model, device=device, **kwargs)

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        from ..core.graphs import atoms_to_data, collate

        super().calculate(atoms, properties, system_changes)
        a = self.atoms
        batch = collate([atoms_to_data(a, self.model.cutoff, dtype=self.dtype, student=self.model)]).to(self.device)
        want_stress = "stress" in properties and a.pbc.any() and self.model.conservative
        if want_stress:
            if not a.pbc.all():
                raise HessdistillError("stress needs a structure periodic in all three directions")
            eps = torch.zeros(3, 3, dtype=self.dtype, device=self.device, requires_grad=True)
            deform = torch.eye(3, dtype=self.dtype, device=self.device) + 0.5 * (eps + eps.T)
            # positions and image shifts under the strain; forces come from the same graph at eps = 0
            batch.pos = batch.pos.detach().clone().requires_grad_(True) @ deform
            batch.edge_shift = batch.edge_shift @ deform
            energy, forces = self.model(batch, create_graph=True)
            (g_eps,) = torch.autograd.grad(energy.sum(), eps)
            stress = (g_eps / a.get_volume()).detach().cpu().numpy()
            self.results["stress"] = stress.reshape(9)[[0, 4, 8, 5, 2, 1]]
        else:
            energy, forces = self.model(batch, create_graph=False)
        e = float(energy.detach().sum())
        self.results["energy"] = e
        self.results["free_energy"] = e
        self.results["forces"] = forces.detach().cpu().numpy().astype(np.float64)
        if "stress" in properties and "stress" not in self.results:
            raise HessdistillError("stress is only available for conservative students on periodic structures")
