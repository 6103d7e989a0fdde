"""MACE teachers (mace-torch): MACE-OFF23, MACE-MP and any MACE model file.

Names (see :mod:`hessdistill.teachers.registry`):

``mace-off:<size>``
    MACE-OFF23 ``small`` / ``medium`` / ``large`` (organic molecules, H C N O F P S Cl Br I), resolved with
    mace-torch's own :func:`mace.calculators.foundations_models.mace_off`.
``mace-mp:<size>``
    MACE-MP ``small`` / ``medium`` / ``large`` or any other key of mace-torch's ``mace_mp_urls`` table
    (``medium-mpa-0``, ``small-0b3``, ``medium-omat-0`` ...), resolved with
    :func:`mace.calculators.foundations_models.download_mace_mp_checkpoint`.
``mace:<path>``
    a MACE model file as written by ``mace_run_train`` (``*.model``) or ``torch.save(model)``.

Foundation weights are downloaded once by mace-torch into its cache folder, ``$XDG_CACHE_HOME/mace`` or
``~/.cache/mace``.  Offline, a missing file gives :class:`~hessdistill.core.errors.TeacherError` naming the path
where mace-torch looks for it, so the file can be copied there by hand (or used directly as ``mace:<path>``).
Pass ``download=False`` (or set ``HESSDISTILL_OFFLINE=1``) to never touch the network.

The graph is built with mace-torch's own data path (``config_from_atoms`` → ``AtomicData.from_config``, which
uses matscipy's neighbour list with the model's ``r_max`` → ``Batch.from_data_list``), exactly as
``MACECalculator`` does; the positions tensor is then replaced by a leaf that requires grad, and the model
is run with ``training=create_graph`` so that its forces (-dE/dx by autograd) can be differentiated again.
Periodic images enter through constant shift vectors (``unit_shifts @ cell``), so Hessians are taken at
fixed cell, for molecules and crystals alike.

Note: importing mace sets ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1`` in the process environment (mace-torch
does this itself), and model files are unpickled with ``weights_only=False``: load only files you trust.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
from pathlib import Path

# mace must be imported before e3nn is used for torch.load (see module docstring); keep this first.
import mace  # noqa: I001
import numpy as np
import torch
from mace import data as mace_data
from mace.tools import torch_geometric
from mace.tools.utils import AtomicNumberTable

from ..core.digest import file_digest
from ..core.errors import TeacherError
from .base import AutogradTeacher, ForwardResult

log = logging.getLogger(__name__)

KINDS = ("mace-off", "mace-mp", "mace")

#: the same property keys as MACECalculator's defaults (charge / spin for models with joint embeddings)
_INFO_KEYS = {"total_spin": "spin", "total_charge": "charge", "external_field": "external_field"}
_ARRAYS_KEYS = {"Qs": "charges"}


@contextlib.contextmanager
def _default_dtype(dtype: torch.dtype):
    """mace's data path builds tensors in torch's default dtype; set it for the duration only."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(old)


def _offline_requested() -> bool:
    return os.environ.get("HESSDISTILL_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def foundation_checkpoint(kind: str, model: str) -> tuple[str, Path]:
    """(download URL, cache path) of a MACE foundation model, as mace-torch names them.

    The cache path is where mace-torch's own loaders look before downloading: for MACE-OFF the URL's file
    name, for MACE-MP the file name with everything but letters, digits and ``_`` removed, both inside
    ``mace.tools.utils.get_cache_dir()``.
    """
    from mace.calculators import foundations_models as fm
    from mace.tools.utils import get_cache_dir

    cache_dir = Path(get_cache_dir())
    if kind == "mace-off":
        if model not in fm.mace_off_urls:
            raise TeacherError(
                f"teacher 'mace-off:{model}': unknown MACE-OFF model; choose one of {sorted(fm.mace_off_urls)} "
                f"or load a file with 'mace:<path>'"
            )
        url = fm.mace_off_urls[model]
        return url, cache_dir / os.path.basename(url).split("?")[0]
    if kind == "mace-mp":
        if model not in fm.mace_mp_urls:
            raise TeacherError(
                f"teacher 'mace-mp:{model}': unknown MACE-MP model; choose one of {sorted(fm.mace_mp_urls)} "
                f"or load a file with 'mace:<path>'"
            )
        url = fm.mace_mp_urls[model]
        name = "".join(c for c in os.path.basename(url) if c.isalnum() or c in "_")
        return url, cache_dir / name
    raise TeacherError(f"not a foundation-model kind: {kind!r} (expected 'mace-off' or 'mace-mp')")


def _resolve_foundation(kind: str, model: str, device: torch.device, download: bool):
    """Load a foundation model through mace-torch's own loaders; returns (module, path)."""
    from mace.calculators import foundations_models as fm

    url, cached = foundation_checkpoint(kind, model)
    name = f"{kind}:{model}"
    fix = (
        f"download {url} on a machine with internet access and copy it to {cached} "
        f"(mace-torch's cache: $XDG_CACHE_HOME/mace or ~/.cache/mace), or load any copy of it with "
        f"teacher 'mace:/path/to/{os.path.basename(url)}'"
    )
    shipped = kind == "mace-mp" and model == "medium-mpa-0" and os.path.isfile(fm.local_model_path)  # in-package copy
    if not cached.is_file() and not shipped and not download:
        raise TeacherError(
            f"teacher {name!r}: the weights are not in mace-torch's cache ({cached}) and downloads are off.\n  fix: {fix}"
        )
    captured = io.StringIO()  # mace prints progress / licence notes on stdout; keep them out of our output
    try:
        with contextlib.redirect_stdout(captured):
            if kind == "mace-mp":
                path = Path(fm.download_mace_mp_checkpoint(model))
                module = _torch_load(path, device)
            else:
                module = fm.mace_off(model, device=str(device), return_raw_model=True)
                path = cached
    except TeacherError:
        raise
    except Exception as exc:  # URLError, RuntimeError("Model download failed ..."), timeouts
        cause = exc.__cause__ or exc
        raise TeacherError(
            f"teacher {name!r}: could not load or download the weights ({type(cause).__name__}: {cause}).\n  fix: {fix}"
        ) from exc
    finally:
        for line in captured.getvalue().splitlines():
            if line.strip():
                log.info("mace-torch: %s", line.strip())
    return module, path


def _torch_load(path: Path, device: torch.device):
    try:
        return torch.load(str(path), map_location=device, weights_only=False)
    except Exception as exc:
        raise TeacherError(
            f"cannot read MACE model file {str(path)!r} ({type(exc).__name__}: {exc}).\n"
            f"  fix: give a model saved with torch.save(model) or by mace_run_train (*.model, not *_compiled.model "
            f"or a checkpoint *.pt of a training run)"
        ) from exc


class MACETeacher(AutogradTeacher):
    """A MACE model (mace-torch) as a conservative teacher with autograd Hessians.

    Parameters
    ----------
    kind:
        ``"mace-off"``, ``"mace-mp"`` (``model`` is a size / model key) or ``"mace"`` (``model`` is a path).
    head:
        the readout head of a multi-head model; by default the only head, or the one called "default".
    download:
        allow mace-torch to download missing foundation weights (default: True unless
        ``HESSDISTILL_OFFLINE=1``).  mace-torch gives up on an unreachable host as soon as name
        resolution fails, and after at most 120 s of socket silence otherwise.
    """

    conservative = True
    hessian_method = "autograd"

    def __init__(
        self,
        kind: str = "mace",
        model: str | os.PathLike | None = None,
        *,
        device=None,
        dtype="float64",
        head: str | None = None,
        download: bool | None = None,
    ):
        super().__init__(device=device, dtype=dtype)
        if kind not in KINDS:
            raise TeacherError(f"unknown MACE teacher kind {kind!r}; use one of {KINDS}")
        if model is None or str(model) == "":
            raise TeacherError(
                f"teacher {kind!r}: say which model, e.g. 'mace-off:large', 'mace-mp:medium' or 'mace:/path/to/model.model'"
            )
        if download is None:
            download = not _offline_requested()
        self.mace_kind = kind  # mace-off, mace-mp or mace (``kind`` is the EvaluatedModel kind, "teacher")
        if kind == "mace":
            path = Path(model).expanduser()
            if not path.is_file():
                raise TeacherError(
                    f"teacher 'mace:{model}': no such file.\n  fix: give the path of a MACE model file (*.model)"
                )
            module = _torch_load(path, self.device)
            self.name = f"mace:{path.name}"
        else:
            module, path = _resolve_foundation(kind, str(model), self.device, download)
            self.name = f"{kind}:{model}"
        if (
            not isinstance(module, torch.nn.Module)
            or not hasattr(module, "atomic_numbers")
            or not hasattr(module, "r_max")
        ):
            raise TeacherError(
                f"teacher {self.name!r}: {str(path)!r} does not hold a MACE model (got {type(module).__name__}).\n"
                f"  fix: give a file written by torch.save(model) / mace_run_train (*.model)"
            )
        self.model_path = Path(path)
        self.model = module.to(device=self.device, dtype=self.dtype).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)

        self.r_max = float(self.model.r_max)
        zs = [int(z) for z in self.model.atomic_numbers]
        self.z_table = AtomicNumberTable(zs)
        self.supported_numbers = frozenset(zs)
        self.heads = list(getattr(self.model, "heads", None) or ["Default"])
        self.head = self._pick_head(head)
        digest = file_digest(self.model_path)[:12]
        self.version = f"mace-torch {mace.__version__}; {self.model_path.name}; sha256:{digest}"
        if len(self.heads) > 1:
            self.version += f"; head {self.head}"
        self._last_scalar_index = None

    # ------------------------------------------------------------------ setup helpers
    def _pick_head(self, head):
        if head is not None:
            if head not in self.heads:
                raise TeacherError(f"teacher {self.name!r} has no head {head!r}; its heads are {self.heads}")
            return head
        if len(self.heads) == 1:
            return self.heads[0]
        default = [h for h in self.heads if h.lower() == "default"]
        if not default:
            raise TeacherError(
                f"teacher {self.name!r} has several heads {self.heads} and none is called 'default'.\n"
                f"  fix: choose one with the teacher option head: <name>"
            )
        return default[0]

    def _graph(self, atoms):
        keyspec = mace_data.KeySpecification(info_keys=dict(_INFO_KEYS), arrays_keys=dict(_ARRAYS_KEYS))
        with _default_dtype(self.dtype):
            config = mace_data.config_from_atoms(atoms, key_specification=keyspec, head_name=self.head)
            return mace_data.AtomicData.from_config(config, z_table=self.z_table, cutoff=self.r_max, heads=self.heads)

    def _batch(self, atoms) -> dict:
        """MACE's input dict for one structure, or for a list in one batch (same path as
        MACECalculator._atoms_to_batch and mace's own evaluation loader, no padding)."""
        graphs = [self._graph(a) for a in atoms] if isinstance(atoms, (list, tuple)) else [self._graph(atoms)]
        batch = torch_geometric.Batch.from_data_list(graphs).to(self.device)
        d = batch.to_dict()
        for key, value in d.items():
            if torch.is_tensor(value) and torch.is_floating_point(value):
                d[key] = value.to(dtype=self.dtype)
        return d

    # ------------------------------------------------------------------ AutogradTeacher
    def forward(self, atoms, *, create_graph: bool) -> ForwardResult:
        d = self._batch(atoms)
        pos = torch.tensor(
            np.asarray(atoms.get_positions(), dtype=np.float64),
            dtype=self.dtype,
            device=self.device,
            requires_grad=True,
        )
        d["positions"] = pos
        # training=True makes mace build the force graph with create_graph=True (forces differentiable)
        out = self.model(
            d, training=bool(create_graph), compute_force=True, compute_stress=False, compute_virials=False
        )
        if out.get("energy") is None or out.get("forces") is None:
            raise TeacherError(
                f"teacher {self.name!r}: the model returned no energy/forces ({type(self.model).__name__}); "
                f"only energy models (MACE, ScaleShiftMACE, ...) can be teachers"
            )
        energy = out["energy"].reshape(-1)[0]
        forces = out["forces"]
        if create_graph and not forces.requires_grad:
            # no edge within r_max (isolated atoms): forces are identically zero and so is the Hessian;
            # tie them to the positions so that VJPs return zeros instead of failing
            forces = forces + 0.0 * pos
        return ForwardResult(positions=pos, energy=energy, forces=forces)

    #: a list goes through MACE in one call: AtomicData graphs collated into one torch_geometric batch, as
    #: mace's own evaluation (``mace_eval_configs``: a DataLoader of AtomicData) does
    batched = True

    def energy_forces_batched(self, atoms_list):
        """Energies (M,) and forces (list of (N_m, 3)) of a list in one MACE call (per-graph energies, forces by
        one autograd pass over the batch)."""
        atoms_list = list(atoms_list)
        for i, a in enumerate(atoms_list):
            self.check_atoms(a, index=i)
        if not atoms_list:
            return np.zeros(0), []
        d = self._batch(atoms_list)
        out = self.model(d, training=False, compute_force=True, compute_stress=False, compute_virials=False)
        if out.get("energy") is None or out.get("forces") is None:
            raise TeacherError(
                f"teacher {self.name!r}: the model returned no energy/forces ({type(self.model).__name__})"
            )
        energy = out["energy"].detach().reshape(-1).to(torch.float64).cpu().numpy()
        counts = [len(a) for a in atoms_list]
        if energy.shape != (len(atoms_list),):
            raise TeacherError(
                f"teacher {self.name!r}: batched MACE gave energies of shape {energy.shape} for "
                f"{len(atoms_list)} structures"
            )
        flat = out["forces"].detach().to(torch.float64).cpu().numpy().reshape(-1, 3)
        return energy, np.split(flat, np.cumsum(counts)[:-1])

    # ------------------------------------------------------------------ features for distillation baselines
    def _scalar_columns(self, n_feats: int) -> torch.Tensor:
        """Column indices of the last layer's l=0, even-parity (0e) channels in MACE's ``node_feats``."""
        if self._last_scalar_index is None:
            from e3nn import o3

            try:
                irreps = o3.Irreps(str(self.model.products[-1].linear.irreps_out))
            except AttributeError as exc:
                raise TeacherError(
                    f"teacher {self.name!r}: cannot find the irreps of the last MACE layer ({exc})"
                ) from exc
            start = n_feats - irreps.dim
            cols = []
            for (_mul, ir), sl in zip(irreps, irreps.slices()):
                if ir.l == 0 and ir.p == 1:
                    cols.extend(range(start + sl.start, start + sl.stop))
            self._last_scalar_index = torch.as_tensor(cols, dtype=torch.long)
        return self._last_scalar_index

    def node_features(self, atoms) -> np.ndarray:
        """Invariant node features of the last MACE layer, shape (N, F), float64.

        MACE returns ``node_feats``, the concatenation over interaction layers of each layer's product-basis
        output (irreps ``hidden_irreps`` for all but the last layer, scalars only for the last one in the
        standard architecture).  This returns the l=0 (``0e``) channels of the last layer, i.e. the features
        the last readout acts on: the same numbers as the last F columns of
        ``MACECalculator.get_descriptors(atoms, invariants_only=True)`` (F = the number of scalar channels,
        e.g. 128 for ``128x0e+128x1o``), in the teacher's dtype, without gradients.
        """
        self.check_atoms(atoms)
        d = self._batch(atoms)
        d["positions"] = torch.tensor(
            np.asarray(atoms.get_positions(), dtype=np.float64), dtype=self.dtype, device=self.device
        )
        with torch.no_grad():
            out = self.model(d, training=False, compute_force=False, compute_stress=False, compute_virials=False)
        feats = out["node_feats"]
        cols = self._scalar_columns(feats.shape[-1]).to(feats.device)
        return feats.index_select(-1, cols).detach().to(torch.float64).cpu().numpy()

    def element_embeddings(self) -> tuple[np.ndarray, np.ndarray]:
        """The per-element embedding table: ``(numbers (E,), table (E, F))``, float64.

        ``table[k]`` is MACE's first node feature for an atom of element ``numbers[k]``: the node-embedding
        linear layer (``model.node_embedding``, an e3nn Linear from one-hot ``E x 0e`` to ``F x 0e``) applied
        to the one-hot vector of that element.  ``numbers`` is the model's ``atomic_numbers`` in its own
        (one-hot) order.  For models with extra joint embeddings (charge, spin) only the element part is
        returned.  No atomic-energy (E0) shift is included.
        """
        numbers = np.asarray(self.z_table.zs, dtype=np.int64)
        eye = torch.eye(len(numbers), dtype=self.dtype, device=self.device)
        with torch.no_grad():
            table = self.model.node_embedding(eye)
        return numbers, table.detach().to(torch.float64).cpu().numpy()
