"""Committee disagreement: a cheap warning of where a student extrapolates, from students trained on the same data.

Two students of the same subset and teacher (the distilled and the undistilled run, or more runs: a small committee)
agree where the training data constrain them and drift apart where they do not.  The evaluation runs MD with the
student under evaluation and, every ``every`` steps, asks each partner student for the forces on the current frame.

Per frame (``frames`` of each run; the same numbers for every test structure, ``test_structures``):

``max_atom_eV_A``
    the disagreement: max over atoms of |F_student - F_partner| (eV/Å), the largest over the partners;
``rms_eV_A``
    sqrt(mean over atoms of |F_student - F_partner|²), the largest over the partners;
``student_rms_eV_A``
    sqrt(mean over atoms of |F_student|²): the force scale of the frame;
``relative``
    ``rms_eV_A / student_rms_eV_A`` (None where the student's forces vanish);
``partner``
    the partner of the largest ``max_atom_eV_A``.

Summaries (``md_*`` over the MD frames, ``test_*`` over the evaluated split's own structures, the test split by
default: the in-distribution baseline): mean, median, 95th percentile and max of ``max_atom_eV_A``, mean ``rms_eV_A`` and ``relative``, and the
fraction of frames above the threshold.  ``ratio_mean`` = ``md_mean_eV_A / test_mean_eV_A`` (and ``ratio_median``):
about 1 when the MD stays where the training data are, >> 1 when it leaves them.

Threshold (``threshold_eV_A``): a number (eV/Å), or ``auto``: ``threshold_factor`` (3) x the 95th percentile of the
test structures' disagreement, i.e. three times what the committee disagrees on nearly every in-distribution
structure.  A frame is flagged when its disagreement is strictly above the threshold, so a committee of identical
models (disagreement 0 everywhere, auto threshold 0) flags nothing.

Flagged frames (MD frames only) go to ``flagged.extxyz`` beside the JSON (:data:`FLAGGED_NAME`), written atomically
and always: one extxyz frame per flagged frame (numbers, positions, cell, pbc; ``info``: run, partner, structure,
step, time_fs, disagreement_eV_A, rms_eV_A and, where defined, relative), or an *empty file* when no frame is flagged.  Read it with
:func:`read_flagged` (or ``ase.io.read(path, index=":", format="extxyz")``, which gives ``[]`` for the empty file;
the default ``index=-1`` raises on it); the JSON's ``n_flagged`` is the number of frames in it.

MD: the :mod:`hessdistill.evaluation.md` setup (Maxwell-Boltzmann velocities at ``temperature_K`` from ``seed``,
centre-of-mass momentum removed), then Langevin (``ensemble: nvt``, ``friction_per_fs``; the default) or velocity
Verlet (``nve``).  A run stops early, with ``stopped`` and ``reason``, when the student's calculator fails or gives
non-finite or larger than ``max_force_eV_A`` forces, or a partner fails; its frames up to there are kept.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np

from ..core.paths import FLAGGED_FRAMES
from .md import ENSEMBLES, start_dynamics

#: the flagged-frames file, in the folder of the evaluation's JSON (the workflow's layout: core.paths.flagged_path)
FLAGGED_NAME = FLAGGED_FRAMES
#: what ``max_atom_eV_A`` (the disagreement) is, written into the JSON
METRIC = "max over atoms of |F_student - F_partner| (eV/Å), the largest over the partners"


def protocol_problems(protocol: dict) -> list[str]:
    """What is wrong with a disagreement protocol's MD and threshold options (``ensemble``, ``threshold_eV_A``,
    ``threshold_factor``, ``every``), one message each (the option and the fix); [] when they are valid."""
    out = []
    ens = protocol.get("ensemble", "nvt")
    if not isinstance(ens, str) or ens.lower() not in ENSEMBLES:
        out.append(f"ensemble {ens!r} is unknown: use one of {', '.join(ENSEMBLES)}")
    thr = protocol.get("threshold_eV_A", "auto")
    number = isinstance(thr, (int, float)) and not isinstance(thr, bool)
    if not (thr == "auto" or (number and math.isfinite(thr) and thr >= 0)):
        out.append(f"threshold_eV_A {thr!r} is not valid: give a number >= 0 (eV/Å) or 'auto'")
    factor = protocol.get("threshold_factor", 3.0)
    if not (isinstance(factor, (int, float)) and not isinstance(factor, bool) and factor > 0):
        out.append(f"threshold_factor {factor!r} is not valid: give a number > 0")
    every = protocol.get("every", 1)
    if type(every) is not int or every < 1:
        out.append(f"every {every!r} is not valid: give the MD steps between checks, an integer >= 1")
    return out


def force_disagreement(student_forces, partner_forces: dict) -> dict:
    """The disagreement of one frame: the student's forces (N, 3) against each partner's (``{name: (N, 3)}``,
    at least one), in eV/Å.  Keys: ``max_atom_eV_A``, ``rms_eV_A``, ``student_rms_eV_A``, ``relative``,
    ``partner`` (see the module docstring) and ``per_partner`` ({name: max_atom_eV_A})."""
    if not partner_forces:
        raise ValueError("force_disagreement needs at least one partner")
    f = np.asarray(student_forces, dtype=np.float64).reshape(-1, 3)
    n = max(len(f), 1)
    student_rms = math.sqrt(float((f**2).sum()) / n)
    per_max, per_rms = {}, {}
    for name, fp in partner_forces.items():
        fp = np.asarray(fp, dtype=np.float64).reshape(-1, 3)
        if fp.shape != f.shape:
            raise ValueError(f"partner {name!r} gives forces of shape {fp.shape}, the student {f.shape}")
        d = np.sqrt(((f - fp) ** 2).sum(axis=1))
        per_max[name] = float(d.max()) if d.size else 0.0
        per_rms[name] = math.sqrt(float((d**2).sum()) / n)
    worst = max(per_max, key=per_max.get)
    rms = max(per_rms.values())
    return {
        "max_atom_eV_A": per_max[worst],
        "rms_eV_A": rms,
        "student_rms_eV_A": student_rms,
        "relative": rms / student_rms if student_rms > 0 else None,
        "partner": worst,
        "per_partner": per_max,
    }


def _forces(calc, atoms) -> np.ndarray:
    """Forces of ``calc`` on a copy of ``atoms`` (the caller's structure keeps its own calculator)."""
    b = atoms.copy()
    b.calc = calc
    return np.asarray(b.get_forces(), dtype=np.float64)


def structures_disagreement(structures, calc, partners: dict) -> list[dict]:
    """:func:`force_disagreement` of ``calc`` against each ASE calculator of ``partners`` ({name: calculator}) on
    every structure of ``structures``, one record per structure with its ``index``: the evaluation's
    in-distribution baseline (the test structures), or the frames of a user's own trajectory, to compare with it."""
    out = []
    for k, a in enumerate(structures):
        rec = force_disagreement(_forces(calc, a), {name: _forces(p, a) for name, p in partners.items()})
        out.append({"index": k, "formula": a.get_chemical_formula(), "n_atoms": len(a), **rec})
    return out


def summarize(records: list[dict], threshold: float | None) -> dict:
    """Mean, median, 95th percentile and max of the records' ``max_atom_eV_A``, the means of ``rms_eV_A`` and
    ``relative``, the number of frames and the fraction above ``threshold`` (None without one); None values where
    there is no frame."""
    x = np.asarray([r["max_atom_eV_A"] for r in records], dtype=np.float64)
    rel = [r["relative"] for r in records if r.get("relative") is not None]
    n = int(x.size)
    return {
        "n_frames": n,
        "mean_eV_A": float(x.mean()) if n else None,
        "median_eV_A": float(np.median(x)) if n else None,
        "p95_eV_A": float(np.percentile(x, 95)) if n else None,
        "max_eV_A": float(x.max()) if n else None,
        "rms_mean_eV_A": float(np.mean([r["rms_eV_A"] for r in records])) if n else None,
        "relative_mean": float(np.mean(rel)) if rel else None,
        "fraction_above_threshold": float((x > threshold).mean()) if n and threshold is not None else None,
    }


def resolve_threshold(threshold, test_records: list[dict], factor: float = 3.0) -> tuple[float, str]:
    """(threshold in eV/Å, how it was chosen): a number as given, or ``"auto"``: ``factor`` x the 95th percentile of
    the test structures' disagreement.  Raises ValueError for anything else, or ``auto`` without test records."""
    if isinstance(threshold, (int, float)) and not isinstance(threshold, bool):
        if not math.isfinite(threshold) or threshold < 0:
            raise ValueError(f"threshold_eV_A must be a finite number >= 0 or 'auto', got {threshold!r}")
        return float(threshold), "given"
    if threshold != "auto":
        raise ValueError(f"threshold_eV_A must be a number (eV/Å) or 'auto', got {threshold!r}")
    if not test_records:
        raise ValueError("threshold_eV_A 'auto' needs the test structures' disagreement, and there are none")
    p95 = float(np.percentile([r["max_atom_eV_A"] for r in test_records], 95))
    return factor * p95, f"auto: {factor:g} x the 95th percentile of the test structures' disagreement ({p95:.4g})"


def md_disagreement(
    atoms,
    calc,
    partners: dict,
    *,
    threshold: float,
    ensemble: str = "nvt",
    temperature_K: float = 300.0,
    timestep_fs: float = 1.0,
    steps: int = 1000,
    every: int = 10,
    friction_per_fs: float = 0.01,
    seed: int = 0,
    max_force_eV_A: float = 1.0e3,
) -> dict:
    """MD of a copy of ``atoms`` with the ASE calculator ``calc``; every ``every`` steps (and at step 0 and the last
    step) the frame's :func:`force_disagreement` against ``partners`` ({name: ASE calculator}).

    Returns ``frames`` (step, time_fs and the disagreement of each checked frame), ``flagged`` (the ``ase.Atoms``
    of the frames above ``threshold``, with their ``info``; not JSON: see :func:`write_flagged`), the run's
    ``summary`` (:func:`summarize`), ``steps_completed``, ``stopped``/``reason`` and ``wall_s``.  Never raises
    because of a model (a failure stops the run, with the reason); raises ValueError for bad arguments."""
    from ase import Atoms

    ensemble = ensemble.lower()
    if ensemble not in ENSEMBLES:
        raise ValueError(f"unknown ensemble {ensemble!r}; choose one of {ENSEMBLES}")
    if steps < 0 or every < 1 or timestep_fs <= 0:
        raise ValueError("steps must be >= 0, every >= 1 and timestep_fs > 0")
    if not partners:
        raise ValueError("md_disagreement needs at least one partner")
    work = atoms.copy()
    work.calc = calc
    periodic = bool(np.any(work.pbc))
    dyn = start_dynamics(work, ensemble, temperature_K, timestep_fs, friction_per_fs, seed)
    frames, flagged = [], []
    state = {"stopped": False, "reason": None}

    def stop(reason):
        state.update(stopped=True, reason=reason)

    def sane(forces) -> bool:
        f = np.asarray(forces, dtype=np.float64)
        if not (np.all(np.isfinite(f)) and np.all(np.isfinite(work.get_positions()))):
            stop("nonfinite: NaN or inf in the student's forces or the positions")
            return False
        fm = float(np.sqrt((f**2).sum(axis=1)).max()) if len(f) else 0.0
        if fm > max_force_eV_A:
            stop(f"force_too_large: max |F| = {fm:.3g} eV/Å > {max_force_eV_A:g}")
            return False
        return True

    def record(step) -> bool:
        # the student's own forces on the frame (cached by its calculator): under Langevin the MD's forces have
        # FixCom's mean force removed, which the partners' forces have not
        forces = work.get_forces(apply_constraint=False)
        frame = Atoms(numbers=work.numbers, positions=work.get_positions(), cell=work.cell, pbc=work.pbc)
        theirs = {}
        for name, p in partners.items():
            try:
                theirs[name] = _forces(p, frame)
            except Exception as exc:  # noqa: BLE001  (a partner failing on this geometry is a result)
                stop(f"partner_error: {name}: {type(exc).__name__}: {str(exc)[:200]}")
                return False
            if not np.all(np.isfinite(theirs[name])):
                stop(f"partner_nonfinite: {name} gives NaN or inf forces")
                return False
        rec = {"step": int(step), "time_fs": float(step * timestep_fs), **force_disagreement(forces, theirs)}
        rec["flagged"] = bool(rec["max_atom_eV_A"] > threshold)
        frames.append(rec)
        if rec["flagged"]:
            frame.info.update(
                step=int(step),
                time_fs=float(step * timestep_fs),
                partner=rec["partner"],
                disagreement_eV_A=rec["max_atom_eV_A"],
                rms_eV_A=rec["rms_eV_A"],
            )
            if rec["relative"] is not None:  # absent where the student's forces vanish
                frame.info["relative"] = rec["relative"]
            flagged.append(frame)
        return True

    t0 = time.perf_counter()
    done = 0
    try:
        forces = work.get_forces(md=True)
    except Exception as exc:  # noqa: BLE001
        stop(f"calculator_error: {type(exc).__name__}: {str(exc)[:200]}")
    if not state["stopped"] and sane(forces):
        record(0)
    for step in range(1, steps + 1):
        if state["stopped"]:
            break
        try:
            forces = dyn.step(forces)
        except Exception as exc:  # noqa: BLE001
            stop(f"calculator_error: {type(exc).__name__}: {str(exc)[:200]}")
            break
        done = step
        if not sane(forces):
            break
        if step % every == 0 or step == steps:
            record(step)
    return {
        "n_atoms": len(work),
        "formula": work.get_chemical_formula(),
        "periodic": periodic,
        "steps_requested": int(steps),
        "steps_completed": int(done),
        "stopped": state["stopped"],
        "reason": state["reason"],
        "wall_s": time.perf_counter() - t0,
        "summary": summarize(frames, threshold),
        "n_flagged": len(flagged),
        "frames": frames,
        "flagged": flagged,
    }


def write_flagged(path, frames) -> None:
    """Write ``frames`` (``ase.Atoms``) to the extxyz file ``path`` atomically; an empty file when there are none
    (see the module docstring: read it with :func:`read_flagged`)."""
    import ase.io

    from ..core.atomic import atomic_path

    with atomic_path(path, suffix=".extxyz") as tmp:
        if frames:
            ase.io.write(tmp, list(frames), format="extxyz")
        else:
            Path(tmp).write_text("")


def read_flagged(path) -> list:
    """The frames of a flagged-frames file (:func:`write_flagged`): a list of ``ase.Atoms``, [] for the empty file."""
    import ase.io

    return list(ase.io.read(path, index=":", format="extxyz"))


def disagreement_suite(
    starts,
    baseline,
    calc,
    partners: dict,
    *,
    threshold="auto",
    threshold_factor: float = 3.0,
    flagged_path=None,
    run_name: str | None = None,
    **md_kw,
) -> dict:
    """The disagreement evaluation of one student (ASE calculator ``calc``) against ``partners`` ({run name: ASE
    calculator}): first on the ``baseline`` structures (the test split's own), which set an ``auto`` threshold, then
    :func:`md_disagreement` from each of ``starts`` (``md_kw``: its MD options).  Writes the flagged frames to
    ``flagged_path`` (always, see :func:`write_flagged`; ``info["run"]`` is ``run_name``, ``info["structure"]``
    the start's index) when given.  Returns the JSON-able result (module docstring); raises ValueError without
    partners."""
    if not partners:
        raise ValueError("the disagreement evaluation needs at least one partner model")
    names = sorted(partners)
    test = structures_disagreement(baseline, calc, partners)
    thr, how = resolve_threshold(threshold, test, threshold_factor)
    runs, flagged = [], []
    for k, a in enumerate(starts):
        r = md_disagreement(a, calc, partners, threshold=thr, **md_kw)
        for fr in r.pop("flagged"):
            fr.info.update(run=run_name or "", structure=k)
            flagged.append(fr)
        runs.append({"index": k, **r})
    md_frames = [f for r in runs for f in r["frames"]]
    md, ts = summarize(md_frames, thr), summarize(test, thr)
    out = {
        "partners": names,
        "metric": METRIC,
        "threshold_eV_A": thr,
        "threshold_rule": how,
        "n_md_structures": len(runs),
        "n_test_structures": len(test),
        **{f"md_{k}": v for k, v in md.items()},
        **{f"test_{k}": v for k, v in ts.items()},
    }
    for key in ("mean", "median"):
        m, t = md[f"{key}_eV_A"], ts[f"{key}_eV_A"]
        out[f"ratio_{key}"] = m / t if m is not None and t else None
    out["per_partner"] = {
        name: {
            "md_mean_eV_A": float(np.mean([f["per_partner"][name] for f in md_frames])) if md_frames else None,
            "test_mean_eV_A": float(np.mean([f["per_partner"][name] for f in test])) if test else None,
        }
        for name in names
    }
    out["n_stopped"] = sum(r["stopped"] for r in runs)
    out["n_flagged"] = len(flagged)
    out["flagged_file"] = None
    if flagged_path is not None:
        write_flagged(flagged_path, flagged)
        out["flagged_file"] = Path(flagged_path).name  # beside the JSON
    out["runs"] = runs
    out["test_structures"] = test
    return out
