"""PaiNN (Schütt, Unke & Gastegger, ICML 2021): polarizable atom interaction neural network.

Every atom carries scalar features s_i (F) and vector features v_i (3 x F: the feature axis last, so
the broadcasts run over contiguous memory), v_i = 0 initially (layer 1 skips the phi_vv v_j term).  Each of
``num_layers`` layers applies a message block and an update block (paper eqs. 7-11):

message (edge j -> i, r_ij = pos[j] - pos[i] + shift, unit vector u_ij, filter W(r) = Linear(rbf(r)) * fcut(r)):
    (phi_s, phi_vv, phi_vs) = split(Linear(SiLU(Linear(s_j))) (.) W(r_ij))          # each F wide
    Δs_i = Σ_j phi_s
    Δv_i = Σ_j phi_vv v_j + phi_vs u_ij
update (per atom):
    U v_i, V v_i                                    (channel mixing, no bias: equivariant)
    (a_vv, a_sv, a_ss) = split(Linear(SiLU(Linear([s_i, ||V v_i||]))))
    Δv_i = a_vv U v_i ;  Δs_i = a_ss + a_sv <U v_i, V v_i>

Readout: per-atom energy = Linear(SiLU(Linear(s_i)))  (F -> F/2 -> 1).  With ``direct_forces=True`` a force
head of two gated equivariant blocks (paper Fig. 3; F -> F/2 -> 1 vector channel) maps (s, v) to one vector
per atom.

Smoothness (training uses double backprop): the radial basis is Gaussians on [0, cutoff] (width = spacing)
and every edge filter is multiplied by the C^2 polynomial envelope (p = 5) of :mod:`.layers`, so energies,
forces and Hessians are continuous when pairs cross the cutoff.  Activations are SiLU; the vector norm
||V v|| is sqrt(|.|^2 + 1e-8) (finite gradient at v = 0, which happens in layer 1).  Distances use a plain
norm (pairs never coincide).

``avg_num_neighbors``: aggregated messages are divided by this constant (1.0 = plain sums, as in the
paper).  With a 12 Å cutoff dense crystals have hundreds of neighbours; setting it to the mean neighbour
count of the training set keeps activations O(1).  It is a hyper-parameter (stored in the config), not a
parameter.

``max_neighbors`` (None = off, the default): each atom keeps its nearest ``max_neighbors`` neighbours within the
cutoff, plus any tied with the last one, and the kept set is made symmetric: the cap of GemNet
(:func:`.layers.capped_edges`); the authors' release configs use 50 (SPICE) and 20 (MPtrj).  The kept edges are
computed once per structure where the data is built for the student (:meth:`PaiNN.graph_extras`, host side) or
in the forward for other batches, and by the runtime of exported students (``hessdistill.students.export``).
Like any cap it is discontinuous in the geometry where it is active (a neighbour changing rank at the boundary).

Parameter counts (default config: hidden 128, 4 layers, 128 rbf, 119-row embedding)::

    conservative (energy head only):            946,689
    direct_forces=True (energy + force head):  1,033,219

Breakdown: embedding 119 x 128 = 15,232; per layer 230,784 (message 115,584 = 128->128, 128->384 MLP and
the 128->384 rbf filter; update 115,200 = U, V without bias and the 256->128->384 MLP), x 4 = 923,136;
energy head 128->64->1 = 8,321; force head 86,530 (gated blocks 128->64: 73,984 and 64->1: 12,546).  The
direct model is the one comparable to the paper's "~1.03 M" (fairchem PaiNN small, direct head).  Small
differences to fairchem come from the embedding size (fairchem uses 83 elements for SPICE: 10,624) and its
extra layer norms / learned scale factors, which this re-implementation does not have.
"""

from __future__ import annotations

import torch
from torch import nn

from ..core.errors import HessdistillError
from ..core.graphs import edge_vectors
from .base import ELEMENT_SLOTS, AtomwiseOutput, Student, host_numbers
from .layers import (
    ElementEmbedding,
    GaussianRBF,
    PolynomialEnvelope,
    capped_edges,
    plain_embedding_init,
    safe_norm,
    scatter_sum,
)

#: eps of the vector norms sqrt(|V v|^2 + eps) fed to the update and gate MLPs.  At a symmetric structure (a
#: relaxed crystal, a symmetric molecule) the vector features vanish by symmetry, and there the second derivative
#: of sqrt(|x|^2 + eps) is 1/sqrt(eps): with the 1e-8 of the original implementation (and of this one before
#: the parameter existed, which old checkpoints keep, see ``LEGACY_HPARAMS``) a student's Hessian, vibrations and
#: phonons at equilibrium were dominated by that kink (relative Hessian errors of 3-6 at teacher-relaxed
#: perovskites while forces were within 15 meV/Å).  eps = 1 (features are O(1)) keeps the norm's curvature O(1).
VECTOR_NORM_EPS = 1.0
#: hyper-parameters added after checkpoints were written, with the value those checkpoints were trained with
LEGACY_HPARAMS = {"vector_norm_eps": 1e-8}


class PaiNNMessage(nn.Module):
    def __init__(self, hidden: int, num_rbf: int):
        super().__init__()
        self.hidden = hidden
        self.phi = nn.Sequential(nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, 3 * hidden))
        self.filter = nn.Linear(num_rbf, 3 * hidden)

    def forward(self, s, v, i, j, rbf_env, unit, norm: float, v_zero: bool = False):
        """``v`` is (N, 3, F): the feature axis last, so every broadcast below runs over contiguous memory.

        ``rbf_env`` is [rbf(r) fcut(r), fcut(r)] (E, R + 1): the filter W(r) = (Linear(rbf) fcut) is then one
        matrix product, (rbf fcut) @ A^T + fcut b, with no (E, 3F) product by the envelope.  The three
        channels (phi_s, phi_vv, phi_vs) are computed apart from row blocks of the same weights, so that every
        (E, F) tensor is contiguous; ``v_zero`` (v identically zero, the first layer) skips phi_vv altogether.
        """
        F = self.hidden
        hidden = self.phi[1](self.phi[0](s))  # (N, F)
        out, filt = self.phi[2], self.filter

        def channel(k: int):
            rows = slice(k * F, (k + 1) * F)
            node = nn.functional.linear(hidden, out.weight[rows], out.bias[rows])  # (N, F)
            w = rbf_env @ torch.cat([filt.weight[rows].t(), filt.bias[rows].unsqueeze(0)])  # (E, F)
            # index_select, not node[j]: its backward is an index_add (advanced indexing's is a sorting index_put)
            return torch.index_select(node, 0, j) * w

        x_s, x_vs = channel(0), channel(2)
        dv = unit.unsqueeze(-1) * x_vs.unsqueeze(1)  # (E, 3, F)
        if not v_zero:
            dv = dv + channel(1).unsqueeze(1) * torch.index_select(v, 0, j)
        n = s.shape[0]
        ds = scatter_sum(x_s, i, n)
        dv = scatter_sum(dv, i, n)
        if norm != 1.0:
            ds = ds / norm
            dv = dv / norm
        return s + ds, v + dv


class PaiNNUpdate(nn.Module):
    def __init__(self, hidden: int, norm_eps: float = 1.0):
        super().__init__()
        self.hidden = hidden
        self.norm_eps = float(norm_eps)
        self.U = nn.Linear(hidden, hidden, bias=False)
        self.V = nn.Linear(hidden, hidden, bias=False)
        self.mlp = nn.Sequential(nn.Linear(2 * hidden, hidden), nn.SiLU(), nn.Linear(hidden, 3 * hidden))

    def forward(self, s, v):
        F = self.hidden
        uv = self.U(v)  # (N, 3, F): Linear mixes the feature axis, the Cartesian one is untouched (equivariant)
        vv = self.V(v)
        a = self.mlp(torch.cat([s, safe_norm(vv, dim=1, eps=self.norm_eps)], dim=-1))
        a_vv, a_sv, a_ss = torch.split(a, F, dim=-1)
        dv = a_vv.unsqueeze(1) * uv
        ds = a_ss + a_sv * torch.sum(uv * vv, dim=1)
        return s + ds, v + dv


class GatedEquivariantBlock(nn.Module):
    """(s (N, F_in), v (N, 3, F_in)) -> (s (N, F_out), v (N, 3, F_out)) (Schütt et al. 2021, Fig. 3)."""

    def __init__(self, f_in: int, f_out: int, scalar_activation: bool, norm_eps: float = 1.0):
        super().__init__()
        self.f_out = f_out
        self.norm_eps = float(norm_eps)
        self.W1 = nn.Linear(f_in, f_in, bias=False)
        self.W2 = nn.Linear(f_in, f_out, bias=False)
        self.mlp = nn.Sequential(nn.Linear(2 * f_in, f_in), nn.SiLU(), nn.Linear(f_in, 2 * f_out))
        self.scalar_activation = scalar_activation

    def forward(self, s, v):
        v1 = self.W1(v)
        v2 = self.W2(v)
        x = self.mlp(torch.cat([s, safe_norm(v1, dim=1, eps=self.norm_eps)], dim=-1))
        s_out, gate = torch.split(x, self.f_out, dim=-1)
        if self.scalar_activation:
            s_out = nn.functional.silu(s_out)
        return s_out, gate.unsqueeze(1) * v2


class PaiNN(Student):
    """PaiNN student; conservative (forces = -dE/dx) or with a direct gated-equivariant force head."""

    arch = "painn"

    def __init__(
        self,
        hidden: int = 128,
        num_layers: int = 4,
        num_rbf: int = 128,
        cutoff: float = 12.0,
        direct_forces: bool = False,
        num_elements: int = ELEMENT_SLOTS,
        embedding_init: dict | None = None,
        avg_num_neighbors: float = 1.0,
        envelope_exponent: int = 5,
        vector_norm_eps: float = VECTOR_NORM_EPS,
        max_neighbors: int | None = None,
    ):
        super().__init__(cutoff=cutoff, direct_forces=direct_forces)
        if hidden < 2 or num_layers < 1:
            raise HessdistillError(f"PaiNN: need hidden >= 2 and num_layers >= 1 (got {hidden}, {num_layers})")
        if not vector_norm_eps > 0:
            raise HessdistillError(f"PaiNN: vector_norm_eps must be > 0, got {vector_norm_eps}")
        if avg_num_neighbors <= 0:
            raise HessdistillError(f"PaiNN: avg_num_neighbors must be > 0, got {avg_num_neighbors}")
        if max_neighbors is not None and (isinstance(max_neighbors, bool) or int(max_neighbors) < 1):
            raise HessdistillError(f"PaiNN: max_neighbors must be >= 1 or None, got {max_neighbors}")
        self.hparams = {
            "hidden": int(hidden),
            "num_layers": int(num_layers),
            "num_rbf": int(num_rbf),
            "cutoff": float(cutoff),
            "direct_forces": bool(direct_forces),
            "num_elements": int(num_elements),
            "embedding_init": plain_embedding_init(embedding_init),
            "avg_num_neighbors": float(avg_num_neighbors),
            "envelope_exponent": int(envelope_exponent),
            "vector_norm_eps": float(vector_norm_eps),
            "max_neighbors": None if max_neighbors is None else int(max_neighbors),
        }
        self.max_neighbors = self.hparams["max_neighbors"]
        self.hidden = int(hidden)
        self.avg_num_neighbors = float(avg_num_neighbors)
        self.embedding = ElementEmbedding(self.hidden, int(num_elements), self.hparams["embedding_init"])
        self.rbf = GaussianRBF(int(num_rbf), self.cutoff)
        self.envelope = PolynomialEnvelope(self.cutoff, int(envelope_exponent))
        self.messages = nn.ModuleList(PaiNNMessage(self.hidden, int(num_rbf)) for _ in range(num_layers))
        self.updates = nn.ModuleList(PaiNNUpdate(self.hidden, vector_norm_eps) for _ in range(num_layers))
        half = max(self.hidden // 2, 1)
        self.energy_head = nn.Sequential(nn.Linear(self.hidden, half), nn.SiLU(), nn.Linear(half, 1))
        if self.direct_forces:
            self.force_head = nn.ModuleList(
                [
                    GatedEquivariantBlock(self.hidden, half, True, vector_norm_eps),
                    GatedEquivariantBlock(half, 1, False, vector_norm_eps),
                ]
            )

    @property
    def feature_dim(self) -> int:
        return self.hidden

    def check_numbers(self, numbers) -> None:
        self.embedding.check(host_numbers(numbers), "PaiNN")

    def data_config(self) -> dict:
        cfg = super().data_config()
        if self.max_neighbors is not None:  # the kept edges depend on these (uncapped: the tag is unchanged)
            cfg |= {"cutoff": self.cutoff, "max_neighbors": self.max_neighbors}
        return cfg

    def graph_extras(self, data) -> dict:
        """With ``max_neighbors``: the indices of the structure's edges kept by the cap (``painn_edge``)."""
        if self.max_neighbors is None:
            return {}
        from ..core.graphs import collate

        sel = capped_edges(collate([data]), self.cutoff, self.max_neighbors, who="PaiNN")[0]
        return {"painn_edge": (sel, data.edge_index.shape[1])}

    def atomwise(self, batch) -> AtomwiseOutput:
        i, j = batch.edge_index
        vec = edge_vectors(batch)
        if self.max_neighbors is not None:
            if self.prepared(batch):
                sel = batch.painn_edge
            else:
                sel = capped_edges(batch, self.cutoff, self.max_neighbors, who="PaiNN")[0]
            i, j, vec = i[sel], j[sel], vec[sel]
        r = torch.sqrt(torch.sum(vec * vec, dim=-1))
        unit = vec / r.unsqueeze(-1)
        fcut = self.envelope(r).unsqueeze(-1)
        rbf_env = torch.cat([self.rbf(r) * fcut, fcut], dim=-1)  # (E, R + 1), see PaiNNMessage.forward
        s = self.embedding(batch.z)
        v = torch.zeros(s.shape[0], 3, self.hidden, dtype=s.dtype, device=s.device)  # (N, 3, F)
        for layer, (msg, upd) in enumerate(zip(self.messages, self.updates)):
            s, v = msg(s, v, i, j, rbf_env, unit, self.avg_num_neighbors, v_zero=layer == 0)
            s, v = upd(s, v)
        energy = self.energy_head(s).squeeze(-1)
        forces = None
        if self.direct_forces:
            fs, fv = s, v
            for block in self.force_head:
                fs, fv = block(fs, fv)
            forces = fv.squeeze(-1)
        return AtomwiseOutput(energy=energy, features=s, forces=forces)
