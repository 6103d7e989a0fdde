"""SevenNet (checkpoints shipped inside the ``sevenn`` wheel, SevenNet-0 by default) as an autograd teacher.

How the positions become a leaf of SevenNet's graph
---------------------------------------------------
``SevenNetCalculator`` builds the neighbour list in numpy and hands the model precomputed edge vectors, so
positions are not part of the autograd graph; the model's force module differentiates the energy with respect
to ``edge_vec`` and scatters the edge gradients onto atoms.  Here we build the same neighbour list with
sevenn's own ``unlabeled_atoms_to_graph(atoms, cutoff, with_shift=True)``, create the (N,3) positions leaf and
recompute the edge vectors from it with the convention of sevenn's ASE neighbour list (and of its own
``EdgePreprocess`` module)::

    edge_vec[e] = pos[dst[e]] - pos[src[e]] + shift[e] @ cell        (src, dst) = edge_index

The recomputed vectors are checked against the numpy ones on every call, so a change of convention in a
future sevenn fails loudly instead of silently.  The model's force module (``ForceStressOutputFromEdge``)
then yields ``F = scatter(dE/d edge_vec)``, which carries a graph back to the positions leaf when the module
runs with ``create_graph`` -- it uses ``create_graph=self.training``.  We therefore set ``training`` on that one
module only, for the duration of a call that needs a differentiable force, under a lock.  Every other module
stays in eval mode; the shipped models contain no dropout or batch-norm layers anyway (checked: the only
``self.training`` reads in sevenn's layers are in the force modules).

Molecules (``pbc`` all False) and crystals go through the same path; sevenn's neighbour list handles both.

Multi-fidelity checkpoints (``7net-mf-0``) need ``modal=...`` (e.g. "PBE" or "R2SCAN"), as the calculator does.

Features for distillation baselines
-----------------------------------
:meth:`SevenNetTeacher.node_features` returns the node features ``data["x"]`` as they enter the readout, i.e. the
input of the module ``reduce_input_to_hidden`` (the first readout linear), which is the output of the last
interaction block (``<L-1>_equivariant_gate``), restricted to its l=0 even-parity (``0e``) channels.  In SevenNet
the last block is scalar-only, so for 7net-0 this is the whole ``128x0e`` tensor, F = 128.  The tensor is read
with a forward pre-hook on that module (before a multi-fidelity model appends its modality one-hot), so one
pass yields energy, forces, Hessian rows and features.

:meth:`SevenNetTeacher.element_embeddings` returns the element embedding: the linear layer
``onehot_to_feature_x`` (one-hot over the model's ``type_map`` -> ``128x0e`` for 7net-0) applied to each
element's one-hot vector (for multi-fidelity models, with the chosen modality's one-hot appended, as the model
does), one row per supported element in the model's one-hot order, F = 128 for 7net-0.  These are the node
features the first interaction block starts from.
"""

from __future__ import annotations

import os
import threading
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _pkg_version

import numpy as np

# an ImportError here is turned by the registry into a TeacherError that says which extra to install
import sevenn._const as _const
import sevenn._keys as KEY
import torch
from ase import Atoms
from ase.data import atomic_numbers as _atomic_numbers
from sevenn.atom_graph_data import AtomGraphData
from sevenn.checkpoint import SevenNetCheckpoint
from sevenn.nn.node_embedding import OnehotEmbedding
from sevenn.train.dataload import unlabeled_atoms_to_graph

from ..core.errors import TeacherError
from .base import AutogradTeacher, ForwardResult

DEFAULT_MODEL = "7net-0"

#: pretrained names (lower case, "sevennet" may stand for "7net") -> checkpoint constant in sevenn._const.
#: Only some of these are inside the wheel; the others are downloads, which this adapter never attempts.
_PRETRAINED = {
    "7net-0": "SEVENNET_0_11Jul2024",
    "7net-0_11jul2024": "SEVENNET_0_11Jul2024",
    "7net-0_11july2024": "SEVENNET_0_11Jul2024",
    "7net-0_22may2024": "SEVENNET_0_22May2024",
    "7net-l3i5": "SEVENNET_l3i5",
    "7net-mf-0": "SEVENNET_MF_0",
    "7net-mf-ompa": "SEVENNET_MF_ompa",
    "7net-omat": "SEVENNET_omat",
    "7net-omni": "SEVENNET_omni",
    "7net-omni-i8": "SEVENNET_omni_i8",
    "7net-omni-i12": "SEVENNET_omni_i12",
}

#: tolerance (Å) of the check that our edge vectors equal sevenn's numpy ones
_EDGE_CHECK_TOL = 1e-6

#: module names in sevenn's model builder: the first readout linear and the element embedding linear
_READOUT = "reduce_input_to_hidden"
_EMBEDDING = "onehot_to_feature_x"


def _scalar_columns(irreps) -> list[int]:
    """Column indices of the l=0, even-parity (0e) channels of an e3nn irreps layout."""
    from e3nn import o3

    irreps = o3.Irreps(str(irreps))
    cols = []
    for (_mul, ir), sl in zip(irreps, irreps.slices()):
        if ir.l == 0 and ir.p == 1:
            cols.extend(range(sl.start, sl.stop))
    return cols


class _OutputsInDtype(torch.nn.Module):
    """Runs a SevenNet module and casts the floating-point fields it writes to ``dtype``.

    SevenNet's ``OnehotEmbedding`` ends in ``.float()``, so a model cast to float64 would receive float32
    one-hot features.  One-hot values are exact in any dtype, so casting them changes nothing else.
    """

    def __init__(self, module: torch.nn.Module, keys, dtype: torch.dtype):
        super().__init__()
        self.inner = module
        self.keys = tuple(k for k in keys if k is not None)
        self.dtype = dtype

    def forward(self, data):
        data = self.inner(data)
        for k in self.keys:
            v = data[k] if k in data else None
            if isinstance(v, torch.Tensor) and v.is_floating_point() and v.dtype != self.dtype:
                data[k] = v.to(self.dtype)
        return data


def _sevenn_version() -> str:
    try:
        return _pkg_version("sevenn")
    except PackageNotFoundError:  # pragma: no cover
        import sevenn

        return str(getattr(sevenn, "__version__", "unknown"))


def _canonical(name: str) -> str:
    key = name.strip().lower()
    if key.startswith("sevennet"):
        key = "7net" + key[len("sevennet") :]
    return key


def _local_path(const_name: str) -> str | None:
    """The checkpoint file for a pretrained constant, if it is on disk (in the wheel or in ~/.cache/sevennet)."""
    path = getattr(_const, const_name, None)
    if path is None:
        return None
    candidates = [path]
    prefix = getattr(_const, "_prefix", None)
    if prefix:
        candidates.append(path.replace(prefix, os.path.expanduser("~/.cache/sevennet")))
    for p in candidates:
        if os.path.isfile(p):
            return p
    return None


def available_models() -> list[str]:
    """Pretrained SevenNet names whose checkpoints are on this machine (no download needed)."""
    seen, out = set(), []
    for name, const_name in _PRETRAINED.items():
        path = _local_path(const_name)
        if path is not None and path not in seen:
            seen.add(path)
            out.append(name)
    return out


def resolve_checkpoint(model: str) -> tuple[str, str]:
    """(checkpoint path, display name) for a pretrained name or a checkpoint file; never downloads."""
    if os.path.isfile(model):
        return os.path.abspath(model), os.path.basename(model)
    key = _canonical(model)
    const_name = _PRETRAINED.get(key)
    if const_name is None or getattr(_const, const_name, None) is None:
        raise TeacherError(
            f"unknown SevenNet model {model!r} (not a pretrained name known to sevenn {_sevenn_version()}, and not a file)\n"
            f"  fix: use one of the checkpoints shipped here: {', '.join(available_models()) or 'none'}, "
            f"or give the path of a SevenNet checkpoint file"
        )
    path = _local_path(const_name)
    if path is None:
        url = getattr(_const, "CHECKPOINT_DOWNLOAD_LINKS", {}).get(getattr(_const, const_name))
        raise TeacherError(
            f"the SevenNet checkpoint {model!r} is not shipped in the sevenn {_sevenn_version()} wheel and is not on "
            f"this machine (looked for {getattr(_const, const_name)} and ~/.cache/sevennet)\n"
            f"  fix: download it where there is internet ({url or 'see the SevenNet releases'}) and pass the file path "
            f"as the model, or use one of the shipped checkpoints: {', '.join(available_models())}"
        )
    return path, key


class SevenNetTeacher(AutogradTeacher):
    """SevenNet checkpoint ``model`` (default "7net-0") as a teacher; ``modal`` for multi-fidelity models."""

    conservative = True
    hessian_method = "autograd"

    def __init__(self, model=None, device=None, dtype="float64", *, modal: str | None = None):
        super().__init__(device=device, dtype=dtype)
        requested = DEFAULT_MODEL if model in (None, "") else str(model)
        path, display = resolve_checkpoint(requested)
        try:
            cp = SevenNetCheckpoint(path)
            config = cp.config
            net = cp.build_model()
        except Exception as exc:  # a corrupt or foreign file: torch / sevenn raise many different types
            raise TeacherError(
                f"cannot build SevenNet model {requested!r} from {path} ({exc.__class__.__name__}: {exc})\n"
                f"  fix: check that the file is a SevenNet checkpoint readable by sevenn {_sevenn_version()}"
            ) from exc
        if not hasattr(net, "_modules") or "force_output" not in net._modules:
            raise TeacherError(f"SevenNet model {requested!r} has no force module; cannot compute forces")
        net.set_is_batch_data(False)
        net.eval()
        for p in net.parameters():
            p.requires_grad_(False)

        modal_map = getattr(net, "modal_map", None) or {}
        if modal_map:
            if modal is None:
                raise TeacherError(
                    f"SevenNet model {requested!r} is multi-fidelity; say which fidelity with the option "
                    f"modal=... (one of {', '.join(modal_map)})"
                )
            if modal not in modal_map:
                raise TeacherError(
                    f"SevenNet model {requested!r}: unknown modal {modal!r}; choose one of {', '.join(modal_map)}"
                )
        elif modal is not None:
            raise TeacherError(f"SevenNet model {requested!r} is not multi-fidelity; remove the option modal={modal!r}")
        self.modal = modal

        self.model = net.to(device=self.device, dtype=self.dtype)
        for key, module in list(self.model._modules.items()):
            if isinstance(module, OnehotEmbedding):
                keys = (module.key_output, module.key_additional_output)
                self.model._modules[key] = _OutputsInDtype(module, keys, self.dtype)
        self.model.eval()
        self._force_module = self.model._modules["force_output"]
        self._lock = threading.Lock()
        self.cutoff = float(config[KEY.CUTOFF])
        type_map = config.get(KEY.TYPE_MAP) or getattr(net, "type_map", None)
        if type_map:
            numbers = {int(z) for z in type_map}
        else:
            numbers = {int(_atomic_numbers[s]) for s in config.get(KEY.CHEMICAL_SPECIES, [])}
        self.supported_numbers = frozenset(numbers) if numbers else None
        self.checkpoint_path = path
        self.model_name = display
        self.name = f"sevenn:{display}" + (f"/{modal}" if modal else "")
        self.version = f"sevenn-{_sevenn_version()}/{display}" + (
            f"-{config['version']}" if config.get("version") else ""
        )
        self._type_map = {int(z): int(i) for z, i in (getattr(net, "type_map", None) or {}).items()}
        self._readout = self.model._modules.get(_READOUT)
        self._embed = self.model._modules.get(_EMBEDDING)
        self._scalar_cols = None
        if self._readout is not None:
            self._scalar_cols = _scalar_columns(getattr(self._readout, "_irreps_in_wo_modal", self._readout.irreps_in))
            self._feature_dim = len(self._scalar_cols)

    # ------------------------------------------------------------------ model
    def _graph(self, atoms: Atoms, pos: torch.Tensor) -> AtomGraphData:
        raw = unlabeled_atoms_to_graph(atoms, self.cutoff, with_shift=True)
        dev, dt = self.device, self.dtype
        edge_index = torch.as_tensor(np.asarray(raw[KEY.EDGE_IDX], dtype=np.int64), device=dev)
        shift = torch.as_tensor(np.asarray(raw[KEY.CELL_SHIFT], dtype=np.float64), dtype=dt, device=dev).reshape(-1, 3)
        cell = torch.as_tensor(np.asarray(raw[KEY.CELL], dtype=np.float64), dtype=dt, device=dev).reshape(3, 3)
        src, dst = edge_index[0], edge_index[1]
        edge_vec = pos[dst] - pos[src] + shift @ cell

        ref = np.asarray(raw[KEY.EDGE_VEC], dtype=np.float64).reshape(-1, 3)
        if ref.size:
            gap = float(np.abs(edge_vec.detach().to(torch.float64).cpu().numpy() - ref).max())
            tol = _EDGE_CHECK_TOL if dt == torch.float64 else 1e-4
            if not gap <= tol:
                raise TeacherError(
                    f"sevenn {_sevenn_version()}: edge vectors rebuilt from positions differ from sevenn's own by {gap:.3g} Å; "
                    f"the neighbour-list convention has changed and the SevenNet adapter must be updated"
                )
        z = torch.as_tensor(np.asarray(atoms.numbers, dtype=np.int64), device=dev)
        fields = {
            KEY.NODE_FEATURE: z,
            KEY.ATOMIC_NUMBERS: z.clone(),
            KEY.POS: pos,
            KEY.EDGE_IDX: edge_index,
            KEY.EDGE_VEC: edge_vec,
            KEY.CELL_VOLUME: torch.tensor(float(atoms.cell.volume), dtype=dt, device=dev),
            KEY.NUM_ATOMS: torch.tensor(len(atoms), dtype=torch.int64, device=dev),
            KEY.CELL_SHIFT: shift,
            KEY.CELL: cell,
            KEY.INFO: {},
        }
        data = AtomGraphData(**fields)
        if self.modal:
            data[KEY.DATA_MODALITY] = self.modal
        return data

    forward_captures_features = True
    node_features_description = (
        "SevenNet node features x entering the readout (input of reduce_input_to_hidden = output of the last "
        "interaction block's equivariant gate), 0e channels only; float32 copy of the teacher-dtype values"
    )
    element_embeddings_description = (
        "SevenNet onehot_to_feature_x (element one-hot linear) applied to each element's one-hot"
    )

    def _require_features(self):
        if self._readout is None or self._embed is None or self._scalar_cols is None:
            raise TeacherError(
                f"teacher {self.name!r}: this SevenNet model has no module {_READOUT!r} / {_EMBEDDING!r}, so its node "
                f"features / element embeddings cannot be located (sevenn {_sevenn_version()})\n"
                f"  fix: label without node features, or use a checkpoint built by sevenn's standard model builder"
            )

    def forward(self, atoms: Atoms, *, create_graph: bool, with_features: bool = False) -> ForwardResult:
        if with_features:
            self._require_features()
        pos = torch.tensor(atoms.get_positions(), dtype=self.dtype, device=self.device, requires_grad=True)
        captured = []
        with torch.enable_grad():
            data = self._graph(atoms, pos)
            with self._lock:
                handle = None
                if with_features:
                    # data["x"] as the readout receives it (before any modality one-hot is appended)
                    handle = self._readout.register_forward_pre_hook(
                        lambda m, args: captured.append(args[0][self._readout.key_input])
                    )
                # the force module differentiates with create_graph=self.training; nothing else reads the flag
                self._force_module.train(bool(create_graph))
                try:
                    out = self.model(data)
                finally:
                    self._force_module.train(False)
                    if handle is not None:
                        handle.remove()
        energy = out[KEY.PRED_TOTAL_ENERGY].reshape(-1)[0]
        forces = out[KEY.PRED_FORCE].reshape(-1, 3)[: len(atoms)] if KEY.PRED_FORCE in out else None
        if forces is None:  # no edges at all (isolated atoms): the energy does not depend on positions
            forces = pos * 0.0  # zero, yet still "differentiable" so Hessian rows come out as zeros
        feats = None
        if with_features:
            if len(captured) != 1 or captured[0].shape[0] != len(atoms):
                raise TeacherError(
                    f"teacher {self.name!r}: expected one ({len(atoms)}, F) tensor entering {_READOUT!r}, got "
                    f"{[tuple(c.shape) for c in captured]}; the SevenNet adapter must be updated for sevenn {_sevenn_version()}"
                )
            cols = torch.as_tensor(self._scalar_cols, dtype=torch.long, device=captured[0].device)
            feats = captured[0].index_select(-1, cols)
        return ForwardResult(positions=pos, energy=energy, forces=forces, node_features=feats)

    #: a list goes through SevenNet in one call, as sevenn batches graphs itself (``sevenn inference``,
    #: ``sevenn.torchsim``): per-structure graphs collated by torch_geometric, the model in batch mode
    batched = True

    def energy_forces_batched(self, atoms_list):
        """Energies (M,) and forces (list of (N_m, 3)) of a list in one SevenNet call: each structure's graph as
        :meth:`forward` builds it, collated into one torch_geometric batch (edge indices offset per graph), the
        model switched to batch mode (per-graph energies; forces scattered from the edge gradients) for the call."""
        from torch_geometric.loader.dataloader import Collater

        atoms_list = list(atoms_list)
        for i, a in enumerate(atoms_list):
            self.check_atoms(a, index=i)
        if not atoms_list:
            return np.zeros(0), []
        with torch.enable_grad():
            graphs = [
                self._graph(
                    a, torch.tensor(a.get_positions(), dtype=self.dtype, device=self.device, requires_grad=True)
                )
                for a in atoms_list
            ]
            batch = Collater([], follow_batch=None, exclude_keys=None)(graphs)
            with self._lock:
                self.model.set_is_batch_data(True)
                self._force_module.train(False)
                try:
                    out = self.model(batch)
                finally:
                    self.model.set_is_batch_data(False)
        counts = [len(a) for a in atoms_list]
        energy = out[KEY.PRED_TOTAL_ENERGY].detach().reshape(-1).to(torch.float64).cpu().numpy()
        if energy.shape != (len(atoms_list),):
            raise TeacherError(
                f"teacher {self.name!r}: batched SevenNet gave energies of shape {energy.shape} for "
                f"{len(atoms_list)} structures; the adapter must be updated for sevenn {_sevenn_version()}"
            )
        if KEY.PRED_FORCE in out and out[KEY.PRED_FORCE] is not None:
            flat = out[KEY.PRED_FORCE].detach().to(torch.float64).cpu().numpy().reshape(-1, 3)
        else:  # no edge in the whole batch: nothing depends on positions
            flat = np.zeros((sum(counts), 3))
        return energy, np.split(flat, np.cumsum(counts)[:-1])

    def node_features(self, atoms: Atoms) -> np.ndarray:
        """0e node features entering SevenNet's readout (last interaction block output), (N, F), float64.

        F = 128 for 7net-0.  Computed with a force-free-graph pass (``create_graph=False``); SevenNet's force
        module still runs, as it is part of the model.
        """
        self._require_features()
        self.check_atoms(atoms)
        res = self.forward(atoms, create_graph=False, with_features=True)
        return res.node_features.detach().to(torch.float64).cpu().numpy()

    def element_embeddings(self) -> tuple[np.ndarray, np.ndarray]:
        """``(numbers (E,), table (E, F))``: ``onehot_to_feature_x`` applied to each element's one-hot, float64.

        ``numbers`` are the model's elements in its one-hot (``type_map``) order; E = 89, F = 128 for 7net-0.
        """
        self._require_features()
        if not self._type_map:
            raise TeacherError(f"teacher {self.name!r}: the model has no type_map, so its element order is unknown")
        order = sorted(self._type_map, key=self._type_map.get)
        numbers = np.asarray(order, dtype=np.int64)
        n_classes = max(self._type_map.values()) + 1
        onehot = torch.zeros(len(order), n_classes, dtype=self.dtype, device=self.device)
        onehot[torch.arange(len(order)), torch.as_tensor([self._type_map[z] for z in order])] = 1.0
        n_modal = int(getattr(self._embed, "num_modalities", 0) or 0)
        if n_modal > 1:
            modal_onehot = torch.zeros(len(order), n_modal, dtype=self.dtype, device=self.device)
            modal_onehot[:, int(self.model.modal_map[self.modal])] = 1.0
            onehot = torch.cat([onehot, modal_onehot], dim=1)
        with torch.no_grad():
            table = self._embed.linear(onehot)
        return numbers, table.detach().to(torch.float64).cpu().numpy()
