"""``hessdistill distill``: from a user's own structures to a validated, exported student in one command.

    hessdistill distill my_structures.extxyz --teacher sevenn [--student painn] [--budget 30m] [--profile slurm]

What it does, in order:

1. reads the seed structures (any file ASE reads; periodic crystals, molecules, or both) and checks them;
2. plans the experiment for the budget: the teacher's cost per energy+forces call is measured on the seeds (after a
   warm-up call on each), and the number of sampled frames is chosen so that sampling and teacher labelling
   (energies, forces, Hessian rows) take about a third of the budget; each student trains for about a third, side
   by side; evaluations take the rest.  The plan is a plain workflow config (``<workdir>/config.yaml``, commented):
   a ``sample`` subset (teacher-driven MD, rattles and relaxation paths around the seeds), the teacher, an
   undistilled and a Hessian-distilled student of the same architecture, and the evaluations that judge a
   student for use (accuracy against the teacher, vibrations of molecules / phonons of crystals, MD stability,
   relaxations, speed per MD step, and the disagreement of the two students along the student's own MD);
3. runs the workflow on it (``snakemake -c all``, or ``--profile slurm`` passed through); the config is written
   only when the arguments change (the arguments are recorded in its header), so a second call with the same
   arguments plans nothing and reruns nothing;
4. exports the distilled student for fast use (``<workdir>/student.pt2``, AOTInductor, or TorchScript) unless the
   export there is already of the same model;
5. prints, and writes to ``<workdir>/verdict.md``, a one-paragraph verdict in absolute terms (speed-up per MD
   step, errors relative to the teacher's own force scale, Hessian and frequency errors, spurious imaginary
   modes, MD stability, the students' disagreement along MD) with a warning for every criterion the student
   fails (:data:`CRITERIA`).

``--augment`` (after a first call): the frames where the two students disagree (``eval/flagged.extxyz`` of the
distilled run) become a subset of their own (teacher labels and Hessian rows for these frames only; nothing of the
first subset is recomputed) and a third run, ``distilled-augmented``, trains on both.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from ..core.atomic import atomic_write_text
from ..core.errors import HessdistillError

#: the repository root (the workflow's Snakefile is there; the package is installed from it in editable mode)
REPO = Path(__file__).resolve().parents[3]
CONFIG_NAME = "config.yaml"
HEADER_TAG = "# hessdistill distill arguments: "

#: student architectures the command knows a recipe for (hyper-parameters of a small, fast student)
STUDENT_RECIPES = {
    "painn": {
        "arch": "painn",
        "hidden": 48,
        "num_layers": 3,
        "num_rbf": 16,
        "cutoff": 4.5,
        "avg_num_neighbors": "auto",
    },
    "schnet": {"arch": "schnet", "hidden": 64, "num_filters": 64, "num_interactions": 3, "num_rbf": 32, "cutoff": 4.5},
    "gemnet": {"arch": "gemnet", "cutoff": 4.5},
}

#: verdict criteria: (summary.csv column, comparison, threshold, what it means when failed)
CRITERIA = (
    ("speedup_latency", "min", 3.0, "the student is less than 3x faster than the teacher per MD step"),
    (
        "teacher_force_rel_error",
        "max",
        0.2,
        "force errors above 20% of the teacher's own force scale (|dF|/|F| against the teacher)",
    ),
    ("hessian_rel_error", "max", 0.35, "Hessian errors above 35% of the teacher's Hessian norm on the test frames"),
    (
        "hessian_rel_error_relaxed",
        "max",
        0.35,
        "Hessian errors above 35% of the teacher's Hessian norm at the teacher's minima",
    ),
    ("freq_mae_rel", "max", 0.25, "harmonic frequencies off by more than 25% on average"),
    ("phonon_freq_mae_rel", "max", 0.25, "phonon frequencies off by more than 25% on average"),
    (
        "phonon_n_spurious_imaginary",
        "max",
        0,
        "spurious imaginary phonon modes at the teacher's relaxed crystals (the student's curvature is wrong)",
    ),
    (
        "n_spurious_imaginary",
        "max",
        0,
        "spurious imaginary modes at the teacher's minima (the student's curvature is wrong)",
    ),
    ("md_fraction_stable", "min", 1.0, "MD runs that became unstable"),
    (
        "disagreement_ratio",
        "max",
        3.0,
        "the two students disagree along MD several times more than on the test set: the student extrapolates",
    ),
)

#: teacher labelling work per sampled frame, in energy+forces calls: the labels (1) and the stored Hessian rows
#: (ROWS rows of about 2 calls each) for the 85% of frames in train and test
ROWS = 8
LABEL_CALLS_PER_FRAME = 1 + 0.85 * ROWS * 2.0
#: teacher calls per sampled frame: MD frames (equilibration + sample_every steps), rattles (1), relaxation (3)
SAMPLE_CALLS_PER_FRAME = 3.5


def parse_budget(text: str) -> float:
    """Seconds from ``"30m"``, ``"2h"``, ``"90s"``, ``"1h30m"`` or a bare number of minutes."""
    s = str(text).strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", s):
        return float(s) * 60.0
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*([hms])", s)
    if not parts or "".join(a + b for a, b in parts) != s.replace(" ", ""):
        raise HessdistillError(
            f"--budget {text!r}: not a duration\n  fix: write e.g. 30m, 2h, 1h30m, 600s or a number of minutes"
        )
    seconds = sum(float(v) * {"h": 3600.0, "m": 60.0, "s": 1.0}[u] for v, u in parts)
    if seconds < 60:
        raise HessdistillError(f"--budget {text!r}: at least 1 minute is needed (sampling, labels, two students)")
    return seconds


def read_seeds(path) -> list:
    """The seed structures of ``path`` as the ``sample`` source reads them (:func:`hessdistill.jobs.prepare.
    seed_structures`: any file ASE reads, each structure checked), plus what the plan needs: each seed either fully
    periodic (a crystal: phonons) or not at all (a molecule: vibrations).  Errors name the file and the structure."""
    from ..jobs.prepare import seed_structures

    path = Path(path)
    if not path.is_file():
        raise HessdistillError(f"file {str(path)!r}: no such seed file\n  fix: give an existing structure file")
    frames = [atoms for _, atoms in seed_structures(path, where="seed file")]
    for i, atoms in enumerate(frames):
        if atoms.pbc.any() and not atoms.pbc.all():
            raise HessdistillError(
                f"file {str(path)!r}, structure {i}: periodic along some axes only ({atoms.pbc.tolist()})\n"
                "  fix: give a fully periodic cell (add vacuum along the open axes) or a molecule without a cell"
            )
    return frames


def teacher_key(teacher: str) -> str:
    """A config key (and results folder) for a teacher name: ``mace-off:small`` -> ``mace-off-small``."""
    return re.sub(r"[^A-Za-z0-9_-]+", "-", teacher).strip("-")


def measure_call_seconds(teacher: str, seeds, *, device: str = "cpu", repeats: int = 3) -> float:
    """Median wall time of one teacher energy+forces call on the seeds, each timed after a warm-up call on it
    (weighted: the mean over seeds of each seed's median)."""
    from ..teachers import load_teacher
    from ..teachers.calculator import TeacherCalculator

    calc = TeacherCalculator(load_teacher(teacher, device=device, dtype="float32"))
    per_seed = []
    for atoms in seeds:
        a = atoms.copy()
        a.calc = calc
        a.get_forces()  # warm-up on this shape
        times = []
        for k in range(repeats):
            a.positions[0, 0] += 1e-4 * (k + 1)  # a new geometry: no cached result
            t0 = time.perf_counter()
            a.get_forces()
            times.append(time.perf_counter() - t0)
        per_seed.append(statistics.median(times))
    return float(sum(per_seed) / len(per_seed))


@dataclass
class Plan:
    """What the budget buys (see the module docstring for the split of the budget)."""

    budget_s: float
    call_s: float
    frames: int
    n_trajectories: int
    n_rattle_series: int
    n_relax_series: int
    train_time_s: int
    md_steps: int
    n_eval: int


def plan_budget(budget_s: float, call_s: float) -> Plan:
    frames_per_group = 3
    calls_per_frame = SAMPLE_CALLS_PER_FRAME + LABEL_CALLS_PER_FRAME
    frames = int(max(30, min(3000, 0.3 * budget_s / (calls_per_frame * max(call_s, 1e-4)))))
    groups = max(10, frames // frames_per_group)
    n_traj = max(6, round(0.6 * groups))
    n_rattle = max(2, round(0.15 * groups))
    n_relax = max(2, groups - n_traj - n_rattle)
    # evaluation sizes: a few minutes buy a smoke test (one structure per protocol, 100 MD steps), a quarter of an
    # hour a rough verdict, more the protocol sizes of the embedded default
    tier = 0 if budget_s < 5 * 60 else (1 if budget_s < 15 * 60 else 2)
    return Plan(
        budget_s=budget_s,
        call_s=call_s,
        frames=frames_per_group * (n_traj + n_rattle + n_relax),
        n_trajectories=n_traj,
        n_rattle_series=n_rattle,
        n_relax_series=n_relax,
        train_time_s=max(20, int(0.3 * budget_s)),
        md_steps=(100, 200, 500)[tier],
        n_eval=(1, 2, 5)[tier],
    )


def _yaml(value) -> str:
    return json.dumps(value)


def render_config(
    *, name: str, seeds_path: Path, seeds, teacher: str, student: str, plan: Plan, augment_from: Path | None
) -> str:
    """The workflow config for one distillation (YAML, commented); see :func:`plan_budget`."""
    tkey = teacher_key(teacher)
    periodic = [a for a in seeds if a.pbc.any()]
    molecular = [a for a in seeds if not a.pbc.any()]
    max_atoms = max(40, max(len(a) for a in seeds))
    recipe = STUDENT_RECIPES[student]
    evaluations = ["test"]
    if molecular:
        evaluations.append("vibrations")
    if periodic:
        evaluations.append("phonons")
    evaluations += ["md", "relax", "speed", "disagreement"]
    L = []
    w = L.append
    w(
        f"# Written by `hessdistill distill` for {seeds_path.name}: {len(seeds)} seed structure(s), {len(periodic)} periodic,"
    )
    w(f"# {len(molecular)} molecular; teacher {teacher}, student {student}, budget {plan.budget_s / 60:.0f} min.")
    w(f"# Teacher cost measured on the seeds: {plan.call_s * 1e3:.1f} ms per energy+forces call (after warm-up).")
    w("# Edit freely and rerun `snakemake -c all --configfile config.yaml` in this folder (or the same distill")
    w("# command with other arguments, which rewrites this file): only the jobs whose settings change run again.")
    w("use_gpu: false")
    w("resources:")
    w("  train: {threads: 1}            # the two students train side by side")
    w("  evaluate_device: {threads: 1}")
    w("subsets:")
    w(f"  {name}:")
    w("    source:")
    w("      name: sample                # teacher-driven sampling around the seeds (hessdistill.data.sampling)")
    w(f"      path: {_yaml(str(seeds_path))}")
    w("      options:")
    w(f"        teacher: {_yaml(teacher)}")
    w("        dtype: float32")
    w("        temperatures_K: [100.0, 300.0, 500.0]   # Langevin MD around the seeds")
    w("        strains: [-0.01, 0.0, 0.01]             # periodic seeds only")
    w("        supercells: [[1, 1, 1], [2, 1, 1], [2, 2, 1]]   # periodic seeds, up to max_atoms")
    w(f"        max_atoms: {max_atoms}")
    w("        rattle_sigma: 0.03")
    w("        shear_sigma: 0.005")
    w("        relax_rattle_sigma: 0.08")
    w(
        f"        n_trajectories: {plan.n_trajectories}            # {plan.frames} frames in all, 3 per trajectory/series"
    )
    w("        frames_per_trajectory: 3")
    w(f"        n_rattle_series: {plan.n_rattle_series}")
    w(f"        n_relax_series: {plan.n_relax_series}            # relaxation paths: frames down to the minima")
    w("        seed: 0")
    w("    split:")
    w("      fractions: {train: 0.7, val: 0.15, test: 0.15}")
    w("      seed: 0")
    w("      group_by: trajectory        # no MD run or relaxation path straddles two splits")
    if augment_from is not None:
        w(
            f"  {name}-flagged:                # frames where the students disagreed along MD (hessdistill distill --augment)"
        )
        w("    source:")
        w("      name: sample")
        w(f"      path: {_yaml(str(augment_from))}")
        w("      options:")
        w(f"        teacher: {_yaml(teacher)}")
        w("        dtype: float32")
        w("        seed_frames: true         # the flagged frames themselves, labelled by the teacher; no sampling")
        w("        n_trajectories: 0")
        w("        n_rattle_series: 0")
        w("        n_relax_series: 0")
        w(f"        max_atoms: {max_atoms}")
        w("        seed: 0")
        w("    split:")
        w("      counts: {train: rest, val: 0, test: 0}   # empty val/test: labelling and training need only train")
        w("      seed: 0")
    w("teachers:")
    w(f"  {tkey}:")
    w(f"    model: {_yaml(teacher)}")
    w("    dtype: float32")
    w(f"    rows: {ROWS}                       # Hessian rows stored per structure (all rows of small structures)")
    w("    hessian_splits: [train, test]")
    w("    row_seed: 0")
    w("runs:")
    # the default's recipe (config.yaml): energy weight 20, cosine schedule, the same time for every student; the
    # distilled runs add the teacher's Hessians (lambda_H 50, one row per structure and step, first half only)
    common = [
        "    batch_size: 8",
        "    max_epochs: 5000",
        f"    max_time_s: {plan.train_time_s}",
        "    lr_schedule: cosine",
        "    min_lr: 1.0e-5",
        "    seed: 0",
    ]
    hessian = [
        "    student: *student",
        "    method: hessian",
        "    rows_per_structure: 1",
        "    weights: {energy: 20, hessian: 50}",
        "    hessian_until: 0.5",
    ]
    L.append("  undistilled:                     # the same student trained on teacher energies and forces only")
    L += [f"    student: &student {_yaml(recipe)}", "    method: undistilled", "    weights: {energy: 20}"] + common
    L.append("  distilled:                       # + the teacher's Hessians")
    L += hessian + common
    if augment_from is not None:
        L.append("  distilled-augmented:             # the distilled recipe on the sampled frames + the flagged ones")
        L += hessian + common + [f"    extra_train_subsets: [{name}-flagged]"]
    w("evaluation:")
    w(f"  evaluations: {_yaml(evaluations)}")
    w("  split: test")
    w("  teacher_dtype: float64")
    teacher_evals = [e for e in ("test", "vibrations", "speed") if e in evaluations]
    w(f"  evaluate_teachers: {_yaml(teacher_evals)}")
    w("  protocol:")
    w(f"    test: {{max_hessian_structures: {plan.n_eval}}}")
    if molecular:
        w(f"    vibrations: {{n_structures: {plan.n_eval}, fmax: 0.01, max_steps: 200}}")
    if periodic:
        w("    phonons: {n_structures: 1, fmax: 0.01, max_steps: 200, symmetrize: 0.25}")
    w(f"    md: {{n_structures: {plan.n_eval}, steps: {plan.md_steps}, log_every: 10}}")
    w(f"    relax: {{n_structures: {plan.n_eval}, max_steps: 100}}")
    w("    speed: {n_structures: 8, batch_size: 8, repeats: 3, warmup: 1}")
    # explicit partners (not `auto`): a third run added by --augment must not change the first two runs'
    # evaluations, whose flagged frames it trains on
    w(f"    disagreement: {{partners: [undistilled, distilled], n_structures: {plan.n_eval}, steps: {plan.md_steps}}}")
    w("report:")
    w(f"  title: {_yaml(f'hessdistill distill: {name}, {teacher} teacher, {student} student')}")
    return "\n".join(L) + "\n"


def arguments_fingerprint(args: dict) -> str:
    return hashlib.sha256(json.dumps(args, sort_keys=True).encode()).hexdigest()[:16]


def recorded_header(config_path: Path) -> tuple[str, dict] | None:
    """(fingerprint, recorded arguments + the measured teacher cost) of a config written by this command."""
    try:
        first = config_path.read_text().splitlines()[0]
    except (OSError, IndexError):
        return None
    if not first.startswith(HEADER_TAG):
        return None
    fingerprint, _, payload = first[len(HEADER_TAG) :].partition(" ")
    try:
        return fingerprint, json.loads(payload)
    except ValueError:
        return fingerprint, {}


def recorded_fingerprint(config_path: Path) -> str | None:
    header = recorded_header(config_path)
    return None if header is None else header[0]


def write_config(workdir: Path, text: str, fingerprint: str, arguments: dict, call_s: float | None = None) -> Path:
    path = workdir / CONFIG_NAME
    record = {**arguments, "measured_call_seconds": call_s}
    atomic_write_text(path, f"{HEADER_TAG}{fingerprint} {json.dumps(record, sort_keys=True)}\n{text}")
    return path


def snakemake_command(
    workdir: Path, config_path: Path, *, cores: str, profile: str | None, dry_run: bool, extra=()
) -> list[str]:
    snakefile = REPO / "Snakefile"
    if not snakefile.is_file():
        raise HessdistillError(
            f"the workflow (Snakefile) is not at {snakefile}: hessdistill distill runs the workflow of a source "
            "checkout\n  fix: pip install -e . from a clone of the repository"
        )
    exe = Path(sys.executable).parent / "snakemake"
    cmd = [str(exe) if exe.exists() else (shutil.which("snakemake") or "snakemake")]
    cmd += ["--snakefile", str(snakefile), "--directory", str(workdir), "--configfile", str(config_path)]
    if profile:
        prof = Path(profile)
        if not prof.exists() and (REPO / "profiles" / profile).is_dir():
            prof = REPO / "profiles" / profile
        cmd += ["--profile", str(prof)]
    else:
        cmd += ["-c", cores]
    cmd += ["--show-failed-logs"]
    if dry_run:
        cmd.append("-n")
    return cmd + list(extra)


def export_distilled(run_dir: Path, out: Path, fmt: str) -> str:
    """Export ``run_dir/model.pt`` to ``out`` unless ``out`` already holds an export of that very file (its digest
    is recorded in ``<out>.json``); return what was done."""
    from ..core.digest import file_digest

    model = run_dir / "model.pt"
    if not model.is_file():
        raise HessdistillError(f"file {str(model)!r}: the distilled student was not trained (see the workflow log)")
    digest = file_digest(model)
    record = out.with_name(out.name + ".json")
    if out.is_file() and record.is_file():
        try:
            if json.loads(record.read_text()).get("source_sha256") == digest:
                return f"{out} is up to date"
        except ValueError:
            pass
    from ..students.checkpoint import load_student
    from ..students.export import export_student

    student, _ = load_student(model, device="cpu")
    meta = export_student(student, out, fmt=fmt, source=model, device="cpu")
    atomic_write_text(
        record, json.dumps({"source": str(model), "source_sha256": digest, **meta}, indent=1, default=str)
    )
    return f"wrote {out} ({meta['export_format']}, {meta['n_params']:,} parameters)"


def _number(row: dict, key: str) -> float | None:
    v = row.get(key)
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def read_summary(workdir: Path, name: str, teacher: str) -> dict[str, dict]:
    """``{run: row}`` of ``results/report/summary.csv`` for this subset and teacher."""
    path = workdir / "results" / "report" / "summary.csv"
    if not path.is_file():
        raise HessdistillError(f"file {str(path)!r}: no report (the workflow did not finish)")
    with path.open() as fh:
        return {
            row["run"]: row
            for row in csv.DictReader(fh)
            if row.get("subset") == name and row.get("teacher") == teacher_key(teacher)
        }


def _pct(x) -> str:
    return "n/a" if x is None else f"{100 * x:.0f}%"


def _fmt(x, spec=".2f", none="n/a") -> str:
    return none if x is None else format(x, spec)


def verdict(rows: dict[str, dict], run: str = "distilled", baseline: str = "undistilled") -> tuple[str, list[str]]:
    """A one-paragraph verdict on ``run`` in absolute terms, and the warnings (one per failed :data:`CRITERIA`)."""
    if run not in rows:
        raise HessdistillError(f"the report has no row for run {run!r} (runs found: {sorted(rows)})")
    r, b = rows[run], rows.get(baseline, {})
    g = {k: _number(r, k) for k, *_ in CRITERIA}
    g.update({k: _number(r, k) for k in ("teacher_energy_mae_meV_atom", "teacher_force_mae_meV_A", "params")})
    hb = _number(b, "hessian_rel_error")
    pieces = [
        f"The distilled student ({_fmt(g['params'], ',.0f')} parameters) is {_fmt(g['speedup_latency'], '.1f')}x "
        "faster than the teacher per MD step",
        f"its forces differ from the teacher's by {_fmt(g['teacher_force_mae_meV_A'], '.1f')} meV/Å "
        f"({_fmt(None if g['teacher_force_rel_error'] is None else 100 * g['teacher_force_rel_error'], '.1f')}% of "
        f"the teacher's force scale) and its energies by {_fmt(g['teacher_energy_mae_meV_atom'], '.2f')} meV/atom",
        f"its Hessians by {_pct(g['hessian_rel_error'])} of the teacher's on the test frames (undistilled: {_pct(hb)})"
        + (
            ""
            if g["hessian_rel_error_relaxed"] is None
            else f" and by {_pct(g['hessian_rel_error_relaxed'])} at the teacher's minima (undistilled: "
            f"{_pct(_number(b, 'hessian_rel_error_relaxed'))})"
        ),
    ]
    modes = []
    if g["freq_mae_rel"] is not None:
        modes.append(f"harmonic frequencies off by {100 * g['freq_mae_rel']:.0f}%")
    if g["n_spurious_imaginary"] is not None:
        modes.append(f"{g['n_spurious_imaginary']:.0f} spurious imaginary mode(s) at the teacher's minima")
    if modes:
        pieces.append(" and ".join(modes))
    if g["phonon_freq_mae_rel"] is not None or g["phonon_n_spurious_imaginary"] is not None:
        pieces.append(
            f"phonon frequencies off by {_pct(g['phonon_freq_mae_rel'])} with "
            f"{_fmt(g['phonon_n_spurious_imaginary'], '.0f')} spurious imaginary mode(s)"
        )
    pieces.append(
        f"{_fmt(None if g['md_fraction_stable'] is None else 100 * g['md_fraction_stable'], '.0f')}% of its MD runs stayed stable"
    )
    if g["disagreement_ratio"] is not None:
        pieces.append(
            f"along its own MD the two students disagree {_fmt(g['disagreement_ratio'], '.1f')}x as much as on the "
            f"test set ({_fmt(_number(r, 'n_flagged_frames'), '.0f')} frame(s) flagged)"
        )
    warnings = []
    for key, kind, limit, meaning in CRITERIA:
        v = g[key]
        if v is None:
            continue
        if (kind == "min" and v < limit) or (kind == "max" and v > limit):
            warnings.append(f"{meaning} ({key} = {v:.3g}, limit {limit:g})")
    verdict_word = "usable" if not warnings else "NOT ready to use"
    text = "; ".join(pieces) + f". Verdict: {verdict_word}."
    return text, warnings


def run_distill(
    seeds_file,
    *,
    teacher: str = "sevenn",
    student: str = "painn",
    budget: str = "30m",
    workdir=None,
    cores: str = "all",
    profile: str | None = None,
    dry_run: bool = False,
    augment: bool = False,
    export_format: str = "aoti",
    call_seconds: float | None = None,
    snakemake_args=(),
    out=print,
) -> int:
    """The ``hessdistill distill`` command (see the module docstring); returns the exit status."""
    seeds_path = Path(seeds_file).resolve()
    seeds = read_seeds(seeds_path)
    if student not in STUDENT_RECIPES:
        raise HessdistillError(
            f"--student {student!r}: no recipe for it\n  fix: choose one of {sorted(STUDENT_RECIPES)}"
        )
    budget_s = parse_budget(budget)
    name = re.sub(r"[^A-Za-z0-9_-]+", "-", seeds_path.stem).strip("-") or "seeds"
    workdir = Path(workdir or f"distill-{name}").resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    tkey = teacher_key(teacher)
    flagged = workdir / "results" / name / "runs" / tkey / "distilled" / "eval" / "flagged.extxyz"
    if augment:
        if not flagged.is_file():
            raise HessdistillError(
                f"--augment: {flagged} does not exist yet\n  fix: run the same command without --augment first"
            )
        from ..evaluation.disagreement import read_flagged

        if not read_flagged(flagged):
            out(f"--augment: no frames were flagged in {flagged}: nothing to add; the student stays as it is.")
            augment = False
    arguments = {
        "seeds": str(seeds_path),
        "teacher": teacher,
        "student": student,
        "budget_s": budget_s,
        "augment": augment,
        "call_seconds": call_seconds,
    }
    fingerprint = arguments_fingerprint(arguments)
    config_path = workdir / CONFIG_NAME
    if recorded_fingerprint(config_path) == fingerprint:
        out(f"{config_path}: written earlier for the same arguments; kept as it is")
    else:
        if config_path.exists() and recorded_fingerprint(config_path) is None:
            raise HessdistillError(
                f"file {str(config_path)!r} exists and was not written by hessdistill distill\n"
                "  fix: choose another --workdir, or move that file away"
            )
        # the teacher's cost is measured once per seeds and teacher: other students, budgets or --augment reuse it,
        # so that they change only what they must (the same budget keeps the same sampled subset)
        earlier = (recorded_header(config_path) or ("", {}))[1]
        if call_seconds is not None:
            call_s = call_seconds
        elif (
            earlier.get("seeds") == arguments["seeds"]
            and earlier.get("teacher") == teacher
            and earlier.get("measured_call_seconds") is not None
        ):
            call_s = float(earlier["measured_call_seconds"])
            out(f"teacher cost {call_s * 1e3:.1f} ms per call, as measured for {config_path} earlier")
        else:
            call_s = measure_call_seconds(teacher, seeds)
        plan = plan_budget(budget_s, call_s)
        text = render_config(
            name=name,
            seeds_path=seeds_path,
            seeds=seeds,
            teacher=teacher,
            student=student,
            plan=plan,
            augment_from=flagged if augment else None,
        )
        write_config(workdir, text, fingerprint, arguments, call_s)
        out(
            f"wrote {config_path}: {plan.frames} sampled frames ({call_s * 1e3:.1f} ms per teacher call), "
            f"{plan.train_time_s} s per student"
        )
    cmd = snakemake_command(workdir, config_path, cores=cores, profile=profile, dry_run=dry_run, extra=snakemake_args)
    out("running: " + " ".join(cmd))
    rc = subprocess.run(cmd, env={**os.environ, "PYTHONPATH": _pythonpath()}).returncode
    if rc != 0 or dry_run:
        return rc
    final = "distilled-augmented" if augment else "distilled"
    suffix = ".pt2" if export_format == "aoti" else ".pt"
    out(
        export_distilled(
            workdir / "results" / name / "runs" / tkey / final, workdir / f"student{suffix}", export_format
        )
    )
    rows = read_summary(workdir, name, teacher)
    text, warnings = verdict(rows, run=final)
    lines = [text, ""] + [f"WARNING: {w}" for w in warnings]
    if not augment and (_number(rows[final], "n_flagged_frames") or 0) > 0:
        lines.append(
            f"Frames flagged by the students' disagreement: {flagged}; add them to the training set with the same "
            "command and --augment (teacher labels and Hessians for these frames only)."
        )
    lines.append(
        f"Student for use: {workdir / f'student{suffix}'} (hessdistill.deployed.FastCalculator); report: "
        f"{workdir / 'results' / 'report' / 'summary.md'}"
    )
    atomic_write_text(workdir / "verdict.md", "\n".join(lines) + "\n")
    out("\n".join(lines))
    return 0


def _pythonpath() -> str:
    src = str(REPO / "src")
    rest = os.environ.get("PYTHONPATH", "")
    return src if not rest else f"{src}{os.pathsep}{rest}"
