"""Test accuracy of a model (student or teacher) against reference labels and against the teacher.

Models are given as *predictors*, so students and teachers go through the same code:

- ``predict(list of Atoms) -> (energies, list of forces)``: ``model.predictor(batch_size)`` of a model under
  evaluation (:class:`hessdistill.core.model.EvaluatedModel`; a student on batches,
  :func:`hessdistill.students.evaluated.student_predictor`), or :func:`hessdistill.core.model.calculator_predictor`
  of any ASE calculator;
- a Hessian function ``hessian_rows_fn(atoms, rows) -> (R, 3N)`` (``model.hessian_rows``) for the Hessian MAE.

Metrics (meV, Å): energy MAE per atom (meV/atom), force MAE per component (meV/Å), per-atom force l2
error (meV/Å, the paper's l2mae) and Hessian MAE per element (meV/Å²).  Standard errors are those of
the mean over *structures* (per-structure averages), since components within a structure are correlated.
"""

from __future__ import annotations

import math

import numpy as np


def _stats(per_structure: list[float]) -> tuple[float, float]:
    x = np.asarray(per_structure, dtype=np.float64)
    if len(x) == 0:
        return math.nan, math.nan
    se = float(x.std(ddof=1) / math.sqrt(len(x))) if len(x) > 1 else math.nan
    return float(x.mean()), se


def _compare(atoms_list, e_pred, f_pred, e_ref, f_ref, prefix) -> dict:
    e_err = [1e3 * abs(ep - er) / len(a) for a, ep, er in zip(atoms_list, e_pred, e_ref)]
    f_comp = [1e3 * float(np.abs(fp - fr).mean()) for fp, fr in zip(f_pred, f_ref)]
    err_norms = [np.linalg.norm(np.asarray(fp, dtype=np.float64) - fr, axis=1) for fp, fr in zip(f_pred, f_ref)]
    f_l2 = [1e3 * float(e.mean()) for e in err_norms]
    out = {}
    for key, vals in (("energy_mae_meV_atom", e_err), ("force_mae_meV_A", f_comp), ("force_l2mae_meV_A", f_l2)):
        mean, se = _stats(vals)
        out[f"{prefix}{key}"] = mean
        out[f"{prefix}{key}_se"] = se
    # the paper's force MAE is per component over all atoms: weight structures by their size
    n = np.array([len(a) for a in atoms_list])
    out[f"{prefix}force_mae_meV_A_all_components"] = (
        float(np.sum(np.array(f_comp) * n) / n.sum()) if len(n) else math.nan
    )
    # on the reference's own scale: the mean |ΔF| over all atoms over the mean |F| (vector norms), pooled
    if len(n):
        ref_norm = np.concatenate([np.linalg.norm(np.asarray(fr, dtype=np.float64), axis=1) for fr in f_ref])
        err_norm = np.concatenate(err_norms)
        out[f"{prefix}mean_abs_force_meV_A"] = 1e3 * float(ref_norm.mean())
        out[f"{prefix}force_rel_error"] = float(err_norm.sum() / ref_norm.sum()) if ref_norm.sum() > 0 else math.nan
    return out


def accuracy(
    predict,
    atoms_list,
    *,
    reference=True,
    teacher_labels=None,
    hessian_rows_fn=None,
    hessians=None,
    parity_points: int = 2000,
) -> dict:
    """Accuracy of ``predict`` on ``atoms_list`` (structures with reference labels attached).

    ``teacher_labels``: (energies, list of forces) of the teacher on the same structures, to report errors
    against the teacher too; ``hessians``: list of (row indices, rows (R, 3N)) of the teacher's Hessians for
    these structures (e.g. from a Hessian store), with ``hessian_rows_fn`` to evaluate the model's rows;
    ``parity_points``: how many force components (and structures) to keep under ``"parity"`` for parity plots
    (against the teacher when given, else the reference; 0 keeps none).
    """
    e_pred, f_pred = predict(list(atoms_list))
    res = {"n_structures": len(atoms_list), "n_atoms": int(sum(len(a) for a in atoms_list))}
    if reference:
        e_ref = [a.get_potential_energy() for a in atoms_list]
        f_ref = [a.get_forces() for a in atoms_list]
        res.update(_compare(atoms_list, e_pred, f_pred, e_ref, f_ref, "ref_"))
    if teacher_labels is not None:
        res.update(_compare(atoms_list, e_pred, f_pred, teacher_labels[0], teacher_labels[1], "teacher_"))
    if hessians is not None and hessian_rows_fn is not None:
        res.update(hessian_accuracy(hessian_rows_fn, atoms_list, hessians))
    target = (
        teacher_labels
        if teacher_labels is not None
        else (
            ([a.get_potential_energy() for a in atoms_list], [a.get_forces() for a in atoms_list])
            if reference
            else None
        )
    )
    if target is not None and parity_points > 0:
        res["parity"] = parity_data(
            atoms_list,
            e_pred,
            f_pred,
            target[0],
            target[1],
            parity_points,
            against="teacher" if teacher_labels is not None else "reference",
        )
    return res


def parity_data(atoms_list, e_pred, f_pred, e_ref, f_ref, max_points: int, against: str) -> dict:
    """Values for parity plots: energy per atom (eV/atom) of every structure and at most ``max_points`` force
    components (eV/Å), an evenly strided subset (deterministic) when there are more."""
    n = np.array([len(a) for a in atoms_list], dtype=np.float64)
    fp = np.concatenate([np.asarray(f).reshape(-1) for f in f_pred]) if len(f_pred) else np.zeros(0)
    fr = np.concatenate([np.asarray(f).reshape(-1) for f in f_ref]) if len(f_ref) else np.zeros(0)
    take = np.unique(np.linspace(0, len(fp) - 1, num=min(max_points, len(fp))).round().astype(int)) if len(fp) else []
    ep = np.asarray(e_pred, dtype=np.float64) / n
    er = np.asarray(e_ref, dtype=np.float64) / n
    return {
        "against": against,
        "energy_per_atom_pred_eV": ep[:max_points].tolist(),
        "energy_per_atom_target_eV": er[:max_points].tolist(),
        "force_pred_eV_A": fp[take].tolist(),
        "force_target_eV_A": fr[take].tolist(),
    }


def hessian_accuracy(hessian_rows_fn, atoms_list, hessians) -> dict:
    """Hessian MAE (meV/Å²) of the model's rows against the teacher's stored rows, per structure then averaged."""
    per, rel, n_el = [], [], 0
    for a, (idx, rows) in zip(atoms_list, hessians):
        pred = hessian_rows_fn(a, idx)
        per.append(1e3 * float(np.abs(pred - rows).mean()))
        # ||H_model - H_teacher||_F / ||H_teacher||_F over the stored rows: most entries of a Hessian are near zero,
        # so the MAE hides errors on the entries that matter; this is on the teacher's own scale
        rel.append(float(np.linalg.norm(pred - rows) / max(np.linalg.norm(rows), 1e-12)))
        n_el += rows.size
    mean, se = _stats(per)
    rmean, rse = _stats(rel)
    return {
        "hessian_mae_meV_A2": mean,
        "hessian_mae_meV_A2_se": se,
        "hessian_n_structures": len(per),
        "hessian_n_elements": int(n_el),
        "hessian_rel_error": rmean,
        "hessian_rel_error_se": rse,
        "hessian_rel_error_per_structure": rel,
    }


def element_offsets(atoms_list, e_model, e_ref) -> dict[int, float]:
    """Per-element energies {Z: eV} that best map a model's total energies onto the reference's (least squares of
    E_ref - E_model on the element counts): what two levels of theory with different zeros of energy differ by
    (e.g. CHGNet's MP2020-corrected energies against SevenNet-0's raw PBE ones, or a foundation model against
    DFT with another pseudopotential set)."""
    zs = sorted({int(z) for a in atoms_list for z in a.numbers})
    counts = np.array([[np.count_nonzero(a.numbers == z) for z in zs] for a in atoms_list], dtype=np.float64)
    diff = np.asarray(e_ref, dtype=np.float64) - np.asarray(e_model, dtype=np.float64)
    coef, *_ = np.linalg.lstsq(counts, diff, rcond=None)
    return {z: float(c) for z, c in zip(zs, coef)}


def offset_free_energy_mae(atoms_fit, e_model_fit, e_ref_fit, atoms, e_model, e_ref) -> dict:
    """The model's per-atom energy MAE against the reference after per-element offsets fitted on another split
    (``*_fit``, e.g. the training split): the error that is not a difference in the zero of energy."""
    off = element_offsets(atoms_fit, e_model_fit, e_ref_fit)
    shifted = [float(e) + sum(off.get(int(z), 0.0) for z in a.numbers) for a, e in zip(atoms, e_model)]
    mean, se = _stats([1e3 * abs(es - er) / len(a) for a, es, er in zip(atoms, shifted, e_ref)])
    shift = [1e3 * (es - float(e)) / len(a) for a, es, e in zip(atoms, shifted, e_model)]
    return {
        "ref_energy_mae_offset_free_meV_atom": mean,
        "ref_energy_mae_offset_free_meV_atom_se": se,
        # per element (with one composition only their combination is determined) and their mean per atom
        "ref_energy_offsets_eV": {str(z): v for z, v in off.items()},
        "ref_energy_offset_mean_meV_atom": float(np.mean(shift)) if shift else math.nan,
    }


def accuracy_from_stores(
    predict,
    structures,
    *,
    split="test",
    labels=None,
    hessians=None,
    hessian_rows_fn=None,
    max_hessian_structures: int | None = None,
    parity_points: int = 2000,
    offsets_from: str | None = None,
) -> dict:
    """:func:`accuracy` on one split of a structure store, with teacher labels/Hessians from their stores.

    ``offsets_from``: for a teacher evaluated against reference labels of another level of theory, the split
    (e.g. "train") on which per-element energy offsets between the teacher's energies in ``labels`` and the
    reference are fitted; adds ``ref_energy_mae_offset_free_meV_atom`` (see :func:`offset_free_energy_mae`)."""
    from ..data.labels import HessianStore, LabelStore
    from ..data.store import StructureStore

    with StructureStore(structures) as st:
        atoms = [st.atoms(split, i) for i in range(st.n_structures(split))]
        has_ref = st.has_labels(split)
    tl = None
    if labels is not None:
        with LabelStore(labels) as ls:
            arr = ls.arrays(split)
            off = arr["offsets"]
            tl = (arr["energy"], [arr["forces"][off[i] : off[i + 1]] for i in range(len(atoms))])
    hs = None
    if hessians is not None and hessian_rows_fn is not None:
        with HessianStore(hessians) as h:
            if split in h.splits:
                n = (
                    h.n_structures(split)
                    if max_hessian_structures is None
                    else min(max_hessian_structures, h.n_structures(split))
                )
                hs = [h.rows(split, i) for i in range(n)]
    preds = []

    def predict_once(atoms_list):  # the test predictions, kept for the offset-free energy error
        preds.append(predict(atoms_list))
        return preds[-1]

    res = accuracy(predict_once, atoms, reference=has_ref, teacher_labels=tl, parity_points=parity_points)
    if offsets_from is not None and has_ref and labels is not None:
        with StructureStore(structures) as st, LabelStore(labels) as ls:
            if (
                offsets_from in st.splits
                and offsets_from in ls.splits
                and st.n_structures(offsets_from)
                and st.has_labels(offsets_from)
            ):
                fit = [st.atoms(offsets_from, i) for i in range(st.n_structures(offsets_from))]
                res.update(
                    offset_free_energy_mae(
                        fit,
                        ls.arrays(offsets_from)["energy"],
                        [a.get_potential_energy() for a in fit],
                        atoms,
                        preds[-1][0],
                        [a.get_potential_energy() for a in atoms],
                    )
                )
                res["ref_energy_offsets_fitted_on"] = offsets_from
    if hs:
        res.update(hessian_accuracy(hessian_rows_fn, atoms[: len(hs)], hs))
    res["split"] = split
    return res
