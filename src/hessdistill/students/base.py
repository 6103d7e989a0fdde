"""The common student interface.

A student maps a batch (see :mod:`hessdistill.core.graphs`) to per-structure energies (eV) and per-atom
forces (eV/Å).  Architectures implement :meth:`Student.atomwise`, which returns per-atom energy
contributions (in units of ``energy_scale``), the final invariant node features (for n2n feature
distillation) and, for direct-force heads, per-atom force vectors.  :meth:`Student.forward` adds the
per-element reference energies (fitted by least squares on the training split and stored in the model's
buffers, hence in every checkpoint) and, for conservative students, takes forces = -dE/dx by autograd.

``create_graph=True`` keeps the force graph differentiable, as the Hessian loss needs (rows of dF/dx by
vector-Jacobian products, double backprop).  Direct-force students keep the positions in the graph too, so
the Jacobian of their force head can be distilled.

Host-device synchronisation.  The forward of a batch prepared for the student (``atoms_to_data(...,
student=model)``: the atomic numbers were checked by :meth:`Student.check_numbers` and the topology extras of
:meth:`Student.graph_extras` attached, once per structure on the CPU) uses only device tensor ops with shapes
known on the host: no ``.item()``, no data-dependent shapes.  Other batches are checked (and their extras
computed) in the forward, with the synchronisations that needs.
"""

from __future__ import annotations

import hashlib
import json
from abc import abstractmethod
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..core.structures import MAX_Z

#: rows of per-element tables (embeddings, element energies), indexed by the atomic number: 0 unused, 1..MAX_Z
ELEMENT_SLOTS = MAX_Z + 1


def element_names(numbers) -> str:
    """'Na (Z=11), Cl (Z=17)' for the distinct atomic numbers in ``numbers``."""
    from ase.data import chemical_symbols

    zs = sorted({int(z) for z in numbers})
    return ", ".join(f"{chemical_symbols[z] if 0 <= z < len(chemical_symbols) else '?'} (Z={z})" for z in zs)


def host_numbers(numbers) -> np.ndarray:
    """Atomic numbers (array-like or tensor on any device) as a host int64 array."""
    if isinstance(numbers, torch.Tensor):
        numbers = numbers.detach().cpu()
    return np.asarray(numbers, dtype=np.int64).reshape(-1)


@dataclass
class AtomwiseOutput:
    energy: torch.Tensor  # (ΣN,) per-atom energy contributions, before scale and element references
    features: torch.Tensor  # (ΣN, F) final invariant node features
    forces: torch.Tensor | None = None  # (ΣN, 3) direct-force head output, None for conservative students


class Student(nn.Module):
    """Base class of all students. Subclasses set ``arch`` and implement :meth:`atomwise`."""

    arch = "student"

    def __init__(self, *, cutoff: float, direct_forces: bool = False):
        super().__init__()
        self.cutoff = float(cutoff)
        self.direct_forces = bool(direct_forces)
        self.register_buffer("element_energy", torch.zeros(ELEMENT_SLOTS, dtype=torch.float64))
        self.register_buffer("energy_scale", torch.tensor(1.0, dtype=torch.float64))
        self.hparams: dict = {}

    @property
    def conservative(self) -> bool:
        return not self.direct_forces

    @property
    def n_params(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    @abstractmethod
    def atomwise(self, batch) -> AtomwiseOutput: ...

    # ------------------------------------------------------------------ data preparation (host side)
    def check_numbers(self, numbers) -> None:
        """Raise :class:`HessdistillError` naming any element of ``numbers`` this student cannot embed.

        Runs on the host: once per structure where the data is built, or per forward for unprepared batches.
        """

    def graph_extras(self, data) -> dict:
        """Topology-only quantities of one structure (``data`` from ``atoms_to_data``, on the CPU) for the forward.

        ``{key: (tensor, offset)}``: concatenated along dim 0 when structures are batched, ``offset`` (the
        structure's count of what the tensor indexes, 0 for none) added once per preceding structure; or
        ``{key: int}``: a size, of which the batch carries the maximum as a Python int.  None by default.
        """
        return {}

    def data_config(self) -> dict:
        """The hyper-parameters that :meth:`check_numbers` and :meth:`graph_extras` depend on."""
        init = self.hparams.get("embedding_init")
        return {
            "arch": self.arch,
            "num_elements": self.hparams.get("num_elements"),
            "elements": None if init is None else init["numbers"],
        }

    @property
    def data_tag(self) -> str:
        """Identifies :meth:`data_config` in the graphs prepared for this student (their ``prepared_for``)."""
        digest = hashlib.sha256(json.dumps(self.data_config(), sort_keys=True).encode()).hexdigest()
        return f"{self.arch}:{digest[:16]}"

    def prepared(self, batch) -> bool:
        """Whether every structure of ``batch`` was prepared for this student (host-side metadata only)."""
        tags = getattr(batch, "prepared_for", None)
        if tags is None:
            return False
        tags = [tags] if isinstance(tags, str) else tags
        tag = self.data_tag
        return len(tags) > 0 and all(t == tag for t in tags)

    def check_batch(self, batch) -> bool:
        """Check the atomic numbers of an unprepared batch (a host sync); returns :meth:`prepared`."""
        ready = self.prepared(batch)
        if not ready:
            self.check_numbers(batch.z)
        return ready

    @property
    def feature_dim(self) -> int:
        raise NotImplementedError

    def forward(self, batch, *, create_graph: bool | None = None, return_features: bool = False):
        """Energies (M,) and forces (ΣN, 3); with ``return_features`` also the node features (ΣN, F)."""
        if create_graph is None:
            create_graph = self.training
        if not batch.pos.requires_grad and (self.conservative or create_graph):
            batch.pos.requires_grad_(True)
        self.check_batch(batch)
        out = self.atomwise(batch)
        dtype = out.energy.dtype
        e_atom = out.energy * self.energy_scale.to(dtype) + self.element_energy.to(dtype)[batch.z]
        n_struct = batch.natoms.shape[0]
        energy = torch.zeros(n_struct, dtype=dtype, device=e_atom.device).index_add(0, batch.batch, e_atom)
        if self.conservative:
            (grad,) = torch.autograd.grad(energy.sum(), batch.pos, create_graph=create_graph)
            forces = -grad
        else:
            forces = out.forces * self.energy_scale.to(dtype)
        if return_features:
            return energy, forces, out.features
        return energy, forces

    # ------------------------------------------------------------------ normalisation
    @torch.no_grad()
    def fit_element_energies(self, numbers_per_structure, energies, *, ridge: float = 1e-8) -> np.ndarray:
        """Least-squares per-element reference energies E_m ≈ Σ_Z n_mZ e_Z on the training split.

        ``numbers_per_structure``: list of atomic-number arrays; ``energies``: (M,) eV.  Elements absent
        from the training data keep 0.  Returns the fitted table (ELEMENT_SLOTS,).  A tiny ridge keeps the fit
        defined when compositions are collinear (e.g. only ABO3 stoichiometries).
        """
        zs = sorted({int(z) for nums in numbers_per_structure for z in nums})
        counts = np.zeros((len(numbers_per_structure), len(zs)))
        col = {z: k for k, z in enumerate(zs)}
        for m, nums in enumerate(numbers_per_structure):
            for z in nums:
                counts[m, col[int(z)]] += 1
        e = np.asarray(energies, dtype=np.float64)
        a = counts.T @ counts + ridge * np.eye(len(zs)) * max(1.0, np.trace(counts.T @ counts) / max(len(zs), 1))
        coef = np.linalg.solve(a, counts.T @ e)
        table = np.zeros(ELEMENT_SLOTS)
        table[zs] = coef
        self.element_energy.copy_(torch.as_tensor(table, dtype=self.element_energy.dtype))
        return table

    @torch.no_grad()
    def set_energy_scale(self, value: float) -> None:
        self.energy_scale.fill_(float(value))

    def prepare_for_training(self, batch) -> None:
        """Fit what this student derives from training data, beyond the element energies and the energy scale.

        Called once by the training loop before the first step (not on resumption, whose checkpoint holds the
        result), under ``torch.no_grad()``, with the model on its training device and dtype and ``batch`` a
        plain batch of the first training structures.  Nothing by default.
        """

    def config(self) -> dict:
        """Everything needed to rebuild this student (with :func:`hessdistill.students.build_student`)."""
        return {"arch": self.arch, **self.hparams}
