"""CHGNet (pretrained weights shipped inside the ``chgnet`` wheel) as an autograd teacher.

How the positions become a leaf of CHGNet's graph
-------------------------------------------------
CHGNet's own pipeline (``CHGNetCalculator``) converts a pymatgen ``Structure`` into a ``CrystalGraph`` whose
``atom_frac_coord`` is a fresh leaf tensor; ``BatchedGraph.from_graphs`` then forms Cartesian coordinates as
``atom_frac_coord @ lattice`` and differentiates the energy with respect to those (non-leaf) coordinates.
Here we build the ``CrystalGraph`` with CHGNet's own converter (same neighbour list, same images) and then
replace its fractional coordinates by ``(positions + offset) @ inv(lattice)``, where ``positions`` is *our*
(N,3) Cartesian leaf.  CHGNet multiplies back by the lattice, so the model sees the same Cartesian
coordinates (up to one rounding of the matrix product) and every derivative flows to ``positions``.  Nothing
in the ``chgnet`` package is patched; the only change is to the teacher's private model instance, whose
composition (AtomRef) head is swapped for an equivalent module that evaluates in the model's dtype (CHGNet's
own AtomRef casts to float32, which breaks a float64 model).  The energy is then differentiated by us:
``F = -dE/dx`` with ``create_graph`` as requested, so forces are differentiable for Hessian rows.

Units: CHGNet's pretrained models are intensive (eV/atom); the teacher returns the total energy in eV
(per-atom energy times N) and forces in eV/Å, as ``CHGNetCalculator`` does.

Molecules
---------
CHGNet always works with a periodic lattice.  A structure with ``pbc = (False, False, False)`` is put, centred,
in a cubic box of edge ``L = extent + atom_graph_cutoff + box_padding``, where ``extent`` is the largest
Cartesian span of the molecule (max over x, y, z of max - min) and ``atom_graph_cutoff`` is the model's atom
graph cutoff (6 Å for the shipped weights; the bond/angle graph uses 3 Å and is built from atom-graph
edges).  Then every periodic image of every atom is at least ``L - extent > cutoff`` away from every atom of
the original molecule, so no image enters the graph and the result equals that of the isolated molecule and
does not depend on ``L`` (checked in the tests).  ``box_padding`` (default 2 Å) only keeps edge cases safe
from rounding at the cutoff.  Mixed periodicity (slabs, wires) is rejected with a clear error.

Features for distillation baselines
-----------------------------------
:meth:`CHGNetTeacher.node_features` returns, per atom, the output of CHGNet's ``readout_norm`` (a LayerNorm)
applied to the atom features after the *last* ``AtomConv`` layer (``model.atom_conv_layers[-1]``): exactly the
(N, ``atom_fea_dim``) tensor the readout MLP acts on (``mlp_first=True`` for the shipped weights, so the energy
is ``sum_i mlp(x_i)``, and CHGNet's ``return_crystal_feas`` is the sum of these rows).  F = 64 for all shipped
weights.  Note that CHGNet's own ``return_atom_feas`` is *not* this tensor: it returns the features after the
second-to-last conv layer (the input of the magnetic-moment head).  The features are read with a forward
hook on ``readout_norm`` (or on the last conv layer when a model has no readout norm), so one pass yields
energy, forces, Hessian rows and features.  They are invariant (built from distances and angles only).

:meth:`CHGNetTeacher.element_embeddings` returns ``model.atom_embedding.embedding.weight`` (an ``nn.Embedding``
with row Z-1 for atomic number Z), one row per supported element Z = 1..94, F = 64: the atom features CHGNet
starts message passing from.
"""

from __future__ import annotations

import contextlib
import io
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _pkg_version

import numpy as np
import torch
from ase import Atoms

# an ImportError here is turned by the registry into a TeacherError that says which extra to install
from chgnet.model import CHGNet
from chgnet.model.composition_model import AtomRef
from pymatgen.core import Lattice, Structure

from ..core.errors import StructureError, TeacherError
from .base import AutogradTeacher, ForwardResult

#: pretrained weights shipped in the chgnet 0.4.x wheel (see ``CHGNet.load``)
KNOWN_MODELS = ("0.3.0", "0.2.0", "r2scan")
DEFAULT_MODEL = "0.3.0"


def _chgnet_version() -> str:
    try:
        return _pkg_version("chgnet")
    except PackageNotFoundError:  # pragma: no cover
        import chgnet

        return str(getattr(chgnet, "__version__", "unknown"))


class _CompositionEnergy(torch.nn.Module):
    """CHGNet's AtomRef head (a linear fit of the energy on the composition) evaluated in the model's dtype.

    ``AtomRef`` casts its composition features to float32 before its linear layer, which fails once the model
    is cast to float64.  This module holds the *same* linear layer (so the state dict keys are unchanged) and
    computes the same quantity, ``fc(counts / N)`` for intensive models or ``fc(counts)`` otherwise, in the
    layer's own dtype.  The composition energy does not depend on positions, so forces are unaffected.
    """

    def __init__(self, atomref: AtomRef):
        super().__init__()
        self.fc = atomref.fc
        self.is_intensive = bool(atomref.is_intensive)
        self.max_num_elements = int(atomref.max_num_elements)

    def forward(self, graphs) -> torch.Tensor:
        dtype = self.fc.weight.dtype
        feats = []
        for g in graphs:
            z = g.atomic_number.to(torch.long)
            counts = torch.bincount(z - 1, minlength=self.max_num_elements).to(dtype)
            if self.is_intensive:
                counts = counts / z.shape[0]
            feats.append(counts)
        return self.fc(torch.stack(feats, dim=0)).view(-1)


class CHGNetTeacher(AutogradTeacher):
    """CHGNet pretrained model ``model`` ("0.3.0" by default, also "0.2.0" and "r2scan") as a teacher.

    Options: ``box_padding`` (Å, extra edge of the box molecules are put in, default 2.0),
    ``on_isolated_atoms`` ("ignore" | "warn" | "error", CHGNet's response to atoms with no neighbour within
    the cutoff; default "warn").
    """

    conservative = True
    hessian_method = "autograd"

    def __init__(
        self, model=None, device=None, dtype="float64", *, box_padding: float = 2.0, on_isolated_atoms: str = "warn"
    ):
        super().__init__(device=device, dtype=dtype)
        model_name = DEFAULT_MODEL if model in (None, "") else str(model)
        key = model_name.lower()
        if key not in KNOWN_MODELS:
            raise TeacherError(
                f"unknown CHGNet model version {model_name!r}; the chgnet wheel ships {', '.join(KNOWN_MODELS)}\n"
                f"  fix: name the teacher 'chgnet' (= chgnet:{DEFAULT_MODEL}) or one of "
                + ", ".join(f"'chgnet:{m}'" for m in KNOWN_MODELS)
            )
        if on_isolated_atoms not in ("ignore", "warn", "error"):
            raise TeacherError(
                f"chgnet: on_isolated_atoms must be 'ignore', 'warn' or 'error', got {on_isolated_atoms!r}"
            )
        try:
            padding = float(box_padding)
        except (TypeError, ValueError):
            padding = float("nan")
        if not padding >= 0.0:
            raise TeacherError(f"chgnet: box_padding must be a non-negative length in Å, got {box_padding!r}")
        self.box_padding = padding
        try:
            # CHGNet prints its parameter count on construction; keep library output out of our logs
            with contextlib.redirect_stdout(io.StringIO()):
                net = CHGNet.load(model_name=key, use_device="cpu", verbose=False)
        except (ValueError, FileNotFoundError, OSError, RuntimeError) as exc:
            raise TeacherError(
                f"cannot load CHGNet weights {model_name!r} from the installed chgnet {_chgnet_version()} ({exc})\n"
                f"  fix: reinstall chgnet (pip install -c constraints.txt chgnet) or choose one of {', '.join(KNOWN_MODELS)}"
            ) from exc
        if isinstance(net.composition_model, AtomRef):
            net.composition_model = _CompositionEnergy(net.composition_model)
        net.graph_converter.set_isolated_atom_response(on_isolated_atoms)
        net.eval()
        for p in net.parameters():
            p.requires_grad_(False)
        self.model = net.to(device=self.device, dtype=self.dtype)
        # CHGNet has TorchScript parts; PyTorch's profiling JIT executor re-optimises them during the first
        # calls of every process (~30 s on 2 CPU cores, measured), first and second order alike.  The legacy
        # executor is as fast from the first call.  This is a process-wide switch (documented in the README).
        torch._C._jit_set_profiling_executor(False)
        self.model_name = key
        self.name = f"chgnet:{key}"
        self.version = f"chgnet-{_chgnet_version()}/weights-{key}"
        self.atom_graph_cutoff = float(self.model.graph_converter.atom_graph_cutoff)
        self.bond_graph_cutoff = float(self.model.graph_converter.bond_graph_cutoff)
        n_el = int(self.model.atom_embedding.embedding.num_embeddings)
        comp = self.model.composition_model
        if comp is not None and hasattr(comp, "max_num_elements"):
            n_el = min(n_el, int(comp.max_num_elements))
        # CHGNet embeds atomic number Z in row Z-1 of a 94-row table: H (1) .. Pu (94)
        self.supported_numbers = frozenset(range(1, n_el + 1))
        self._feature_dim = int(self.model.atom_embedding.embedding.embedding_dim)

    # ------------------------------------------------------------------ geometry
    def box_for(self, atoms: Atoms) -> tuple[np.ndarray, np.ndarray]:
        """The lattice CHGNet sees for ``atoms`` and the offset added to the positions, both in Å.

        Periodic structures keep their cell (offset 0); molecules get a cubic box (see the module docstring).
        """
        pbc = np.asarray(atoms.pbc, dtype=bool)
        pos = atoms.get_positions()
        if pbc.all():
            cell = np.asarray(atoms.cell.array, dtype=np.float64)
            if abs(np.linalg.det(cell)) < 1e-6:
                raise StructureError(
                    "periodic structure with a degenerate (zero-volume) cell",
                    fix="set a proper cell, or set pbc=False for a molecule",
                )
            return cell, np.zeros(3)
        if pbc.any():
            raise StructureError(
                f"the CHGNet teacher handles fully periodic or fully non-periodic structures, got pbc={pbc.tolist()}",
                fix="make the structure fully periodic (add vacuum to the cell yourself) or fully non-periodic",
            )
        lo, hi = pos.min(axis=0), pos.max(axis=0)
        extent = float((hi - lo).max())
        edge = extent + self.atom_graph_cutoff + self.box_padding
        offset = 0.5 * edge - 0.5 * (lo + hi)  # centre the molecule in the box
        return np.eye(3) * edge, offset

    # ------------------------------------------------------------------ model
    forward_captures_features = True
    node_features_description = (
        "CHGNet per-atom features after the last AtomConv layer and readout_norm (LayerNorm), i.e. the input of "
        "the readout MLP; float32 copy of the teacher-dtype values"
    )
    element_embeddings_description = "CHGNet model.atom_embedding.embedding.weight rows Z-1 (initial atom features)"

    def _feature_module(self) -> torch.nn.Module:
        """The module whose output is the per-atom input of CHGNet's readout (see the module docstring)."""
        norm = getattr(self.model, "readout_norm", None)
        return norm if norm is not None else self.model.atom_conv_layers[-1]

    def forward(self, atoms: Atoms, *, create_graph: bool, with_features: bool = False) -> ForwardResult:
        graph, pos = self._graph(atoms, requires_grad=True)
        captured = []
        handle = (
            self._feature_module().register_forward_hook(lambda m, i, o: captured.append(o)) if with_features else None
        )
        try:
            with torch.enable_grad():
                pred = self.model([graph], task="e")
                energy = pred["e"].reshape(-1)[0]
                if self.model.is_intensive:
                    energy = energy * len(atoms)
                (grad,) = torch.autograd.grad(energy, pos, create_graph=create_graph)
        finally:
            if handle is not None:
                handle.remove()
        feats = self._captured(captured, len(atoms)) if with_features else None
        return ForwardResult(positions=pos, energy=energy, forces=-grad, node_features=feats)

    batched = True

    def energy_forces_batched(self, atoms_list):
        """All structures through CHGNet in one call (its batched graph), forces from one backward pass."""
        atoms_list = list(atoms_list)
        for i, a in enumerate(atoms_list):
            self.check_atoms(a, index=i)
        graphs, positions = zip(*[self._graph(a, requires_grad=True) for a in atoms_list])
        with torch.enable_grad():
            energy = self.model(list(graphs), task="e")["e"].reshape(-1)
            if self.model.is_intensive:
                energy = energy * torch.tensor([len(a) for a in atoms_list], dtype=energy.dtype, device=energy.device)
            grads = torch.autograd.grad(energy.sum(), list(positions))
        return (
            energy.detach().to(torch.float64).cpu().numpy(),
            [-g.detach().to(torch.float64).cpu().numpy() for g in grads],
        )

    def _captured(self, captured, n_atoms) -> torch.Tensor:
        if len(captured) != 1 or captured[0].shape[0] != n_atoms:
            raise TeacherError(
                f"teacher {self.name!r}: expected one ({n_atoms}, F) feature tensor from the CHGNet readout, got "
                f"{[tuple(c.shape) for c in captured]}; the CHGNet adapter must be updated for chgnet {_chgnet_version()}"
            )
        return captured[0]

    def node_features(self, atoms: Atoms) -> np.ndarray:
        """Per-atom input of CHGNet's readout MLP (after the last AtomConv and ``readout_norm``), (N, 64), float64."""
        self.check_atoms(atoms)
        graph, _ = self._graph(atoms, requires_grad=False)
        captured = []
        handle = self._feature_module().register_forward_hook(lambda m, i, o: captured.append(o))
        try:
            with torch.no_grad():
                self.model([graph], task="e")
        finally:
            handle.remove()
        return self._captured(captured, len(atoms)).detach().to(torch.float64).cpu().numpy()

    def element_embeddings(self) -> tuple[np.ndarray, np.ndarray]:
        """``(numbers (94,), table (94, 64))``: CHGNet's atom embedding rows for Z = 1..94, float64."""
        numbers = np.asarray(sorted(self.supported_numbers), dtype=np.int64)
        idx = torch.as_tensor(numbers - 1, dtype=torch.long, device=self.device)
        with torch.no_grad():
            table = self.model.atom_embedding(idx)
        return numbers, table.detach().to(torch.float64).cpu().numpy()

    def _graph(self, atoms: Atoms, *, requires_grad: bool):
        """CHGNet's CrystalGraph of ``atoms`` with coordinates tied to a new (N,3) positions tensor."""
        lattice, offset = self.box_for(atoms)
        pos_np = atoms.get_positions()
        structure = Structure(
            Lattice(lattice), [int(z) for z in atoms.numbers], pos_np + offset, coords_are_cartesian=True
        )
        graph = self.model.graph_converter(structure).to(self.device)

        pos = torch.tensor(pos_np, dtype=self.dtype, device=self.device, requires_grad=requires_grad)
        lat = torch.tensor(lattice, dtype=self.dtype, device=self.device)
        shift = torch.tensor(offset, dtype=self.dtype, device=self.device)
        # CHGNet forms Cartesian coordinates as frac @ lattice; feeding frac = (pos + offset) @ inv(lattice)
        # makes those coordinates (pos + offset) and the positions leaf part of the graph.
        with torch.set_grad_enabled(requires_grad):
            graph.atom_frac_coord = (pos + shift) @ torch.linalg.inv(lat)
        graph.lattice = lat
        graph.neighbor_image = graph.neighbor_image.to(self.dtype)
        return graph, pos
