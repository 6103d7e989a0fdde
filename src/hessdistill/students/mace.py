"""MACE as a student: mace-torch's own ``MACE`` network, trained by hessdistill's loop and losses.

Users who distil a large MACE (MACE-OFF, MACE-MP-0) often want a small MACE-family engine as the result, so
it can run wherever MACE runs.  This wraps ``mace.modules.MACE`` (not a re-implementation): the student
builds mace-torch's data dictionary from a hessdistill batch (same edge convention: the edge vector of
``edge_index = [i, j]`` is ``pos[j] - pos[i] + shift``, which is MACE's sender/receiver convention) and uses
MACE's per-node energies as the atom-wise contributions.  MACE's own atomic energies (E0) are zero here:
hessdistill's per-element reference energies (least squares on the training split) and energy scale play
that role, as for every student; forces are -dE/dx by autograd in :meth:`Student.forward`, so the Hessian
loss differentiates through MACE exactly as through PaiNN.

Needs mace-torch (which pins e3nn 0.4.4: the MACE environment, ``.venv-mace`` / ``envs/teacher-mace.yaml``).
The node features for n2n are the scalar channels of the last interaction (``num_channels`` wide).
``atomic_numbers`` fixes the elements the student knows (its one-hot width); structures with other elements
fail with an error naming them.
"""

from __future__ import annotations

import numpy as np
import torch

from ..core.errors import HessdistillError
from .base import ELEMENT_SLOTS, AtomwiseOutput, Student, element_names, host_numbers

DEFAULT_ELEMENTS = (1, 6, 7, 8)


def _mace():
    try:
        import mace  # noqa: F401  (first: it lets e3nn 0.4.4 load its constants under torch >= 2.6)
        from e3nn import o3
        from mace import modules
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise HessdistillError(
            f"the MACE student needs mace-torch ({exc})\n  fix: use the MACE environment: pip install -c "
            "constraints.txt -e '.[mace]' in its own venv (mace-torch pins e3nn 0.4.4, which sevenn cannot share), "
            "or envs/teacher-mace.yaml"
        ) from exc
    return modules, o3


class MACEStudent(Student):
    """A (small) MACE network as a conservative student."""

    arch = "mace"

    def __init__(
        self,
        cutoff: float = 5.0,
        atomic_numbers: list | tuple = DEFAULT_ELEMENTS,
        num_channels: int = 32,
        max_L: int = 1,
        max_ell: int = 3,
        num_interactions: int = 2,
        correlation: int = 3,
        num_bessel: int = 8,
        num_polynomial_cutoff: int = 5,
        mlp_channels: int = 16,
        radial_mlp: list | tuple = (64, 64, 64),
        interaction: str = "RealAgnosticResidualInteractionBlock",
        avg_num_neighbors: float = 1.0,
        direct_forces: bool = False,
        num_elements: int = ELEMENT_SLOTS,
        embedding_init: dict | None = None,
    ):
        if direct_forces:
            raise HessdistillError("the MACE student is conservative only\n  fix: direct_forces=False")
        if embedding_init is not None:
            raise HessdistillError(
                "a2a (teacher element embeddings) is not supported for the MACE student: its element embedding is "
                "a linear map of a one-hot over `atomic_numbers`, not a per-element table\n  fix: use method "
                "'hessian', 'undistilled', 'n2n' or 'teacher-forces' with arch 'mace', or PaiNN/GemNet/SchNet for a2a"
            )
        super().__init__(cutoff=cutoff, direct_forces=False)
        modules, o3 = _mace()
        zs = sorted({int(z) for z in atomic_numbers})
        if not zs or zs[0] < 1 or zs[-1] >= ELEMENT_SLOTS:
            raise HessdistillError(
                f"MACE student: atomic_numbers must be elements 1..{ELEMENT_SLOTS - 1}, got {atomic_numbers}"
            )
        if interaction not in modules.interaction_classes:
            raise HessdistillError(
                f"MACE student: unknown interaction {interaction!r}; choose one of "
                f"{sorted(modules.interaction_classes)}"
            )
        hidden = o3.Irreps(
            " + ".join(f"{num_channels}x{ell}{'e' if ell % 2 == 0 else 'o'}" for ell in range(max_L + 1))
        )
        self.model = modules.MACE(
            r_max=float(cutoff),
            num_bessel=int(num_bessel),
            num_polynomial_cutoff=int(num_polynomial_cutoff),
            max_ell=int(max_ell),
            interaction_cls=modules.interaction_classes[interaction],
            interaction_cls_first=modules.interaction_classes[interaction],
            num_interactions=int(num_interactions),
            num_elements=len(zs),
            hidden_irreps=hidden,
            MLP_irreps=o3.Irreps(f"{mlp_channels}x0e"),
            atomic_energies=np.zeros(len(zs)),
            avg_num_neighbors=float(avg_num_neighbors),
            atomic_numbers=zs,
            correlation=int(correlation),
            gate=torch.nn.functional.silu,
            radial_MLP=list(radial_mlp),
        )
        # E0 = 0: hessdistill's element references replace them; keep them out of training
        for p in self.model.atomic_energies_fn.parameters():
            p.requires_grad_(False)
        index = torch.full((ELEMENT_SLOTS,), -1, dtype=torch.long)
        index[torch.tensor(zs)] = torch.arange(len(zs))
        self.register_buffer("z_index", index, persistent=False)
        self.zs = zs
        self.num_channels = int(num_channels)
        self.hparams = {
            "cutoff": float(cutoff),
            "atomic_numbers": zs,
            "num_channels": int(num_channels),
            "max_L": int(max_L),
            "max_ell": int(max_ell),
            "num_interactions": int(num_interactions),
            "correlation": int(correlation),
            "num_bessel": int(num_bessel),
            "num_polynomial_cutoff": int(num_polynomial_cutoff),
            "mlp_channels": int(mlp_channels),
            "radial_mlp": [int(x) for x in radial_mlp],
            "interaction": interaction,
            "avg_num_neighbors": float(avg_num_neighbors),
            "direct_forces": False,
            "num_elements": int(num_elements),
        }

    @property
    def feature_dim(self) -> int:
        return self.num_channels

    def check_numbers(self, numbers) -> None:
        z = host_numbers(numbers)
        missing = sorted({int(x) for x in z[~np.isin(z, self.zs)]})
        if missing:
            raise HessdistillError(
                f"MACE student knows elements {self.zs}; the batch has {missing} "
                f"({element_names(missing)})\n  fix: build the student with atomic_numbers "
                f"including {missing} (and retrain)"
            )

    def data_config(self) -> dict:
        return {"arch": self.arch, "elements": self.zs}

    def atomwise(self, batch) -> AtomwiseOutput:
        idx = self.z_index[batch.z]  # elements checked by check_numbers (Student.forward or the data pipeline)
        pos = batch.pos
        n_struct = batch.natoms.shape[0]
        ptr = torch.zeros(n_struct + 1, dtype=torch.long, device=pos.device)
        ptr[1:] = torch.cumsum(batch.natoms, 0)
        data = {
            "positions": pos,
            "node_attrs": torch.nn.functional.one_hot(idx, len(self.zs)).to(pos.dtype),
            "edge_index": batch.edge_index,
            "shifts": batch.edge_shift.to(pos.dtype),
            "unit_shifts": torch.zeros_like(batch.edge_shift, dtype=pos.dtype),
            "cell": batch.cell.reshape(-1, 3).to(pos.dtype),
            "batch": batch.batch,
            "ptr": ptr,
        }
        out = self.model(data, training=self.training, compute_force=False)
        return AtomwiseOutput(energy=out["node_energy"], features=out["node_feats"][:, -self.num_channels :])
