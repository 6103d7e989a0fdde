"""Harmonic vibrational frequencies from Hessians, and model-vs-teacher frequency comparisons.

Conventions: the Hessian is H = d²E/dx² in eV/Å², flattened atom-major (index ``3*i + c``); masses are
ASE masses in amu.  Frequencies are wavenumbers in cm⁻¹; imaginary modes are returned as *negative*
numbers (-|ν|), the usual convention of quantum-chemistry codes.

Zero modes are removed by projection, not by dropping the smallest eigenvalues: the rigid-body vectors
(3 translations and, for molecules, 3 rotations about the centre of mass — 2 for a linear molecule) are
built in mass-weighted coordinates, orthonormalised, and the mass-weighted Hessian is diagonalised in
their orthogonal complement (Eckart projection).  That returns exactly 3N-6 (3N-5, or 3N-3 for a periodic
cell at Γ) frequencies even when the model's Hessian breaks translational/rotational invariance
slightly, and it does not confuse a genuinely soft vibration with a rigid-body mode.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from ase import units

from ..core.hessian import finite_difference_columns

# ħ·sqrt(eV / (Å² amu)) in eV: converts sqrt(eigenvalue of the mass-weighted Hessian) into an energy.
_HBAR_SQRT = units._hbar * 1e10 / np.sqrt(units._e * units._amu)


def eigenvalues_to_cm1(eigenvalues) -> np.ndarray:
    """Mass-weighted Hessian eigenvalues (eV/Å²/amu) -> wavenumbers in cm⁻¹ (negative for λ < 0)."""
    lam = np.asarray(eigenvalues, dtype=np.float64)
    return np.sign(lam) * _HBAR_SQRT * np.sqrt(np.abs(lam)) / units.invcm


def rigid_body_basis(atoms, *, periodic: bool | None = None, tol: float = 1e-6) -> np.ndarray:
    """Orthonormal basis (3N, k) of the mass-weighted rigid-body motions (k = 3, 5 or 6; k=3 for periodic)."""
    if periodic is None:
        periodic = bool(np.any(atoms.pbc))
    masses = np.asarray(atoms.get_masses(), dtype=np.float64)
    n = len(masses)
    sqm = np.sqrt(masses)
    vecs = []
    for c in range(3):  # translations
        v = np.zeros((n, 3))
        v[:, c] = sqm
        vecs.append(v.reshape(-1))
    if not periodic:
        r = np.asarray(atoms.get_positions(), dtype=np.float64)
        r = r - masses @ r / masses.sum()
        for c in range(3):  # infinitesimal rotations about the axis e_c through the centre of mass
            axis = np.zeros(3)
            axis[c] = 1.0
            vecs.append((sqm[:, None] * np.cross(axis, r)).reshape(-1))
    mat = np.stack(vecs, axis=1)
    u, s, _ = np.linalg.svd(mat, full_matrices=False)
    keep = s > tol * max(float(s.max()), 1e-300)  # linear molecules: one rotation vanishes
    return u[:, keep]


def _complement_basis(q: np.ndarray) -> np.ndarray:
    """Orthonormal basis (3N, 3N-k) of the complement of the orthonormal columns of ``q``."""
    n = q.shape[0]
    if q.shape[1] == 0:
        return np.eye(n)
    u, _, _ = np.linalg.svd(q, full_matrices=True)
    return u[:, q.shape[1] :]


def mass_weighted_hessian(atoms, hessian) -> np.ndarray:
    """Symmetrised H_ij / sqrt(m_i m_j) in eV/Å²/amu."""
    h = np.asarray(hessian, dtype=np.float64)
    n3 = 3 * len(atoms)
    if h.shape != (n3, n3):
        raise ValueError(f"Hessian of shape {h.shape} does not match {len(atoms)} atoms (expected ({n3}, {n3}))")
    if not np.all(np.isfinite(h)):
        raise ValueError("the Hessian contains NaN or inf entries")
    inv_sqm = 1.0 / np.sqrt(np.repeat(np.asarray(atoms.get_masses(), dtype=np.float64), 3))
    mw = h * inv_sqm[:, None] * inv_sqm[None, :]
    return 0.5 * (mw + mw.T)


def harmonic_frequencies(atoms, hessian, *, periodic: bool | None = None) -> np.ndarray:
    """Vibrational wavenumbers (cm⁻¹, sorted ascending, imaginary as negative) with rigid-body modes projected out.

    ``periodic=None`` means ``any(atoms.pbc)``: periodic cells (Γ point) lose the 3 translations only,
    molecules the 3 translations and 3 rotations (2 for linear molecules).
    """
    mw = mass_weighted_hessian(atoms, hessian)
    b = _complement_basis(rigid_body_basis(atoms, periodic=periodic))
    if b.shape[1] == 0:
        return np.zeros(0)
    lam = np.linalg.eigvalsh(b.T @ mw @ b)
    return np.sort(eigenvalues_to_cm1(lam))


def n_vibrational_modes(atoms, *, periodic: bool | None = None) -> int:
    return 3 * len(atoms) - rigid_body_basis(atoms, periodic=periodic).shape[1]


def fd_hessian_fn(calc, *, step: float = 1e-3, order: int = 2) -> Callable:
    """``hessian_fn(atoms) -> (3N, 3N)`` by finite differences of ``calc``'s forces (central by default).

    The structure passed in is never modified: a copy carries ``calc``.  The result is not symmetrised
    (for a non-conservative calculator it is the negative force Jacobian, columns = coordinates).
    """

    def hessian_fn(atoms) -> np.ndarray:
        work = atoms.copy()
        work.calc = calc

        def force_fn(pos):
            work.set_positions(pos)
            return work.get_forces()

        cols = finite_difference_columns(
            force_fn, atoms.get_positions(), np.arange(3 * len(atoms)), step=step, order=order
        )
        return cols.T  # row c of ``cols`` is column c of H

    return hessian_fn


#: a mode counts as imaginary below -IMAGINARY_TOL_CM1 (smaller negative values are numerical noise of a
#: relaxation to a finite force tolerance and of finite differences)
IMAGINARY_TOL_CM1 = 20.0


def vibrational_eigenvalues(atoms, hessian, *, periodic: bool | None = None) -> np.ndarray:
    """Eigenvalues (eV/Å²/amu, ascending) of the mass-weighted Hessian with rigid-body modes projected out."""
    mw = mass_weighted_hessian(atoms, hessian)
    b = _complement_basis(rigid_body_basis(atoms, periodic=periodic))
    return np.linalg.eigvalsh(b.T @ mw @ b) if b.shape[1] else np.zeros(0)


def curvature_errors(atoms, hessian_model, hessian_teacher, *, periodic: bool | None = None) -> dict:
    """How far a model's Hessian is from the teacher's, on the teacher's own scale.

    - ``hessian_rel_error``: ||H_m - H_t||_F / ||H_t||_F (both symmetrised);
    - ``hessian_rel_block_error_mean/max``: the same per atom, over its three rows (which atoms are wrong);
    - ``spectrum_rel_error``: ||λ_m - λ_t|| / ||λ_t|| of the sorted mass-weighted vibrational eigenvalues;
    - ``eigenvalues_model/teacher``: those spectra (eV/Å²/amu).
    """
    hm = 0.5 * (np.asarray(hessian_model, dtype=np.float64) + np.asarray(hessian_model, dtype=np.float64).T)
    ht = 0.5 * (np.asarray(hessian_teacher, dtype=np.float64) + np.asarray(hessian_teacher, dtype=np.float64).T)
    scale = max(float(np.linalg.norm(ht)), 1e-12)
    blocks = [
        float(
            np.linalg.norm(hm[3 * i : 3 * i + 3] - ht[3 * i : 3 * i + 3])
            / max(float(np.linalg.norm(ht[3 * i : 3 * i + 3])), 1e-12)
        )
        for i in range(len(atoms))
    ]
    lm = vibrational_eigenvalues(atoms, hm, periodic=periodic)
    lt = vibrational_eigenvalues(atoms, ht, periodic=periodic)
    return {
        "hessian_rel_error": float(np.linalg.norm(hm - ht) / scale),
        "hessian_rel_block_error_mean": float(np.mean(blocks)) if blocks else 0.0,
        "hessian_rel_block_error_max": float(np.max(blocks)) if blocks else 0.0,
        "spectrum_rel_error": float(np.linalg.norm(lm - lt) / max(float(np.linalg.norm(lt)), 1e-12))
        if lt.size
        else 0.0,
        "eigenvalues_model": [float(x) for x in lm],
        "eigenvalues_teacher": [float(x) for x in lt],
    }


def compare_frequencies(
    atoms, hessian_model, hessian_teacher, *, periodic: bool | None = None, imaginary_tol_cm1: float = IMAGINARY_TOL_CM1
) -> dict:
    """Frequencies of two Hessians of the same structure, compared mode by mode (both sorted), with the curvature
    errors of :func:`curvature_errors`.

    ``freq_mae_rel``: the frequency MAE over the teacher's mean |frequency| (its own scale); ``n_imaginary_*``:
    modes below -``imaginary_tol_cm1``; ``n_spurious_imaginary``: imaginary modes of the model beyond the
    teacher's (a teacher minimum has none, so every imaginary mode of the model there is spurious).
    """
    fm = harmonic_frequencies(atoms, hessian_model, periodic=periodic)
    ft = harmonic_frequencies(atoms, hessian_teacher, periodic=periodic)
    diff = np.abs(fm - ft)
    n_im, n_it = int(np.sum(fm < -imaginary_tol_cm1)), int(np.sum(ft < -imaginary_tol_cm1))
    mean_t = float(np.abs(ft).mean()) if ft.size else 0.0
    return {
        "freq_mae_cm1": float(diff.mean()) if diff.size else 0.0,
        "freq_mae_rel": float(diff.mean() / mean_t) if diff.size and mean_t > 0 else None,
        "teacher_mean_freq_cm1": mean_t,
        "freq_max_abs_cm1": float(diff.max()) if diff.size else 0.0,
        "n_modes": int(fm.size),
        "n_imaginary_model": n_im,
        "n_imaginary_teacher": n_it,
        "n_spurious_imaginary": max(0, n_im - n_it),
        "imaginary_tol_cm1": float(imaginary_tol_cm1),
        "model_cm1": [float(x) for x in fm],
        "teacher_cm1": [float(x) for x in ft],
        **curvature_errors(atoms, hessian_model, hessian_teacher, periodic=periodic),
    }


def relax_structure(atoms, calc, *, fmax: float = 1e-3, max_steps: int = 2000, optimizer: str = "BFGS"):
    """Relax a copy of ``atoms`` with ``calc`` (fixed cell).  Returns (relaxed atoms, info dict); never raises
    for non-convergence or calculator failure: the info says what happened."""
    from .relax import run_optimizer

    work = atoms.copy()
    work.calc = calc
    info = run_optimizer(work, optimizer=optimizer, fmax=fmax, max_steps=max_steps)
    return work, info


def teacher_minimum(
    atoms,
    teacher_calc,
    *,
    teacher_hessian_fn: Callable | None = None,
    fmax: float = 1e-3,
    max_steps: int = 2000,
    optimizer: str = "BFGS",
    fd_step: float = 1e-3,
    relax: bool = True,
) -> dict:
    """The teacher's half of the vibrations protocol: relax ``atoms`` with the teacher (fixed cell) and take the
    teacher's Hessian there.  Returns ``{"atoms", "hessian", "info"}``: the relaxed structure (no calculator), the
    float64 Hessian (None when the relaxation failed) and the relaxation record.  It costs a relaxation and a full
    Hessian of the teacher; :func:`save_minima` keeps it so that every student is compared at the same minima
    without redoing it."""
    if relax:
        relaxed, info = relax_structure(atoms, teacher_calc, fmax=fmax, max_steps=max_steps, optimizer=optimizer)
    else:
        relaxed, info = atoms.copy(), {"converged": None, "steps": 0, "fmax_eV_A": None, "error": None}
    plain = relaxed.copy()  # Atoms.copy() drops the calculator: Hessian functions get a plain structure
    record = {
        "atoms": plain,
        "hessian": None,
        "info": {
            "converged": info["converged"],
            "steps": info["steps"],
            "fmax_eV_A": info["fmax_eV_A"],
            "error": info["error"],
        },
    }
    if not info.get("error"):
        th = teacher_hessian_fn or fd_hessian_fn(teacher_calc, step=fd_step)
        record["hessian"] = np.asarray(th(plain), dtype=np.float64)
    return record


def compare_at_minimum(
    record: dict,
    *,
    model_calc=None,
    model_hessian_fn: Callable | None = None,
    fd_step: float = 1e-3,
    periodic: bool | None = None,
) -> dict:
    """The model's half: its Hessian at a teacher minimum (:func:`teacher_minimum`) against the teacher's."""
    atoms, info = record["atoms"], record["info"]
    out = {
        "teacher_relax_converged": info["converged"],
        "teacher_relax_steps": info["steps"],
        "teacher_relax_fmax_eV_A": info["fmax_eV_A"],
        "teacher_relax_error": info["error"],
        "n_atoms": len(atoms),
        "formula": atoms.get_chemical_formula(),
    }
    if info.get("error") or record["hessian"] is None:
        out["error"] = f"teacher relaxation failed: {info['error']}"
        return out
    if model_hessian_fn is None and model_calc is None:
        raise ValueError("compare_at_minimum needs model_hessian_fn or model_calc")
    mh = model_hessian_fn or fd_hessian_fn(model_calc, step=fd_step)
    plain = atoms.copy()
    out.update(compare_frequencies(plain, np.asarray(mh(plain)), record["hessian"], periodic=periodic))
    out["error"] = None
    return out


def vibrational_comparison(
    atoms,
    model_calc,
    teacher_calc,
    *,
    model_hessian_fn: Callable | None = None,
    teacher_hessian_fn: Callable | None = None,
    fmax: float = 1e-3,
    max_steps: int = 2000,
    optimizer: str = "BFGS",
    fd_step: float = 1e-3,
    periodic: bool | None = None,
    relax: bool = True,
) -> dict:
    """The protocol: relax with the teacher, then compare model and teacher frequencies at that geometry.

    Hessian functions default to central finite differences of each calculator's forces (``fd_step`` Å).
    A teacher relaxation that does not reach ``fmax`` is reported (``teacher_relax_converged``), and the
    comparison is still made at the final geometry.
    """
    record = teacher_minimum(
        atoms,
        teacher_calc,
        teacher_hessian_fn=teacher_hessian_fn,
        fmax=fmax,
        max_steps=max_steps,
        optimizer=optimizer,
        fd_step=fd_step,
        relax=relax,
    )
    return compare_at_minimum(
        record, model_calc=model_calc, model_hessian_fn=model_hessian_fn, fd_step=fd_step, periodic=periodic
    )


MINIMA_FORMAT = "hessdistill.teacher_minima"


def save_minima(path, records, meta: dict) -> None:
    """Write teacher minima (:func:`teacher_minimum` records) to HDF5, atomically.  ``meta`` (JSON-able: the
    protocol, split, teacher and dtype they were made with) is stored so that a reader can refuse minima made
    for another protocol."""
    import json

    import h5py

    from ..core.atomic import atomic_path

    with atomic_path(path, suffix=".h5") as tmp:
        with h5py.File(tmp, "w", track_order=True) as f:
            f.attrs["format"] = MINIMA_FORMAT
            f.attrs["format_version"] = 1
            f.attrs["meta"] = json.dumps(meta, sort_keys=True, default=str)
            f.attrs["n_records"] = len(records)
            for i, rec in enumerate(records):
                g = f.create_group(f"{i:05d}")
                a = rec["atoms"]
                g["numbers"] = np.asarray(a.numbers, dtype=np.int64)
                g["positions"] = np.asarray(a.positions, dtype=np.float64)
                g["cell"] = np.asarray(a.cell.array, dtype=np.float64)
                g["pbc"] = np.asarray(a.pbc, dtype=bool)
                if rec["hessian"] is not None:
                    g["hessian"] = np.asarray(rec["hessian"], dtype=np.float64)
                g.attrs["info"] = json.dumps(rec["info"], sort_keys=True, default=str)


def load_minima(path) -> tuple[list[dict], dict]:
    """Read :func:`save_minima`'s file: (records, meta)."""
    import json

    import h5py
    from ase import Atoms

    from ..core.errors import HessdistillError

    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise HessdistillError(f"cannot read teacher minima {path}: {exc}; remake it (rule teacher_minima)") from exc
    with f:
        if f.attrs.get("format") != MINIMA_FORMAT:
            raise HessdistillError(
                f"{path} is not a teacher-minima file (format {f.attrs.get('format')!r}); "
                "pass the minima.h5 written by rule teacher_minima"
            )
        meta = json.loads(f.attrs["meta"])
        records = []
        for i in range(int(f.attrs["n_records"])):
            g = f[f"{i:05d}"]
            atoms = Atoms(numbers=g["numbers"][()], positions=g["positions"][()], cell=g["cell"][()], pbc=g["pbc"][()])
            records.append(
                {
                    "atoms": atoms,
                    "hessian": g["hessian"][()] if "hessian" in g else None,
                    "info": json.loads(g.attrs["info"]),
                }
            )
    return records, meta


def spread_structures(atoms, n: int) -> list:
    """Up to ``n`` structures from distinct groups first: the first frame of each trajectory (``info
    ["trajectory"]``; structures without one are their own group), in order of appearance, then the second
    frame of each, and so on.  Consecutive frames of one MD run relax to the same minimum, so taking the first
    ``n`` of a split grouped by trajectory would measure one structure ``n`` times."""
    groups: dict = {}
    for k, a in enumerate(atoms):
        groups.setdefault(a.info.get("trajectory", f"#{k}"), []).append(a)
    out, depth = [], 0
    while len(out) < n and any(len(g) > depth for g in groups.values()):
        out += [g[depth] for g in groups.values() if len(g) > depth][: n - len(out)]
        depth += 1
    return out


def minima_protocol(c: dict, split: str, teacher) -> dict:
    """What decides the teacher minima: the split, the teacher (name and dtype; a
    :class:`~hessdistill.teachers.Teacher`) and the relaxation part of the vibrations protocol ``c``
    (:data:`hessdistill.evaluation.protocols.MINIMA_KEYS`)."""
    from ..core.dtypes import dtype_name
    from .protocols import MINIMA_KEYS

    return {
        "split": split,
        "teacher": teacher.name,
        "teacher_dtype": dtype_name(teacher.dtype),
        **{k: c[k] for k in MINIMA_KEYS},
    }


def teacher_minima(teacher, atoms, c: dict) -> list:
    """The teacher's half of the vibrations protocol ``c`` on a split: the structures spread over trajectories
    (:func:`spread_structures`), each relaxed by the teacher, with the teacher's Hessian (as loaded) there."""
    pool = spread_structures([a for a in atoms if not (c["molecules_only"] and a.pbc.any())], c["n_structures"])
    return [
        teacher_minimum(
            a, teacher.calculator(), teacher_hessian_fn=teacher.hessian, fmax=c["fmax"], max_steps=c["max_steps"]
        )
        for a in pool
    ]


def check_minima(made: dict, c: dict, split: str, teacher, path) -> None:
    """Refuse minima (``made``: the meta :func:`load_minima` returns) made for another split, teacher or relaxation
    protocol than this evaluation's (:func:`minima_protocol`)."""
    from ..core.errors import HessdistillError

    want = minima_protocol(c, split, teacher)
    have = {k: made.get(k) for k in want}
    if have != want:
        diff = {k: (have[k], want[k]) for k in want if have[k] != want[k]}
        differs = ", ".join(f"{k}: {a!r} there, {b!r} here" for k, (a, b) in diff.items())
        raise HessdistillError(
            f"teacher minima {path} were made with another protocol ({differs}); "
            "remake them (rule teacher_minima, or python -m hessdistill.jobs.minima) "
            "or evaluate without --minima"
        )


def frequency_suite(runs) -> dict:
    """Aggregate :func:`vibrational_comparison` results over structures: mean frequency MAE (cm⁻¹) over the runs
    that produced one, its standard error and n, and how many runs failed (teacher relaxation errors)."""
    from .md import mean_sem

    st = mean_sem([r.get("freq_mae_cm1") for r in runs])
    rel = mean_sem([r.get("freq_mae_rel") for r in runs])
    herr = mean_sem([r.get("hessian_rel_error") for r in runs])
    ok = [r for r in runs if r.get("n_spurious_imaginary") is not None]
    return {
        "freq_mae_cm1": st["mean"],
        "freq_mae_se_cm1": st["se"],
        "freq_mae_n": st["n"],
        "freq_mae_rel": rel["mean"],
        "freq_mae_rel_se": rel["se"],
        "hessian_rel_error": herr["mean"],
        "hessian_rel_error_se": herr["se"],
        "n_spurious_imaginary": sum(r["n_spurious_imaginary"] for r in ok),
        "n_structures_with_spurious_imaginary": sum(1 for r in ok if r["n_spurious_imaginary"] > 0),
        "n_structures": len(runs),
        "n_failed": sum(1 for r in runs if r.get("error")),
    }
