"""Loss terms of Hessian distillation (paper defaults) and the baselines.

    L = λ_E·L_E + λ_F·L_F + λ_H·L_H + λ_Eg·L_Egrad + λ_TF·L_TF + λ_n2n·L_n2n

- L_E: per-atom energy MAE, mean over structures of |E_S - E_ref| / N_m (λ_E = 5);
- L_F: force l2mae, mean over atoms of ||F_S - F_ref||₂ (λ_F = 100);
- L_H: Hessian term.  With cotangents V_k (s_max, ΣN, 3) from :class:`~hessdistill.training.data.HessianCollate`
  the student's rows are G_k = V_k·dF_S/dx (one VJP per slot for the whole batch, ``create_graph=True``), and
  L_H = Σ_m (1/s_m) Σ_{k<s_m} Σ_{b∈m} ||G_k[b] - J_T,k[b]||₂ / ΣN: an l2mae over row blocks, as the paper
  (λ_H = 400 SPICE/MD22, 200 MPtrj).  For random projections (``squared=True``) the squared error is used,
  whose expectation over Gaussian/Rademacher probes is the squared Frobenius error ||J_S - J_T||²_F;
- L_Egrad: for direct-force students, mean over atoms of ||-dE_S/dx - F_ref||₂ (λ_Eg = 5 where used);
- L_TF: teacher-forces l2mae ||F_S - F_T||₂ (λ_TF = 100 in the teacher-forces baseline);
- L_n2n: squared error between a linear projection of the student's final node features and the teacher's,
  summed over the feature dimension and averaged over atoms (``n2n_reduction="sum_features"``, the official
  form: fairchem's MSE on an atom-level target; λ = 1000 was set for it), or averaged over features too
  (``"mean"``: feature_dim times weaker at the same λ).

Outlier guard (``outlier_threshold``, off by default): as in the official Hessian loss, a structure whose
sampled teacher Hessian rows have an entry of magnitude above the threshold (1e4 eV/Å² in the release) has its
Hessian term multiplied by ``outlier_weight`` (1e-8); see :func:`hessian_outliers`.

:func:`student_jacobian_rows` is exposed on its own so tests can compare it with a brute-force Hessian.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class LossWeights:
    energy: float = 5.0
    forces: float = 100.0
    hessian: float = 400.0
    energy_grad: float = 0.0
    teacher_forces: float = 0.0
    n2n: float = 0.0
    extra: dict = field(default_factory=dict)


def energy_mae_per_atom(e_pred, e_ref, natoms):
    return ((e_pred - e_ref).abs() / natoms.to(e_pred.dtype)).mean()


def force_l2mae(f_pred, f_ref):
    return torch.linalg.vector_norm(f_pred - f_ref, dim=-1).mean()


def student_jacobian_rows(forces, pos, cotangents, *, create_graph=True, method="loop"):
    """G[k] = cotangents[k] · dF/dx, shape (s, ΣN, 3): one VJP per slot for the whole batch."""
    if method == "batched":
        (g,) = torch.autograd.grad(
            forces, pos, grad_outputs=cotangents, create_graph=create_graph, retain_graph=True, is_grads_batched=True
        )
        return g
    rows = []
    for k in range(cotangents.shape[0]):
        (g,) = torch.autograd.grad(
            forces, pos, grad_outputs=cotangents[k], create_graph=create_graph, retain_graph=True
        )
        rows.append(g)
    return torch.stack(rows)


def hessian_outliers(batch, threshold: float) -> torch.Tensor:
    """(M,) bool: structures whose sampled teacher Hessian rows have an entry with |H| > ``threshold`` (eV/Å²).

    For row sampling the rows are ``hess_target`` (J_T = -H on the structure's atoms) where ``hess_weight`` > 0;
    for random projections (whose targets are vᵀJ_T, not entries) the collate's ``hess_absmax`` (the max over
    the structure's whole stored Hessian) is used.  Device ops only: no host sync.
    """
    absmax = getattr(batch, "hess_absmax", None)
    if absmax is None:
        used = (batch.hess_weight > 0).to(batch.hess_target.dtype)  # (s, ΣN): sampled slots of each structure
        per_atom = (batch.hess_target.abs().amax(-1) * used).amax(0)  # (ΣN,)
        m = int(batch.natoms.shape[0])
        absmax = per_atom.new_zeros(m).scatter_reduce(0, batch.batch, per_atom, reduce="amax", include_self=True)
    return absmax > threshold


def hessian_loss(
    forces, batch, *, squared=False, method="loop", outlier_threshold=None, outlier_weight=1e-8, outliers=None
):
    """The Hessian term and the per-(slot, structure) errors (s_max, M) used for error-weighted sampling.

    ``outlier_threshold`` (eV/Å², None = off): the term of every structure flagged by :func:`hessian_outliers`
    is multiplied by ``outlier_weight`` (the official loss's guard against teacher Hessian outliers); a caller
    that has the flags already passes them as ``outliers``.
    """
    g = student_jacobian_rows(forces, batch.pos, batch.hess_cot, method=method)
    diff = g - batch.hess_target
    err = (diff * diff).sum(-1) if squared else torch.linalg.vector_norm(diff, dim=-1)  # (s, ΣN)
    n_total = forces.shape[0]
    weight = batch.hess_weight
    if outliers is None and outlier_threshold is not None:
        outliers = hessian_outliers(batch, outlier_threshold)
    if outliers is not None:
        flags = outliers
        scale = torch.where(
            flags, torch.full_like(flags, outlier_weight, dtype=err.dtype), torch.ones_like(flags, dtype=err.dtype)
        )
        weight = weight * scale[batch.batch]
    loss = (err * weight).sum() / n_total
    m = int(batch.natoms.shape[0])
    per_slot = torch.zeros(err.shape[0], m, dtype=err.dtype, device=err.device).index_add(1, batch.batch, err.detach())
    return loss, per_slot


def energy_gradient_loss(energy, pos, f_ref):
    (g,) = torch.autograd.grad(energy.sum(), pos, create_graph=True, retain_graph=True)
    return force_l2mae(-g, f_ref)


N2N_REDUCTIONS = ("sum_features", "mean")


def n2n_loss(student_features, projection, teacher_features, reduction: str = "sum_features"):
    """Squared error of the projected student features against the teacher's (ΣN, F_t): summed over features
    and averaged over atoms (``"sum_features"``, the official n2n loss) or averaged over both (``"mean"``)."""
    sq = (projection(student_features) - teacher_features) ** 2
    if reduction == "sum_features":
        return sq.sum(-1).mean()
    if reduction == "mean":
        return sq.mean()
    raise ValueError(f"n2n reduction must be one of {N2N_REDUCTIONS}, got {reduction!r}")


def compute_loss(
    model,
    batch,
    weights: LossWeights,
    *,
    projection=None,
    squared_hessian=False,
    vjp_method="loop",
    n2n_reduction="sum_features",
    hessian_outlier_threshold=None,
    hessian_outlier_weight=1e-8,
):
    """All active terms for one batch. Returns (total, dict of detached terms, per-slot Hessian errors or None).

    With a ``hessian_outlier_threshold`` the terms also hold ``hessian_outliers``: the number of this batch's
    structures whose Hessian term was down-weighted (a count, not a loss term; a device tensor, no host sync).
    """
    need_h = weights.hessian > 0 and hasattr(batch, "hess_cot")
    need_graph = need_h or weights.energy_grad > 0
    want_feats = weights.n2n > 0
    if need_graph or model.conservative:
        batch.pos.requires_grad_(True)
    out = model(batch, create_graph=True, return_features=want_feats)
    energy, forces = out[0], out[1]
    terms = {}
    total = energy.new_zeros(())
    if weights.energy > 0:
        terms["energy"] = energy_mae_per_atom(energy, batch.energy, batch.natoms)
        total = total + weights.energy * terms["energy"]
    if weights.forces > 0:
        terms["forces"] = force_l2mae(forces, batch.forces)
        total = total + weights.forces * terms["forces"]
    if weights.teacher_forces > 0:
        terms["teacher_forces"] = force_l2mae(forces, batch.teacher_forces)
        total = total + weights.teacher_forces * terms["teacher_forces"]
    if weights.energy_grad > 0:
        terms["energy_grad"] = energy_gradient_loss(energy, batch.pos, batch.forces)
        total = total + weights.energy_grad * terms["energy_grad"]
    if want_feats:
        terms["n2n"] = n2n_loss(out[2], projection, batch.teacher_features, n2n_reduction)
        total = total + weights.n2n * terms["n2n"]
    per_slot = None
    if need_h:
        flags = None if hessian_outlier_threshold is None else hessian_outliers(batch, hessian_outlier_threshold)
        terms["hessian"], per_slot = hessian_loss(
            forces,
            batch,
            squared=squared_hessian,
            method=vjp_method,
            outlier_weight=hessian_outlier_weight,
            outliers=flags,
        )
        total = total + weights.hessian * terms["hessian"]
        if flags is not None:
            terms["hessian_outliers"] = flags.sum()
    # no finiteness check here: that would be a host sync every step; the loop checks once per epoch
    return total, {k: v.detach() for k, v in terms.items()}, per_slot
