"""The teacher interface shared by every foundation-model adapter.

A teacher maps ``ase.Atoms`` to energies (eV), forces (eV/Å) and Hessian rows (eV/Å², H = d²E/dx²).
Adapters differ only in how they build a differentiable energy/force graph (:class:`AutogradTeacher`) or
in how they evaluate forces for finite differences (:class:`~hessdistill.teachers.ase_fd.ASETeacher`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np
import torch
from ase import Atoms
from ase.data import chemical_symbols

from ..core import hessian as hess
from ..core.devices import resolve_device
from ..core.dtypes import dtype_name, torch_dtype
from ..core.errors import TeacherError, UnsupportedElementError


@dataclass
class ForwardResult:
    """A differentiable evaluation of one structure.

    ``positions`` is the (N,3) leaf the energy was computed from; ``forces`` (N,3) carries a graph back to it
    (built with ``create_graph=True`` for conservative models, the force head itself for direct models).
    """

    positions: torch.Tensor
    energy: torch.Tensor
    forces: torch.Tensor
    #: (N, F) invariant node features of the same pass, when the caller asked for them and the teacher can
    #: capture them (see :meth:`AutogradTeacher.labels_with_features`); may carry a graph, detach before use
    node_features: torch.Tensor | None = None


class Teacher(ABC):
    """Common interface. Subclasses set ``name``, ``version``, ``conservative`` and implement the methods.

    A teacher is also a model under evaluation (:class:`hessdistill.core.model.EvaluatedModel`): ``name``, ``kind``,
    ``device``, ``dtype``, :attr:`n_params`, :meth:`energy_forces`, :meth:`predictor`, :meth:`hessian_rows`,
    :meth:`hessian` and :meth:`calculator`."""

    name: str = "teacher"
    version: str = "unknown"
    #: True when forces are -dE/dx (symmetric Hessian); False for direct-force heads (rows of -dF/dx).
    conservative: bool = True
    #: how Hessian rows are obtained: "autograd" or "finite-difference"
    hessian_method: str = "autograd"
    #: atomic numbers the model covers, or None when it does not say
    supported_numbers: frozenset[int] | None = None

    def __init__(self, device=None, dtype="float64"):
        self.device = resolve_device(device)
        self.dtype = torch_dtype(dtype)

    # ------------------------------------------------------------------ checks
    def check_atoms(self, atoms: Atoms, *, index=None, path=None) -> None:
        """Raise a clear error when the teacher cannot evaluate ``atoms``."""
        if not isinstance(atoms, Atoms):
            raise TypeError(f"teachers take ase.Atoms, got {type(atoms).__name__}")
        from ..core.structures import validate_atoms

        validate_atoms(atoms, index=index, path=path, require_labels=False)
        if self.supported_numbers is not None:
            bad = {int(z) for z in atoms.numbers} - set(self.supported_numbers)
            if bad:
                raise UnsupportedElementError(
                    self.name,
                    [chemical_symbols[z] for z in bad],
                    structure=index,
                    path=path,
                    supported=[chemical_symbols[z] for z in sorted(self.supported_numbers)],
                )

    # ------------------------------------------------------------------ API
    @abstractmethod
    def _energy_forces_one(self, atoms: Atoms) -> tuple[float, np.ndarray]: ...

    #: whether :meth:`energy_forces_batched` evaluates a list in one model call (else one structure at a time)
    batched = False

    def energy_forces_batched(self, atoms_list):
        """Energies (M,) and forces (list of (N_m, 3)) of a list, in the model's own batched mode when it has one
        (:attr:`batched`); otherwise as :meth:`energy_forces` of the list.  Inputs are checked first."""
        return self.energy_forces(list(atoms_list))

    def energy_forces(self, atoms):
        """Energy (eV) and forces (N,3, eV/Å) of one structure, or of a list.

        One ``Atoms`` gives ``(float, ndarray)``; a list gives ``(ndarray (M,), list of (N_m,3) arrays)``.
        """
        if isinstance(atoms, Atoms):
            self.check_atoms(atoms)
            return self._energy_forces_one(atoms)
        energies, forces = [], []
        for i, a in enumerate(atoms):
            self.check_atoms(a, index=i)
            e, f = self._energy_forces_one(a)
            energies.append(e)
            forces.append(f)
        return np.asarray(energies, dtype=np.float64), forces

    @abstractmethod
    def hessian_rows(self, atoms: Atoms, rows) -> np.ndarray:
        """Rows of H = d²E/dx² (eV/Å²), shape (len(rows), 3N), coordinates flattened atom-major."""

    def hessian(self, atoms: Atoms) -> np.ndarray:
        """The full (3N, 3N) Hessian."""
        return self.hessian_rows(atoms, np.arange(3 * len(atoms)))

    # ------------------------------------------------------------------ the model under evaluation
    #: :class:`hessdistill.core.model.EvaluatedModel` kind
    kind = "teacher"
    #: ``loader(dtype) -> Teacher``: this same teacher loaded in another dtype, or None when the teacher cannot be
    #: reloaded (set by :func:`hessdistill.teachers.registry.reloadable`; read by :meth:`in_dtype`)
    loader = None

    def calculator(self):
        """This teacher as an ASE calculator (:class:`~hessdistill.teachers.calculator.TeacherCalculator`), the same
        instance on every call."""
        calc = getattr(self, "_calculator", None)
        if calc is None:
            from .calculator import TeacherCalculator

            calc = self._calculator = TeacherCalculator(self)
        return calc

    def predictor(self, batch_size: int = 1):
        """``predict(list of Atoms) -> (energies (M,), list of forces)`` through :meth:`calculator`, one structure at
        a time (``batch_size`` is not used: the calculator evaluates single structures)."""
        from ..core.model import calculator_predictor

        return calculator_predictor(self.calculator())

    def in_dtype(self, dtype: str) -> Teacher:
        """This teacher in ``dtype`` ('float32'/'float64'): itself if it already is, else reloaded by :attr:`loader`;
        itself when there is no loader (callers report the dtype they got)."""
        if dtype_name(self.dtype) == dtype or self.loader is None:
            return self
        return self.loader(dtype)

    def labels(self, atoms: Atoms, rows=None) -> tuple[float, np.ndarray, np.ndarray | None]:
        """Energy, forces and (optionally) Hessian rows of one structure, sharing work where possible."""
        e, f = self.energy_forces(atoms)
        h = None if rows is None else self.hessian_rows(atoms, rows)
        return e, f, h

    # ------------------------------------------------------------------ optional: features for baselines
    #: one line saying which tensor :meth:`node_features` returns (stored with labelled features)
    node_features_description: str | None = None
    #: one line saying what :meth:`element_embeddings` returns
    element_embeddings_description: str | None = None

    def _unsupported(self, what: str) -> TeacherError:
        return TeacherError(
            f"teacher {self.name!r} ({type(self).__name__}) does not provide {what}; only model adapters that expose "
            f"their internals do (chgnet, sevenn, mace-off / mace-mp / mace).\n"
            f"  fix: label without node features (drop --node-features / node_features: true), or use one of those teachers"
        )

    def node_features(self, atoms: Atoms) -> np.ndarray:
        """Last-layer invariant node features of ``atoms``, shape (N, F), float64 (for n2n distillation).

        Optional: teachers that cannot expose them raise :class:`~hessdistill.core.errors.TeacherError`.
        """
        raise self._unsupported("node features")

    def element_embeddings(self) -> tuple[np.ndarray, np.ndarray]:
        """The per-element embedding table ``(numbers (E,), table (E, F))`` (for a2a distillation).

        Optional: teachers without one raise :class:`~hessdistill.core.errors.TeacherError`.
        """
        raise self._unsupported("an element embedding table")

    @property
    def n_params(self) -> int | None:
        """Parameters of the underlying torch model (``self.model``), None for non-torch teachers."""
        model = getattr(self, "model", None)
        if isinstance(model, torch.nn.Module):
            return int(sum(p.numel() for p in model.parameters()))
        return None

    @property
    def supports_node_features(self) -> bool:
        return type(self).node_features is not Teacher.node_features

    @property
    def feature_dim(self) -> int | None:
        """F, the width of :meth:`node_features`; None when the teacher has no node features.

        Adapters set ``_feature_dim``; otherwise it is measured once on one isolated atom of the lowest
        supported element.
        """
        if not self.supports_node_features:
            return None
        dim = getattr(self, "_feature_dim", None)
        if dim is None:
            z = min(self.supported_numbers) if self.supported_numbers else 1
            probe = Atoms(numbers=[z], positions=[[0.0, 0.0, 0.0]], pbc=False)
            dim = int(np.asarray(self.node_features(probe)).shape[-1])
            self._feature_dim = dim
        return int(dim)

    def labels_with_features(self, atoms: Atoms, rows=None):
        """:meth:`labels` plus :meth:`node_features`: ``(energy, forces, rows or None, features (N, F))``."""
        if not self.supports_node_features:
            raise self._unsupported("node features")
        e, f, h = self.labels(atoms, rows=rows)
        return e, f, h, np.asarray(self.node_features(atoms), dtype=np.float64)

    def metadata(self) -> dict:
        """Provenance recorded in every store the teacher writes."""
        return {
            "teacher": self.name,
            "teacher_version": self.version,
            "teacher_dtype": dtype_name(self.dtype),
            "conservative": bool(self.conservative),
            "hessian_method": self.hessian_method,
        }

    def __repr__(self):
        return f"<{type(self).__name__} {self.name} v{self.version} {dtype_name(self.dtype)} on {self.device}>"


class AutogradTeacher(Teacher):
    """A teacher whose forces are differentiable with respect to a positions leaf.

    Subclasses implement :meth:`forward`, which must build the model's graph from a positions tensor that
    requires grad, so Hessian rows follow from VJPs of the forces (see :mod:`hessdistill.core.hessian`).
    """

    #: VJP route, see hessian.force_jacobian_rows; "auto" measures loop vs batched once per device
    vjp_method: str = "auto"
    vjp_chunk_size: int = 32

    @abstractmethod
    def forward(self, atoms: Atoms, *, create_graph: bool) -> ForwardResult:
        """Evaluate ``atoms``; with ``create_graph`` the forces must be differentiable w.r.t. positions."""

    def _energy_forces_one(self, atoms):
        res = self.forward(atoms, create_graph=False)
        return float(res.energy.detach()), res.forces.detach().to(torch.float64).cpu().numpy().reshape(-1, 3)

    def hessian_rows(self, atoms, rows) -> np.ndarray:
        self.check_atoms(atoms)
        res = self.forward(atoms, create_graph=True)
        return self._rows_from(res, rows)

    def _rows_from(self, res: ForwardResult, rows) -> np.ndarray:
        h = hess.hessian_rows(
            res.forces, res.positions, rows, method=self.vjp_method, chunk_size=self.vjp_chunk_size, key=self.name
        )
        return h.detach().to(torch.float64).cpu().numpy()

    #: True when :meth:`forward` accepts ``with_features=True`` and then fills ``ForwardResult.node_features``
    forward_captures_features: bool = False

    def labels_with_features(self, atoms, rows=None):
        """Energy, forces, Hessian rows (or None) and node features (N, F), from one forward pass when the
        adapter can capture the features on the way (``forward_captures_features``), else from two."""
        if not self.forward_captures_features:
            return super().labels_with_features(atoms, rows=rows)
        self.check_atoms(atoms)
        res = self.forward(atoms, create_graph=rows is not None, with_features=True)
        e = float(res.energy.detach())
        f = res.forces.detach().to(torch.float64).cpu().numpy().reshape(-1, 3)
        feats = res.node_features.detach().to(torch.float64).cpu().numpy()
        h = None if rows is None else self._rows_from(res, rows)
        return e, f, h, feats

    def labels(self, atoms, rows=None):
        """One forward pass serves energy, forces and the Hessian rows."""
        self.check_atoms(atoms)
        if rows is None:
            e, f = self._energy_forces_one(atoms)
            return e, f, None
        res = self.forward(atoms, create_graph=True)
        e = float(res.energy.detach())
        f = res.forces.detach().to(torch.float64).cpu().numpy().reshape(-1, 3)
        return e, f, self._rows_from(res, rows)
