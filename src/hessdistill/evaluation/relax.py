"""Geometry-relaxation benchmark: relax perturbed test structures with a model and with the teacher.

Protocol (paper: FIRE to fmax 0.05 eV/Å from test structures, final geometries re-scored by the reference):
each start is rattled (Gaussian, ``perturb`` Å per Cartesian component, seeded per structure), then relaxed
from that *same* start with the model and with the teacher (fixed cell).  Reported per structure and in
aggregate:

- success: converged to ``fmax`` within ``max_steps`` with finite energy/forces/positions;
- steps taken by each;
- energy error: E_teacher(model-relaxed geometry) - E_teacher(teacher-relaxed geometry), meV/atom
  (the teacher plays the role of DFT re-scoring; positive means the model stopped higher on the teacher's
  surface);
- RMSD between the two relaxed geometries, Å: Kabsch-aligned (after centring) for molecules; for periodic
  cells the minimum-image displacement with its mean (a rigid shift) removed.

Means over structures come with their standard error (``*_se_*``) and count (``n_compared``: structures where
both relaxations converged; success rates are over ``n_structures``).

``perturb: 0`` starts from the unperturbed test structures themselves (the paper's protocol).

With a ``reference_calc`` (the paper's DFT re-scoring; any ASE calculator, see
:func:`hessdistill.teachers.reference.reference_calculator`), each final geometry -- the model's, and the
teacher's -- is re-scored by it: ``{model,teacher}_ref_energy_eV`` (and ``_eV_atom``), and the mean and max
per-atom reference |F| there (``{model,teacher}_ref_fmean_eV_A``, ``_ref_fmax_eV_A``).  The summary gives their
means over converged structures (``{model,teacher}_ref_energy_mean_eV_atom``, ``{model,teacher}_ref_fmean_eV_A``
with ``_se`` and ``_n``); E_ref(distilled) - E_ref(undistilled) per structure is formed by the report, which has
both runs.  Geometries are re-scored only where their positions are finite (whether converged or not).

Failures (calculator exceptions, NaN, non-convergence) are recorded, never raised.
"""

from __future__ import annotations

import numpy as np

OPTIMIZERS = ("FIRE", "BFGS", "LBFGS")


def _optimizer_class(name: str):
    from ase import optimize

    key = name.upper()
    if key not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; choose one of {OPTIMIZERS}")
    return {"FIRE": optimize.FIRE, "BFGS": optimize.BFGS, "LBFGS": optimize.LBFGS}[key]


def _max_force(forces) -> float:
    f = np.asarray(forces, dtype=np.float64)
    return float(np.sqrt((f**2).sum(axis=1)).max()) if f.size else 0.0


def run_optimizer(atoms, *, optimizer: str = "FIRE", fmax: float = 0.05, max_steps: int = 500) -> dict:
    """Relax ``atoms`` (with its calculator attached) in place.  Never raises for calculator failures.

    Returns ``{"converged", "steps", "fmax_eV_A", "energy_eV", "error"}``.
    """
    cls = _optimizer_class(optimizer)
    info = {"converged": False, "steps": 0, "fmax_eV_A": None, "energy_eV": None, "error": None}
    opt = None

    def guard():  # stop a diverging model at once instead of iterating on NaNs up to max_steps
        if not (np.all(np.isfinite(atoms.get_forces())) and np.all(np.isfinite(atoms.get_positions()))):
            raise FloatingPointError("non-finite forces or positions")

    try:
        opt = cls(atoms, logfile=None)
        opt.attach(guard)
        opt.run(fmax=fmax, steps=max_steps)
    except Exception as exc:  # noqa: BLE001 - a failing model is a result, not a crash
        info["error"] = f"{type(exc).__name__}: {str(exc)[:300]}"
    if opt is not None:
        info["steps"] = int(opt.nsteps)
    if info["error"] is None:
        try:
            f = atoms.get_forces()
            e = float(atoms.get_potential_energy())
            fm = _max_force(f)
            pos_ok = bool(np.all(np.isfinite(atoms.get_positions())))
            info["fmax_eV_A"] = fm if np.isfinite(fm) else None
            info["energy_eV"] = e if np.isfinite(e) else None
            if not (np.isfinite(fm) and np.isfinite(e) and pos_ok):
                info["error"] = "non-finite energy, forces or positions"
            else:
                info["converged"] = bool(fm <= fmax)
                if not info["converged"]:
                    info["error"] = f"not converged in {max_steps} steps (fmax {fm:.3g} eV/Å)"
        except Exception as exc:  # noqa: BLE001
            info["error"] = f"{type(exc).__name__}: {str(exc)[:300]}"
    return info


def kabsch_rmsd(p, q) -> float:
    """RMSD (Å) between two (N,3) point sets after optimal translation and rotation (Kabsch, no reflection)."""
    p = np.asarray(p, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    p = p - p.mean(axis=0)
    q = q - q.mean(axis=0)
    h = p.T @ q
    u, _, vt = np.linalg.svd(h)
    d = np.sign(np.linalg.det(vt.T @ u.T)) or 1.0
    rot = vt.T @ np.diag([1.0, 1.0, d]) @ u.T
    diff = p @ rot.T - q
    return float(np.sqrt((diff**2).sum(axis=1).mean()))


def periodic_rmsd(a, b) -> float:
    """RMSD (Å) between two structures in the same fixed cell: minimum-image displacements, mean shift removed."""
    from ase.geometry import find_mic

    d = np.asarray(b.get_positions()) - np.asarray(a.get_positions())
    d, _ = find_mic(d, a.cell, a.pbc)
    d = d - d.mean(axis=0)
    # removing the mean can push a displacement across the cell boundary again only for absurd shifts;
    # re-apply minimum image for safety
    d, _ = find_mic(d, a.cell, a.pbc)
    return float(np.sqrt((d**2).sum(axis=1).mean()))


def structure_rmsd(a, b) -> float:
    if np.any(a.pbc):
        return periodic_rmsd(a, b)
    return kabsch_rmsd(a.get_positions(), b.get_positions())


def perturb_structure(atoms, stdev: float, rng: np.random.Generator):
    out = atoms.copy()
    out.calc = None
    if stdev > 0:
        out.set_positions(out.get_positions() + rng.normal(scale=stdev, size=(len(out), 3)))
    return out


def _teacher_energy(atoms, teacher_calc):
    try:
        work = atoms.copy()
        work.calc = teacher_calc
        e = float(work.get_potential_energy())
        return (e if np.isfinite(e) else None), None
    except Exception as exc:  # noqa: BLE001
        return None, f"{type(exc).__name__}: {str(exc)[:300]}"


def reference_score(atoms, reference_calc) -> dict:
    """Energy (total, per atom) and mean / max per-atom |F| of ``reference_calc`` at ``atoms``; all None and an
    ``error`` when the positions are not finite or the calculator fails.  Never raises."""
    out = {"energy_eV": None, "energy_eV_atom": None, "fmean_eV_A": None, "fmax_eV_A": None, "error": None}
    if not np.all(np.isfinite(atoms.get_positions())):
        out["error"] = "non-finite positions"
        return out
    try:
        work = atoms.copy()
        work.calc = reference_calc
        e = float(work.get_potential_energy())
        f = np.linalg.norm(np.asarray(work.get_forces(), dtype=np.float64), axis=1)
    except Exception as exc:  # noqa: BLE001
        out["error"] = f"{type(exc).__name__}: {str(exc)[:300]}"
        return out
    if not (np.isfinite(e) and np.all(np.isfinite(f))):
        out["error"] = "non-finite reference energy or forces"
        return out
    n = max(len(atoms), 1)
    out.update(
        energy_eV=e,
        energy_eV_atom=e / n,
        fmean_eV_A=float(f.mean()) if f.size else 0.0,
        fmax_eV_A=float(f.max()) if f.size else 0.0,
    )
    return out


def _mean(values):
    v = [x for x in values if x is not None]
    return float(np.mean(v)) if v else None


def relax_comparison(
    starts,
    model_calc,
    teacher_calc,
    *,
    optimizer: str = "FIRE",
    fmax: float = 0.05,
    max_steps: int = 500,
    perturb: float = 0.05,
    seed: int = 0,
    reference_calc=None,
    reference_info: dict | None = None,
    rescore_teacher: bool = True,
) -> dict:
    """Relax each (perturbed; ``perturb=0``: as given) start with the model and with the teacher and compare the
    results; with ``reference_calc``, re-score both final geometries with it (``reference_info``: its name,
    options and version, recorded as ``reference_calculator``; ``rescore_teacher=False`` re-scores the model's only:
    the workflow's teacher pseudo-run has the teacher's, and a reference such as DFT is too costly to repeat in
    every student's evaluation)."""
    _optimizer_class(optimizer)  # fail fast on a bad name: that is a usage error, not a model failure
    rescored = ("model", "teacher") if rescore_teacher else ("model",)
    records = []
    for i, start in enumerate(starts):
        rng = np.random.default_rng([int(seed), i])
        s0 = perturb_structure(start, perturb, rng)
        n = len(s0)
        rec = {"index": i, "formula": s0.get_chemical_formula(), "n_atoms": n, "periodic": bool(np.any(s0.pbc))}
        relaxed = {}
        for who, calc in (("model", model_calc), ("teacher", teacher_calc)):
            work = s0.copy()
            work.calc = calc
            info = run_optimizer(work, optimizer=optimizer, fmax=fmax, max_steps=max_steps)
            rec[f"{who}_converged"] = info["converged"]
            rec[f"{who}_steps"] = info["steps"]
            rec[f"{who}_fmax_eV_A"] = info["fmax_eV_A"]
            rec[f"{who}_error"] = info["error"]
            relaxed[who] = work
        rec["energy_error_meV_atom"] = None
        rec["rmsd_A"] = None
        rec["comparison_error"] = None
        finite_model = rec["model_fmax_eV_A"] is not None and np.all(np.isfinite(relaxed["model"].get_positions()))
        finite_teacher = rec["teacher_fmax_eV_A"] is not None
        if finite_model and finite_teacher:
            e_tm, err1 = _teacher_energy(relaxed["model"], teacher_calc)
            e_tt, err2 = _teacher_energy(relaxed["teacher"], teacher_calc)
            if e_tm is not None and e_tt is not None:
                rec["energy_error_meV_atom"] = float(1000.0 * (e_tm - e_tt) / n)
            else:
                rec["comparison_error"] = err1 or err2 or "non-finite teacher energy"
            rec["rmsd_A"] = structure_rmsd(relaxed["teacher"], relaxed["model"])
        else:
            rec["comparison_error"] = "a relaxation produced non-finite results"
        if reference_calc is not None:
            for who in rescored:
                sc = reference_score(relaxed[who], reference_calc)
                rec[f"{who}_ref_energy_eV"] = sc["energy_eV"]
                rec[f"{who}_ref_energy_eV_atom"] = sc["energy_eV_atom"]
                rec[f"{who}_ref_fmean_eV_A"] = sc["fmean_eV_A"]
                rec[f"{who}_ref_fmax_eV_A"] = sc["fmax_eV_A"]
                rec[f"{who}_ref_error"] = sc["error"]
        records.append(rec)

    n_total = len(records)
    both = [r for r in records if r["model_converged"] and r["teacher_converged"]]
    ee = [r["energy_error_meV_atom"] for r in both if r["energy_error_meV_atom"] is not None]
    from .md import mean_sem

    mae = mean_sem([abs(x) for x in ee])
    rmsd = mean_sem([r["rmsd_A"] for r in both])
    ref = {}
    if reference_calc is not None:
        ref["reference_calculator"] = dict(reference_info or {"name": type(reference_calc).__name__})
        for who in rescored:  # over the structures this one converged
            done = [r for r in records if r[f"{who}_converged"]]
            # (summary stem, unit, per-structure column): written as stem+unit (mean), stem_se+unit, stem_n
            for stem, unit, col in (
                ("ref_energy_mean", "_eV_atom", "ref_energy_eV_atom"),
                ("ref_fmean", "_eV_A", "ref_fmean_eV_A"),
                ("ref_fmax_mean", "_eV_A", "ref_fmax_eV_A"),
            ):
                st = mean_sem([r[f"{who}_{col}"] for r in done])
                ref[f"{who}_{stem}{unit}"] = st["mean"]
                ref[f"{who}_{stem}_se{unit}"] = st["se"]
                ref[f"{who}_{stem}_n"] = st["n"]
    return {
        "optimizer": optimizer.upper(),
        "fmax_eV_A": float(fmax),
        "max_steps": int(max_steps),
        "perturb_A": float(perturb),
        "seed": int(seed),
        "n_structures": n_total,
        "model_success_rate": float(np.mean([r["model_converged"] for r in records])) if n_total else None,
        "teacher_success_rate": float(np.mean([r["teacher_converged"] for r in records])) if n_total else None,
        "model_mean_steps": _mean([r["model_steps"] for r in records if r["model_converged"]]),
        "teacher_mean_steps": _mean([r["teacher_steps"] for r in records if r["teacher_converged"]]),
        # statistics over structures where both relaxations converged
        "n_compared": len(both),
        "energy_error_mean_meV_atom": _mean(ee),
        "energy_error_mae_meV_atom": mae["mean"],
        "energy_error_mae_se_meV_atom": mae["se"],
        "energy_error_n": mae["n"],
        "rmsd_mean_A": rmsd["mean"],
        "rmsd_se_A": rmsd["se"],
        "rmsd_n": rmsd["n"],
        "rmsd_max_A": max((r["rmsd_A"] for r in both if r["rmsd_A"] is not None), default=None),
        **ref,
        "failures": [
            {
                "index": r["index"],
                "model_error": r["model_error"],
                "teacher_error": r["teacher_error"],
                "comparison_error": r["comparison_error"],
                **(
                    {"reference_error": r["model_ref_error"] or r.get("teacher_ref_error")}
                    if reference_calc is not None
                    else {}
                ),
            }
            for r in records
            if r["model_error"]
            or r["teacher_error"]
            or r["comparison_error"]
            or (reference_calc is not None and (r["model_ref_error"] or r.get("teacher_ref_error")))
        ],
        "structures": records,
    }
