"""GemNet-T / GemNet-dT (Gasteiger, Becker & Günnemann, NeurIPS 2021), triplet ("T") variant.

Re-implemented from the paper's description of the architecture (directional message passing on
directed edges with two-hop triplet interactions; no quadruplets).  Hyper-parameter names and the layer
layout follow the published "small" GemNet-dT used as the student in the Hessian-distillation paper, so the
parameter count matches the official one exactly (see below).

Notation.  An edge e = (i, j) of the batch's full neighbour list has vector r_e = x_j - x_i + shift,
length d_e and unit vector u_e; its embedding m_e (``emb_size_edge``) is the directed message of the pair.
Atom embeddings h_i (``emb_size_atom``).  ``rbf(d)`` = Gaussians on [0, cutoff] (``num_radial``, width =
spacing) times the C^2 polynomial envelope (p = 5) of :mod:`.layers`; every edge contribution to an atom
is multiplied by a linear function of it, so all outputs are C^2 when a pair crosses the cutoff.

Edge (i, j) is aggregated onto atom i, so m_(i,j) plays the paper's message j -> i.  Triplets: ordered
pairs of *distinct* edges (e_in = (j, k), e_out = (j, i)) that start at the same atom j, i.e. the paper's
message k -> j feeding the pair {i, j} with k != i; in a periodic cell k may be another image of i (same
atom index, other shift): only the identical edge (same index *and* shift) is excluded.  The triplet sum is
written onto e_out = (j, i) (message i -> j) with one up-projection and onto its reverse (i, j) (the
paper's m_ji, path k -> j -> i) with another, as in the official "T" interaction.  Angle at j (the bond
angle k-j-i): cos a = u_in . u_out, used directly (no arccos, no clamp).  Circular basis of a triplet:
cbf_{l,r} = Y_l^0(cos a) * rbf_r(d_out), Y_l^0 = sqrt((2l+1)/4pi) P_l (Legendre, l < num_spherical).
The sum over an edge's triplets is a batched matmul on a zero-padded (E, K_max) table (K_max = largest
number of triplets of one edge = max degree - 1), built with vectorised index ops (no Python loops).

Graph work.  The kept edges, reverse edges and triplets depend only on a structure's topology (and, through
``max_neighbors``, on its positions when the graph is built, like the neighbour list itself):
:meth:`GemNet.graph_extras` computes them once per structure on the CPU when the data is built for this
student (``atoms_to_data(..., student=model)``), and the forward then only gathers them (no host-device
synchronisation; K_max comes as a Python int with the batch).  For other batches the forward computes them itself
(:meth:`GemNet.graph`, with the host syncs of data-dependent sizes); both give the same triplets in the
same order, hence bitwise the same results.

Forward (ScaledSiLU act = SiLU/0.6; all dense layers without bias; inv = 1/sqrt(2)):

    embedding:  h_i = emb(Z_i);  m_e = act(W [h_i, h_j, rbf_e])
    shared:     rbf3 = W rbf;  rbf_h = W rbf;  rbf_out = W rbf;  cbf3 = sum_r rbf_r(d_out) W[l, r, :]
    block b:    x_skip = act(W m)
                (triplet)  x = act(W m) * (W rbf3) * s1 ; x = act(W_down x)               (E, trip)
                           t[e_out, l, :] = sum_{e_in} Y_l(cos a) x[e_in]                 (E, L, trip)
                           y[e] = s2 * bilinear(cbf3[e] (cbf x L), t[e] (L x trip)) -> (E, bil_trip)
                           x3 = (act(W_ca y) + act(W_ac y)[reverse edge]) * inv
                m' = residual layers((x_skip + x3) * inv) ; m = (m + m') * inv ; after-skip residuals
                h = (h + AtomUpdate(m, rbf_h)) * inv,
                AtomUpdate = MLP(s3 * sum_{e=(i,.)} m_e * (W rbf_h))  (dense + num_atom residual layers)
                m = (m + residual(act(W [h_i, h_j, m_e]))) * inv
    output b (num_blocks + 1 of them, after the embedding and after each block):
                E_i += W_E MLP(s4 * sum_e m_e * (W rbf_out)),
                direct forces: f_e += W_F (s5 * MLP(m_e) * (W rbf_out))        (scalar per edge)
    energy per atom = sum of the output blocks' E_i;  direct force on atom i = sum_{e=(i,j)} f_e u_e.

``features`` (for n2n) = the final atom embeddings h (``emb_size_atom`` wide).

Scale factors.  The official model multiplies the outputs of some Hadamard products and sums (s1..s5
above; 3 per interaction block, 1 per output block plus 1 with direct forces) by ``ScaleFactor``
constants fitted once on data.  Here they are non-trainable ``nn.Parameter`` scalars (like fairchem's,
so they appear in ``parameters()`` and in the state dict) with fixed defaults: 1/sqrt(``avg_num_neighbors``)
for the sums over an atom's edges (s3, s4) and over an edge's triplets (s2), 1 for the Hadamard products
(s1, s5).  :meth:`GemNet.fit_scale_factors` optionally refits them on a batch (variance matching, as in the
official code; training does so on its first structures, :meth:`GemNet.prepare_for_training`); refitted values
travel in the state dict / checkpoint.

Parameter counts (default "small" config, num_elements 83), ``sum(p.numel() for p in model.parameters())``:

    GemNet-dT (direct_forces=True):  672,918   (= official)   trainable 672,896 + 22 fixed scale factors
    GemNet-T  (direct_forces=False): 565,073   (= official)   trainable 565,056 + 17 fixed scale factors

Breakdown: atom embedding 83x64 = 5,312; edge embedding (2x64+6)x64 = 8,576; shared rbf/cbf projections
3x96 + 7x6x16 = 960; per interaction block 110,592 (x 4) = dense_ca 4,096 + triplet 48,128 (64x64, 16x64,
32x16x64 bilinear, 64x32, 2x 64x64) + 2 residual layers 16,384 + atom update 21,504 + concat 12,288 +
residual 8,192; per output block 21,568 energy (+ 21,568 direct force head), x 5.

Atomic numbers: the plain embedding has ``num_elements`` rows for Z = 1..num_elements (row Z-1, as in the
official code); other Z raise :class:`HessdistillError` (:meth:`GemNet.check_numbers`, on the host).
``embedding_init`` (teacher table) replaces it by :class:`.layers.ElementEmbedding` (frozen table + trainable
Linear(F_t -> emb_size_atom), with bias).

``max_neighbors``: after restricting the batch's neighbour list to ``cutoff``, each atom keeps its
``max_neighbors`` nearest neighbours, plus any tied with the last one (distance^2 within a relative 1e-6,
so symmetric crystals keep whole shells and the result does not depend on atom order); the kept set is then
made symmetric (an edge is kept if it or its reverse was kept), because GemNet needs every edge's reverse
(:func:`.layers.capped_edges`, shared with PaiNN's ``max_neighbors``).  Like any neighbour cap this is
discontinuous in the geometry when it is active (a neighbour changing rank at the boundary);
``max_neighbors=None`` disables it.  For molecules at 5 Å it rarely matters.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..core.errors import HessdistillError
from ..core.graphs import edge_vectors
from .base import AtomwiseOutput, Student, element_names, host_numbers
from .layers import (  # noqa: F401
    ElementEmbedding,
    GaussianRBF,
    PolynomialEnvelope,
    capped_edges,
    nearest_mask,
    plain_embedding_init,
    reverse_edges,
    scatter_sum,
)

INV_SQRT_2 = 1.0 / math.sqrt(2.0)


# ----------------------------------------------------------------------------- small building blocks
def _he_orthogonal_(weight: torch.Tensor) -> torch.Tensor:
    """Orthogonal init, rows standardised (zero mean, unit variance over fan-in), scaled by 1/sqrt(fan_in).

    ``weight`` is (out, fan_in...) for 2D; for the 3D bilinear weights the fan-in is all but the last axis.
    """
    if weight.is_meta:  # shape-only construction (e.g. counting parameters)
        return weight
    with torch.no_grad():
        if weight.ndim == 2:
            mat = weight
            fan_in = weight.shape[1]
        else:
            mat = weight.reshape(-1, weight.shape[-1]).T  # (out, fan_in)
            fan_in = mat.shape[1]
        w = torch.empty(mat.shape, dtype=torch.float64)
        nn.init.orthogonal_(w)
        mean = w.mean(dim=1, keepdim=True)
        var = w.var(dim=1, keepdim=True, unbiased=False) if w.shape[1] > 1 else torch.ones_like(mean)
        w = (w - mean) / torch.sqrt(var + 1e-12) / math.sqrt(fan_in)
        if weight.ndim == 2:
            weight.copy_(w)
        else:
            weight.copy_(w.T.reshape(weight.shape))
    return weight


class ScaledSiLU(nn.Module):
    def forward(self, x):
        return nn.functional.silu(x) * (1.0 / 0.6)


class Dense(nn.Module):
    """Linear map without bias, He-orthogonal init, optional ScaledSiLU."""

    def __init__(self, n_in: int, n_out: int, activation: bool = True):
        super().__init__()
        self.linear = nn.Linear(n_in, n_out, bias=False)
        _he_orthogonal_(self.linear.weight)
        self.act = ScaledSiLU() if activation else nn.Identity()

    def forward(self, x):
        return self.act(self.linear(x))


class ResidualLayer(nn.Module):
    """x -> (x + act(W2 act(W1 x))) / sqrt(2)."""

    def __init__(self, units: int):
        super().__init__()
        self.mlp = nn.Sequential(Dense(units, units), Dense(units, units))

    def forward(self, x):
        return (x + self.mlp(x)) * INV_SQRT_2


class ScaleFactor(nn.Module):
    """A fixed scalar multiplier (non-trainable parameter, as in the official code); optionally refitted."""

    def __init__(self, value: float):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(float(value)), requires_grad=False)
        self.fitting = False

    def forward(self, x, ref):
        if self.fitting:
            with torch.no_grad():
                ms_x = torch.mean(x.detach() ** 2)
                ms_ref = torch.mean(ref.detach() ** 2)
                if float(ms_x) > 0 and float(ms_ref) > 0:
                    self.scale.fill_(float(torch.sqrt(ms_ref / ms_x)))
        return x * self.scale.to(x.dtype)


def _mlp(n_in: int, units: int, n_residual: int) -> nn.Sequential:
    return nn.Sequential(Dense(n_in, units), *[ResidualLayer(units) for _ in range(n_residual)])


class AtomUpdate(nn.Module):
    """h-update from the edges of each atom: MLP(s * sum_{e=(i,.)} m_e * (W rbf_e))."""

    def __init__(self, emb_atom: int, emb_edge: int, emb_rbf: int, n_hidden: int, scale: float):
        super().__init__()
        self.dense_rbf = Dense(emb_rbf, emb_edge, activation=False)
        self.scale_sum = ScaleFactor(scale)
        self.layers = _mlp(emb_edge, emb_atom, n_hidden)

    def aggregate(self, m, rbf, idx, n_atoms):
        x = scatter_sum(m * self.dense_rbf(rbf), idx, n_atoms)
        return self.scale_sum(x, m)

    def forward(self, m, rbf, idx, n_atoms):
        return self.layers(self.aggregate(m, rbf, idx, n_atoms))


class OutputBlock(AtomUpdate):
    """Per-atom energy (and, for dT, a scalar force magnitude per edge)."""

    def __init__(self, emb_atom, emb_edge, emb_rbf, n_hidden, direct_forces: bool, scale: float):
        super().__init__(emb_atom, emb_edge, emb_rbf, n_hidden, scale)
        self.out_energy = Dense(emb_atom, 1, activation=False)
        self.direct_forces = direct_forces
        if direct_forces:
            self.scale_rbf_F = ScaleFactor(1.0)
            self.seq_forces = _mlp(emb_edge, emb_edge, n_hidden)
            self.out_forces = Dense(emb_edge, 1, activation=False)
            self.dense_rbf_F = Dense(emb_rbf, emb_edge, activation=False)

    def forward(self, m, rbf, idx, n_atoms):
        e = self.out_energy(self.layers(self.aggregate(m, rbf, idx, n_atoms))).squeeze(-1)
        if not self.direct_forces:
            return e, None
        x_f = self.seq_forces(m)
        x_f = self.scale_rbf_F(x_f * self.dense_rbf_F(rbf), x_f)
        return e, self.out_forces(x_f).squeeze(-1)


class TripletInteraction(nn.Module):
    def __init__(self, emb_edge, emb_trip, emb_bil, emb_rbf, emb_cbf, scale_sum: float):
        super().__init__()
        self.dense_ba = Dense(emb_edge, emb_edge)
        self.mlp_rbf = Dense(emb_rbf, emb_edge, activation=False)
        self.scale_rbf = ScaleFactor(1.0)
        # bilinear weight (trip, cbf, bil): y_o = sum_{t,c} W[t, c, o] (sum_l cbf[c, l] t[l, t])
        self.bilinear = nn.Parameter(torch.empty(emb_trip, emb_cbf, emb_bil))
        _he_orthogonal_(self.bilinear)
        self.scale_cbf_sum = ScaleFactor(scale_sum)
        self.down_projection = Dense(emb_edge, emb_trip)
        self.up_projection_ca = Dense(emb_bil, emb_edge)
        self.up_projection_ac = Dense(emb_bil, emb_edge)

    def forward(self, m, rbf3, cbf3, sph_pad, in_pad, id_swap):
        x = self.dense_ba(m)
        x = self.scale_rbf(x * self.mlp_rbf(rbf3), x)
        x = self.down_projection(x)  # (E, trip)
        n_edges = m.shape[0]
        # input-edge embeddings of each output edge's triplets, zero-padded to (E, K_max, trip)
        x_in = torch.cat([x, x.new_zeros(1, x.shape[1])])[in_pad]
        t = torch.bmm(sph_pad, x_in)  # (E, L, trip): sum over triplets of Y_l(cos a) x[e_in]
        rt = torch.bmm(cbf3, t)  # (E, cbf, trip)
        w = self.bilinear.permute(1, 0, 2).reshape(-1, self.bilinear.shape[-1])  # (cbf*trip, bil)
        y = rt.reshape(n_edges, w.shape[0]) @ w  # (E, bil)
        y = self.scale_cbf_sum(y, x)
        x_ca = self.up_projection_ca(y)
        x_ac = self.up_projection_ac(y)[id_swap]
        return (x_ca + x_ac) * INV_SQRT_2


class InteractionBlock(nn.Module):
    def __init__(
        self, emb_atom, emb_edge, emb_trip, emb_rbf, emb_cbf, emb_bil, n_before, n_after, n_concat, n_atom, scale_sum
    ):
        super().__init__()
        self.dense_ca = Dense(emb_edge, emb_edge)
        self.trip_interaction = TripletInteraction(emb_edge, emb_trip, emb_bil, emb_rbf, emb_cbf, scale_sum)
        self.layers_before_skip = nn.Sequential(*[ResidualLayer(emb_edge) for _ in range(n_before)])
        self.layers_after_skip = nn.Sequential(*[ResidualLayer(emb_edge) for _ in range(n_after)])
        self.atom_update = AtomUpdate(emb_atom, emb_edge, emb_rbf, n_atom, scale_sum)
        self.concat_layer = Dense(2 * emb_atom + emb_edge, emb_edge)
        self.residual_m = nn.Sequential(*[ResidualLayer(emb_edge) for _ in range(n_concat)])

    def forward(self, h, m, rbf3, cbf3, sph_pad, in_pad, rbf_h, idx_i, idx_j, id_swap):
        x = (self.dense_ca(m) + self.trip_interaction(m, rbf3, cbf3, sph_pad, in_pad, id_swap)) * INV_SQRT_2
        x = self.layers_before_skip(x)
        m = (m + x) * INV_SQRT_2
        m = self.layers_after_skip(m)
        h = (h + self.atom_update(m, rbf_h, idx_i, h.shape[0])) * INV_SQRT_2
        m2 = self.residual_m(self.concat_layer(torch.cat([h[idx_i], h[idx_j], m], dim=-1)))
        m = (m + m2) * INV_SQRT_2
        return h, m


# ----------------------------------------------------------------------------- graph helpers
def legendre_sph(x: torch.Tensor, num_spherical: int) -> torch.Tensor:
    """(T,) cos a -> (T, L) Y_l^0 = sqrt((2l+1)/4pi) P_l(x), l = 0..L-1 (polynomials: smooth, no arccos)."""
    ps = [torch.ones_like(x)]
    if num_spherical > 1:
        ps.append(x)
    for l in range(1, num_spherical - 1):
        ps.append(((2 * l + 1) * x * ps[l] - l * ps[l - 1]) / (l + 1))
    return torch.stack([p * math.sqrt((2 * l + 1) / (4 * math.pi)) for l, p in enumerate(ps)], dim=-1)


def triplets(idx_i: torch.Tensor, n_atoms: int):
    """All ordered pairs (e_in, e_out) of distinct edges with the same first atom (vectorised, deterministic).

    Returns ``id_in``, ``id_out`` (T,), sorted by ``id_out`` (then by the edge order of ``e_in``), and
    ``slot`` (T,): the position of each triplet among those of its output edge (0..K_max-1).
    """
    device = idx_i.device
    n_edges = idx_i.shape[0]
    with torch.no_grad():
        order = torch.argsort(idx_i, stable=True)
        deg = torch.bincount(idx_i, minlength=n_atoms)
        ptr = torch.cumsum(deg, 0) - deg
        reps = deg[idx_i]  # candidates per output edge
        id_out = torch.repeat_interleave(torch.arange(n_edges, device=device), reps)
        start = torch.repeat_interleave(torch.cumsum(reps, 0) - reps, reps)
        local = torch.arange(id_out.shape[0], device=device) - start
        id_in = order[ptr[idx_i[id_out]] + local]
        id_in = id_in[id_in != id_out]
        id_out, slot = triplet_slots(reps - 1, id_in.shape[0])  # every output edge loses exactly itself
    return id_in, id_out, slot


def triplet_slots(counts: torch.Tensor, n_trip: int):
    """``id_out`` and ``slot`` (T,) of triplets sorted by output edge, from the triplet count of every edge.

    ``n_trip`` = counts.sum(), given by the caller (a shape known on the host), so nothing synchronises.
    """
    device = counts.device
    id_out = torch.repeat_interleave(torch.arange(counts.shape[0], device=device), counts, output_size=n_trip)
    first = torch.cumsum(counts, 0) - counts
    return id_out, torch.arange(n_trip, device=device) - first[id_out]


def max_slots(slot: torch.Tensor) -> int:
    """K_max, the width of the padded triplet tables (>= 1); a host sync on a device tensor."""
    return int(slot.max()) + 1 if slot.numel() else 1


def padded_index(values: torch.Tensor, id_out: torch.Tensor, slot: torch.Tensor, n_edges: int, kmax: int, fill: int):
    """(E, K_max) table: ``values`` of the triplets of each output edge, ``fill`` in unused slots."""
    table = torch.full((n_edges * kmax,), fill, dtype=torch.long, device=values.device)
    return table.scatter_(0, id_out * kmax + slot, values).view(n_edges, kmax)


def topology(batch, cutoff: float, max_neighbors: int | None):
    """GemNet's graph of a batch (``edge_index``, ``edge_shift``, ``pos``, ``batch``, ``natoms``, ``cell``):
    the edges kept (within cutoff, the ``max_neighbors`` nearest, symmetric), their reverse, and the triplets.

    Returns ``sel, idx_i, idx_j, swap, id_in, id_out, slot``.  Weights play no part: the runtime of exported
    students calls this too.
    """
    n_atoms = batch.pos.shape[0]
    with torch.no_grad():
        sel, idx_i, idx_j, swap = capped_edges(batch, cutoff, max_neighbors, who="GemNet")
        id_in, id_out, slot = triplets(idx_i, n_atoms)
    return sel, idx_i, idx_j, swap, id_in, id_out, slot


def topology_extras(batch, cutoff: float, max_neighbors: int | None, *, offsets: bool = False) -> dict:
    """The precomputed extras of a GemNet forward (see ``GemNet.atomwise``) for ``batch``.

    ``offsets=True``: in the ``{key: (tensor, offset)}`` form of ``Student.graph_extras`` (one structure);
    otherwise plain ``{key: tensor}`` with ``gemnet_kmax`` an int (a whole batch at once).
    """
    sel, _, _, swap, id_in, id_out, slot = topology(batch, cutoff, max_neighbors)
    n_kept = sel.shape[0]
    count = torch.bincount(id_out, minlength=n_kept)
    if not offsets:
        return {
            "gemnet_edge": sel,
            "gemnet_swap": swap,
            "gemnet_trip_in": id_in,
            "gemnet_trip_count": count,
            "gemnet_kmax": max_slots(slot),
        }
    return {
        "gemnet_edge": (sel, batch.edge_index.shape[1]),
        "gemnet_swap": (swap, n_kept),
        "gemnet_trip_in": (id_in, n_kept),
        "gemnet_trip_count": (count, 0),
        "gemnet_kmax": max_slots(slot),
    }


# ----------------------------------------------------------------------------- the model
class GemNet(Student):
    """GemNet-T (conservative, ``direct_forces=False``) or GemNet-dT (direct forces, the default)."""

    arch = "gemnet"

    def __init__(
        self,
        num_blocks: int = 4,
        emb_size_atom: int = 64,
        emb_size_edge: int = 64,
        emb_size_trip: int = 32,
        emb_size_rbf: int = 16,
        emb_size_cbf: int = 16,
        emb_size_bil_trip: int = 64,
        num_spherical: int = 7,
        num_radial: int = 6,
        num_before_skip: int = 1,
        num_after_skip: int = 1,
        num_concat: int = 1,
        num_atom: int = 2,
        cutoff: float = 5.0,
        max_neighbors: int | None = 50,
        num_elements: int = 83,
        direct_forces: bool = True,
        envelope_exponent: int = 5,
        avg_num_neighbors: float = 16.0,
        embedding_init: dict | None = None,
    ):
        super().__init__(cutoff=cutoff, direct_forces=direct_forces)
        if num_blocks < 1 or num_radial < 2 or num_spherical < 1:
            raise HessdistillError(
                f"GemNet: need num_blocks >= 1, num_radial >= 2, num_spherical >= 1 "
                f"(got {num_blocks}, {num_radial}, {num_spherical})"
            )
        if max_neighbors is not None and int(max_neighbors) < 1:
            raise HessdistillError(f"GemNet: max_neighbors must be >= 1 or None, got {max_neighbors}")
        if avg_num_neighbors <= 0:
            raise HessdistillError(f"GemNet: avg_num_neighbors must be > 0, got {avg_num_neighbors}")
        self.hparams = {
            "num_blocks": int(num_blocks),
            "emb_size_atom": int(emb_size_atom),
            "emb_size_edge": int(emb_size_edge),
            "emb_size_trip": int(emb_size_trip),
            "emb_size_rbf": int(emb_size_rbf),
            "emb_size_cbf": int(emb_size_cbf),
            "emb_size_bil_trip": int(emb_size_bil_trip),
            "num_spherical": int(num_spherical),
            "num_radial": int(num_radial),
            "num_before_skip": int(num_before_skip),
            "num_after_skip": int(num_after_skip),
            "num_concat": int(num_concat),
            "num_atom": int(num_atom),
            "cutoff": float(cutoff),
            "max_neighbors": None if max_neighbors is None else int(max_neighbors),
            "num_elements": int(num_elements),
            "direct_forces": bool(direct_forces),
            "envelope_exponent": int(envelope_exponent),
            "avg_num_neighbors": float(avg_num_neighbors),
            "embedding_init": plain_embedding_init(embedding_init),
        }
        hp = self.hparams
        self.emb_size_atom = hp["emb_size_atom"]
        self.num_spherical = hp["num_spherical"]
        self.max_neighbors = hp["max_neighbors"]
        self.num_elements = hp["num_elements"]
        s_sum = 1.0 / math.sqrt(hp["avg_num_neighbors"])

        self.rbf = GaussianRBF(hp["num_radial"], self.cutoff)
        self.envelope = PolynomialEnvelope(self.cutoff, hp["envelope_exponent"])
        # shared projections of the bases
        self.mlp_rbf3 = Dense(hp["num_radial"], hp["emb_size_rbf"], activation=False)
        self.mlp_cbf3 = nn.Parameter(torch.empty(hp["num_spherical"], hp["num_radial"], hp["emb_size_cbf"]))
        _he_orthogonal_(self.mlp_cbf3)
        self.mlp_rbf_h = Dense(hp["num_radial"], hp["emb_size_rbf"], activation=False)
        self.mlp_rbf_out = Dense(hp["num_radial"], hp["emb_size_rbf"], activation=False)
        # embeddings
        if hp["embedding_init"] is None:
            self.atom_emb = nn.Embedding(self.num_elements, self.emb_size_atom)
            nn.init.uniform_(self.atom_emb.weight, -math.sqrt(3.0), math.sqrt(3.0))
        else:
            self.atom_emb = ElementEmbedding(self.emb_size_atom, embedding_init=hp["embedding_init"])
        self.edge_emb = Dense(2 * hp["emb_size_atom"] + hp["num_radial"], hp["emb_size_edge"])
        self.int_blocks = nn.ModuleList(
            InteractionBlock(
                hp["emb_size_atom"],
                hp["emb_size_edge"],
                hp["emb_size_trip"],
                hp["emb_size_rbf"],
                hp["emb_size_cbf"],
                hp["emb_size_bil_trip"],
                hp["num_before_skip"],
                hp["num_after_skip"],
                hp["num_concat"],
                hp["num_atom"],
                s_sum,
            )
            for _ in range(hp["num_blocks"])
        )
        self.out_blocks = nn.ModuleList(
            OutputBlock(
                hp["emb_size_atom"], hp["emb_size_edge"], hp["emb_size_rbf"], hp["num_atom"], self.direct_forces, s_sum
            )
            for _ in range(hp["num_blocks"] + 1)
        )

    @property
    def feature_dim(self) -> int:
        return self.emb_size_atom

    # ------------------------------------------------------------------ data preparation (host side)
    def check_numbers(self, numbers) -> None:
        z = host_numbers(numbers)
        if self.hparams["embedding_init"] is not None:
            self.atom_emb.check(z, "GemNet")
            return
        bad = z[(z < 1) | (z > self.num_elements)]
        if bad.size:
            raise HessdistillError(
                f"GemNet: element(s) {element_names(bad)} outside the embedding table (Z = 1..{self.num_elements})"
                f"\n  fix: build the student with num_elements >= {int(bad.max())}"
            )

    def data_config(self) -> dict:
        return {**super().data_config(), "cutoff": self.cutoff, "max_neighbors": self.max_neighbors}

    def graph_extras(self, data) -> dict:
        """The output of :meth:`graph` for one structure: kept edges, reverse edges, triplets (input edges and
        the count of each output edge's triplets) and K_max (see :meth:`atomwise` for their use)."""
        from ..core.graphs import collate

        return topology_extras(collate([data]), self.cutoff, self.max_neighbors, offsets=True)

    # ------------------------------------------------------------------ graph
    def graph(self, batch):
        """Edges kept (within cutoff, max_neighbors, symmetric), their reverse, and the triplets."""
        return topology(batch, self.cutoff, self.max_neighbors)

    # ------------------------------------------------------------------ forward
    def atomwise(self, batch) -> AtomwiseOutput:
        """Atom energies (and direct forces).  The batch's graph quantities are the precomputed ones of
        :meth:`graph_extras` when it was prepared for this student (device ops only, no host sync), otherwise
        :meth:`graph` computes them (with host syncs: data-dependent sizes)."""
        z = batch.z
        if self.prepared(batch):
            sel, swap, id_in = batch.gemnet_edge, batch.gemnet_swap, batch.gemnet_trip_in
            idx_i, idx_j = batch.edge_index[:, sel]
            id_out, slot = triplet_slots(batch.gemnet_trip_count, id_in.shape[0])
            kmax = batch.gemnet_kmax
        else:
            sel, idx_i, idx_j, swap, id_in, id_out, slot = self.graph(batch)
            kmax = max_slots(slot)
        n_atoms = batch.pos.shape[0]
        n_edges = idx_i.shape[0]
        n_trip = id_in.shape[0]
        in_pad = padded_index(id_in, id_out, slot, n_edges, kmax, fill=n_edges)  # (E, K_max), E = zero row
        trip_pad = padded_index(torch.arange(n_trip, device=id_in.device), id_out, slot, n_edges, kmax, fill=n_trip)
        vec = edge_vectors(batch)[sel]
        d = torch.sqrt(torch.sum(vec * vec, dim=-1))  # edges have d > 0 (no self pairs without shift)
        unit = vec / d.unsqueeze(-1)
        rbf = self.rbf(d) * self.envelope(d).unsqueeze(-1)  # (E, R)
        cos = torch.sum(unit[id_in] * unit[id_out], dim=-1)
        sph = legendre_sph(cos, self.num_spherical)  # (T, L)
        sph_pad = torch.cat([sph, sph.new_zeros(1, sph.shape[1])])[trip_pad].transpose(1, 2)  # (E, L, K_max)
        dtype = vec.dtype
        # cbf3[e] (cbf, L) = sum_r rbf_r(d_e) W[l, r, :]  (radial part of the circular basis, on the output edge)
        cbf3 = torch.einsum("er,lrc->ecl", rbf, self.mlp_cbf3)

        if self.hparams["embedding_init"] is None:
            h = self.atom_emb(z - 1)
        else:
            h = self.atom_emb(z).to(dtype)
        m = self.edge_emb(torch.cat([h[idx_i], h[idx_j], rbf], dim=-1))
        rbf3 = self.mlp_rbf3(rbf)
        rbf_h = self.mlp_rbf_h(rbf)
        rbf_out = self.mlp_rbf_out(rbf)

        e_atom, f_edge = self.out_blocks[0](m, rbf_out, idx_i, n_atoms)
        for block, out in zip(self.int_blocks, self.out_blocks[1:]):
            h, m = block(h, m, rbf3, cbf3, sph_pad, in_pad, rbf_h, idx_i, idx_j, swap)
            e, f = out(m, rbf_out, idx_i, n_atoms)
            e_atom = e_atom + e
            if f is not None:
                f_edge = f_edge + f
        forces = None
        if self.direct_forces:
            forces = scatter_sum(f_edge.unsqueeze(-1) * unit, idx_i, n_atoms)
        return AtomwiseOutput(energy=e_atom, features=h, forces=forces)

    # ------------------------------------------------------------------ scale factors
    def prepare_for_training(self, batch) -> None:
        """Fit the scale factors on ``batch`` (:meth:`fit_scale_factors`); they travel in the state dict, hence in
        checkpoints."""
        self.fit_scale_factors(batch)

    @torch.no_grad()
    def fit_scale_factors(self, batch) -> dict[str, float]:
        """Refit every scale factor on ``batch`` so each scaled output has the mean square of its reference.

        One forward pass; factors are set in forward order, so each sees the already-fitted upstream ones.
        Returns {name: value}.
        """
        factors = {n: mod for n, mod in self.named_modules() if isinstance(mod, ScaleFactor)}
        self.check_batch(batch)
        try:
            for mod in factors.values():
                mod.fitting = True
            self.atomwise(batch)
        finally:
            for mod in factors.values():
                mod.fitting = False
        return {n: float(mod.scale) for n, mod in factors.items()}
