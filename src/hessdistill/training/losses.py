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
- L_n2n: MSE between a linear projection of the student's final node features and the teacher's (λ = 1000).

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
        (g,) = torch.autograd.grad(forces, pos, grad_outputs=cotangents, create_graph=create_graph,
                                   retain_graph=True, is_grads_batched=True)
        return g
    rows = []
    for k in range(cotangents.shape[0]):
        (g,) = torch.autograd.grad(forces, pos, grad_outputs=cotangents[k], create_graph=create_graph, retain_graph=True)
        rows.append(g)
    return torch.stack(rows)


def hessian_loss(forces, batch, *, squared=False, method="loop"):
    """The Hessian term and the per-(slot, structure) errors (s_max, M) used for error-weighted sampling."""
    g = student_jacobian_rows(forces, batch.pos, batch.hess_cot, method=method)
    diff = g - batch.hess_target
    err = (diff * diff).sum(-1) if squared else torch.linalg.vector_norm(diff, dim=-1)  # (s, ΣN)
    n_total = forces.shape[0]
    loss = (err * batch.hess_weight).sum() / n_total
    m = int(batch.natoms.shape[0])
    per_slot = torch.zeros(err.shape[0], m, dtype=err.dtype, device=err.device).index_add(1, batch.batch, err.detach())
    return loss, per_slot


def energy_gradient_loss(energy, pos, f_ref):
    (g,) = torch.autograd.grad(energy.sum(), pos, create_graph=True, retain_graph=True)
    return force_l2mae(-g, f_ref)


def n2n_loss(student_features, projection, teacher_features):
    return torch.mean((projection(student_features) - teacher_features) ** 2)


def compute_loss(model, batch, weights: LossWeights, *, projection=None, squared_hessian=False, vjp_method="loop"):
    """All active terms for one batch. Returns (total, dict of detached terms, per-slot Hessian errors or None)."""
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
        terms["n2n"] = n2n_loss(out[2], projection, batch.teacher_features)
        total = total + weights.n2n * terms["n2n"]
    per_slot = None
    if need_h:
        terms["hessian"], per_slot = hessian_loss(forces, batch, squared=squared_hessian, method=vjp_method)
        total = total + weights.hessian * terms["hessian"]
    # no finiteness check here: that would be a host sync every step; the loop checks once per epoch
    return total, {k: v.detach() for k, v in terms.items()}, per_slot
