"""Paper-style tables and figures from a workflow's evaluation files.

Input: the ``eval/{test,speed,md,relax,vibrations}.json`` files of every student run and teacher pseudo-run
(``results/{subset}/runs/{teacher}/{run}/eval/*.json``, ``results/{subset}/teachers/{teacher}/eval/*.json``)
and each run's ``log.csv``/``summary.json`` (the layout of :mod:`hessdistill.core.paths`).  An evaluation JSON
that carries an ``identity`` object ({subset, teacher, run}, written by the evaluation job) is filed under it;
files without one (older results, logs, summaries) by their path.  Output (one folder):

* ``table_accuracy.{md,csv,tex}``: the paper's Table 1 layout, per teacher: rows teacher, then one row per run
  (method), columns per subset energy MAE, force MAE and |ΔF| / |F|.  The first table is the paper's metric,
  every row against the subset's reference labels (the teacher row: the teacher's own error against them),
  with the paper's numbers beside where recovered; the second, apart, the students against the teacher.  The
  best student value of every column is marked (bold in md/tex, ``best_*`` columns in csv).
* ``table_speed``: parameters, MD-step latency, batched throughput and the speed-ups against the teacher.
* ``table_dynamics``: MD stability (fraction stable, survival time), NVE drift (stable runs only), relaxation
  success and errors, harmonic-frequency MAE, Hessian MAE; averages as "mean ± s.e. (n structures)"; where runs
  have a ``disagreement`` evaluation, a second table: the force disagreement with their partner students in MD and
  on the test structures, the ratio of the two and the flagged frames.
* figures (PNG): force MAE against the reference labels vs speed-up (the teacher's own error as a line), the
  student-size sweep (force MAE vs parameters and vs speed-up, one line per method, when a subset has runs of
  one architecture at several sizes), force parity per run, NVE total-energy traces, MD stability, training
  curves, phonons.
* ``summary.csv``/``summary.md``: one flat row per run (every metric), and an index of the above.

Every writer is atomic (temp file, then rename).  Missing evaluations leave "-" cells, never a failure.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from .core.atomic import atomic_path, atomic_write_text
from .core.paths import TEACHER_RUN, identify

TEACHER = TEACHER_RUN
FIGURES = (
    "fig_accuracy_vs_speed.png",
    "fig_parity.png",
    "fig_md_energy.png",
    "fig_stability.png",
    "fig_training.png",
    "fig_phonons.png",
    "fig_size_sweep.png",
)
TABLES = ("table_accuracy", "table_speed", "table_dynamics")


# ----------------------------------------------------------------------------------------------- collect
@dataclass
class Record:
    """Everything known about one (subset, teacher, run); run == "teacher" for the teacher pseudo-run."""

    subset: str
    teacher: str
    run: str
    method: str
    evals: dict = field(default_factory=dict)
    log: list = field(default_factory=list)
    summary: dict = field(default_factory=dict)

    @property
    def is_teacher(self) -> bool:
        return self.run == TEACHER

    def get(self, evaluation: str, *keys, default=None):
        d = self.evals.get(evaluation)
        for k in keys:
            if not isinstance(d, dict) or k not in d:
                return default
            d = d[k]
        return default if d is None else d


def _identity(data) -> tuple[str, str, str] | None:
    """(subset, teacher, run) from an evaluation's ``identity`` object (written by the evaluation job; run None
    or absent for the teacher pseudo-run), or None for files without it (results of older versions)."""
    ident = data.get("identity") if isinstance(data, dict) else None
    if not isinstance(ident, dict) or not ident.get("subset") or not ident.get("teacher"):
        return None
    return str(ident["subset"]), str(ident["teacher"]), str(ident.get("run") or TEACHER)


def collect(paths, runs_config: dict | None = None) -> list[Record]:
    """Records from evaluation JSONs, run log.csv and summary.json files (any order), sorted teacher first."""
    runs_config = runs_config or {}
    recs: dict[tuple, Record] = {}
    for p in map(Path, paths):
        name = p.name
        try:
            by_path, bad_path = identify(p)[:3], None
        except ValueError as exc:
            by_path, bad_path = None, exc
        is_eval = name.endswith(".json") and name != "summary.json"
        if by_path is None and not (is_eval and p.is_file()):
            raise bad_path
        data = json.loads(p.read_text()) if name.endswith(".json") else None
        # an evaluation says whose it is (identity); other files, and evaluations without it, by their path
        ident = _identity(data) if is_eval else None
        if ident is None and by_path is None:
            raise bad_path
        subset, teacher, run = ident or by_path
        method = TEACHER if run == TEACHER else runs_config.get(run, {}).get("method", "?")
        rec = recs.setdefault((subset, teacher, run), Record(subset, teacher, run, method))
        if name == "log.csv":
            rec.log = [{k: _num(v) for k, v in row.items()} for row in csv.DictReader(io.StringIO(p.read_text()))]
        elif name == "summary.json":
            rec.summary = data
            rec.method = rec.summary.get("method", rec.method)
        elif name.endswith(".json"):
            rec.evals[name[:-5]] = data
    order = list(runs_config)
    return sorted(
        recs.values(),
        key=lambda r: (
            r.subset,
            r.teacher,
            not r.is_teacher,
            order.index(r.run) if r.run in order else len(order),
            r.run,
        ),
    )


def _num(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return v


# ----------------------------------------------------------------------------------------------- tables
@dataclass
class Table:
    """A table of cells; ``best[(row, col)]`` marks best values; ``notes`` go under the table."""

    title: str
    header: list
    rows: list
    best: set = field(default_factory=set)
    notes: list = field(default_factory=list)
    #: unformatted values (same shape as rows) for the CSV; None cells are written empty
    raw: list | None = None

    def to_markdown(self) -> str:
        def cell(text) -> str:  # a '|' inside a cell (|NVE drift|, |ΔF| / |F|) would end the cell
            return str(text).replace("|", "\\|")

        out = [
            f"### {self.title}",
            "",
            "| " + " | ".join(cell(h) for h in self.header) + " |",
            "|" + "---|" * len(self.header),
        ]
        for i, row in enumerate(self.rows):
            cells = [
                f"**{cell(c)}**" if (i, j) in self.best and c not in ("", "-") else cell(c) for j, c in enumerate(row)
            ]
            out.append("| " + " | ".join(cells) + " |")
        out += [""] + [f"{n}" for n in self.notes]
        return "\n".join(out) + "\n"

    def to_csv(self) -> str:
        buf = io.StringIO()
        w = csv.writer(buf)
        marked = sorted({j for _, j in self.best})
        w.writerow(list(self.header) + [f"best_{self.header[j]}" for j in marked])
        for i, row in enumerate(self.rows):
            cells = row if self.raw is None else ["" if v is None else v for v in self.raw[i]]
            w.writerow(list(cells) + [int((i, j) in self.best) for j in marked])
        return buf.getvalue()

    def to_latex(self) -> str:
        def esc(s):
            s = str(s)
            for a, b in (
                ("\\", r"\textbackslash{}"),
                ("&", r"\&"),
                ("%", r"\%"),
                ("_", r"\_"),
                ("#", r"\#"),
                ("Å²", r"\AA$^2$"),
                ("Å", r"\AA{}"),
                ("±", r"$\pm$"),
                ("→", r"$\to$"),
            ):
                s = s.replace(a, b)
            return s

        lines = [
            r"\begin{table}[t]",
            r"\centering",
            rf"\caption{{{esc(self.title)}}}",
            r"\begin{tabular}{l" + "r" * (len(self.header) - 1) + "}",
            r"\toprule",
            " & ".join(esc(h) for h in self.header) + r" \\",
            r"\midrule",
        ]
        for i, row in enumerate(self.rows):
            cells = [
                rf"\textbf{{{esc(c)}}}" if (i, j) in self.best and c not in ("", "-") else esc(c)
                for j, c in enumerate(row)
            ]
            lines.append(" & ".join(cells) + r" \\")
        lines += [r"\bottomrule", r"\end{tabular}"]
        lines += [rf"\par\footnotesize {esc(n)}" for n in self.notes]
        lines.append(r"\end{table}")
        return "\n".join(lines) + "\n"


def fmt(v, digits: int = 2) -> str:
    if v is None or (isinstance(v, float) and (math.isnan(v) or math.isinf(v))):
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        if v != 0 and (abs(v) >= 10**6 or abs(v) < 10**-digits):
            return f"{v:.{max(digits, 1)}g}"
        return f"{v:.{digits}f}"
    return str(v)


def _mark_best(table: Table, values: list[list], lower_is_better=True, skip_rows=()):
    """Mark, per column, the best numeric value among rows not in ``skip_rows`` (ties all marked)."""
    for j in range(len(table.header)):
        col = [
            (i, values[i][j])
            for i in range(len(values))
            if i not in skip_rows
            and isinstance(values[i][j], (int, float))
            and not isinstance(values[i][j], bool)
            and not math.isnan(values[i][j])
        ]
        if len(col) < 2:
            continue
        best = min(v for _, v in col) if lower_is_better else max(v for _, v in col)
        table.best |= {(i, j) for i, v in col if v == best}


def _mark_students(table: Table, values, records, *, low=(), high=()):
    """Mark the best student per column: lowest in the ``low`` columns, highest in the ``high`` ones."""
    teacher_rows = {i for i, r in enumerate(records) if r.is_teacher}
    for cols, lower in ((low, True), (high, False)):
        masked = [[x if j in cols else None for j, x in enumerate(v)] for v in values]
        _mark_best(table, masked, lower_is_better=lower, skip_rows=teacher_rows)


def _row_label(r: Record) -> str:
    return f"Teacher ({r.teacher})" if r.is_teacher else r.run


#: the two groups of the accuracy table: key prefix in test.json, title, whether the teacher has a row
ACCURACY_GROUPS = (
    (
        "ref_",
        "Table 1: test accuracy against the reference labels ({teacher} as teacher): energy MAE per atom "
        "and force MAE per component",
        True,
    ),
    (
        "teacher_",
        "Test accuracy against the teacher ({teacher}): energy MAE per atom and force MAE per component",
        False,
    ),
)


def accuracy_tables(records: list[Record], digits: int = 2, paper: dict | None = None) -> list[Table]:
    """The paper's Table 1 layout, two groups per teacher: rows = teacher + runs, columns = subsets, cells
    'E MAE', 'F MAE', '|ΔF| / |F|'.  First the paper's metric, every row against the subset's reference labels
    (DFT for SPICE/MPtrj/MD22; the teacher row is the teacher's own error against them); then, clearly apart,
    the students against the teacher's predictions (what distillation transfers).
    ``paper``: optional {subset: {run or "teacher": "E / F" string}} printed beside the first group only (the
    paper's numbers are against the reference labels)."""
    tables = []
    for teacher in sorted({r.teacher for r in records}):
        recs = [r for r in records if r.teacher == teacher]
        subsets = sorted({r.subset for r in recs})
        runs = []
        for r in recs:
            if r.run not in runs:
                runs.append(r.run)
        for key, title, with_teacher in ACCURACY_GROUPS:
            group_paper = paper if with_teacher else None
            group_runs = [run for run in runs if with_teacher or run != TEACHER]
            tables.append(
                _accuracy_table(recs, group_runs, subsets, key, title.format(teacher=teacher), digits, group_paper)
            )
    return tables


def _accuracy_table(recs, runs, subsets, key, title, digits, paper) -> Table:
    header = ["model", "method", "params"]
    for s in subsets:
        header += [f"{s}: E MAE (meV/atom)", f"{s}: F MAE (meV/Å)", f"{s}: |ΔF| / |F| (%)"]
        if paper and s in paper:
            header.append(f"{s}: paper E / F")
    rows, vals, raw = [], [], []
    for run in runs:
        row_recs = {r.subset: r for r in recs if r.run == run}
        any_rec = next(iter(row_recs.values()))
        row = [_row_label(any_rec), any_rec.method, fmt(any_rec.get("test", "n_params"))]
        v = [None, None, None]
        rv = [row[0], row[1], any_rec.get("test", "n_params")]
        for s in subsets:
            r = row_recs.get(s)
            e = f_ = rel = None
            if r is not None:
                e, f_ = r.get("test", f"{key}energy_mae_meV_atom"), r.get("test", f"{key}force_mae_meV_A")
                rel = r.get("test", f"{key}force_rel_error")
                rel = None if rel is None else 100.0 * rel
            row += [fmt(e, digits), fmt(f_, digits), fmt(rel, 1)]
            v += [e, f_, rel]
            rv += [e, f_, rel]
            if paper and s in paper:
                row.append(str(paper[s].get(run, "paper: not available")))
                v.append(None)
                rv.append(row[-1])
        rows.append(row)
        vals.append(v)
        raw.append(rv)
    notes = [
        "Best student value per column in bold.",
        "Force error on the target's own scale, |ΔF| / |F|: the mean norm of the force error over all test "
        "atoms divided by the mean norm of the target forces.",
    ]
    if key == "ref_":
        notes.insert(
            1,
            "Every row against the subset's reference labels, as the paper's Table 1; the teacher row "
            "is the teacher's own error against them (zero where the reference labels are the "
            "teacher's own, as in the built-in datasets generated by the teacher).",
        )
        for r in recs:
            off = r.get("test", "ref_energy_mae_offset_free_meV_atom") if r.is_teacher else None
            if off is not None and r.get("test", "ref_energy_mae_meV_atom"):
                shift = r.get("test", "ref_energy_offset_mean_meV_atom")
                notes.append(
                    f"Teacher on {r.subset}: energy MAE {fmt(off, digits)} meV/atom after per-element "
                    f"offsets fitted on the {r.get('test', 'ref_energy_offsets_fitted_on', default='train')} "
                    f"split (on average {fmt(shift, 1)} meV/atom on the test structures): the part of its "
                    "energy error that is not a different zero of energy."
                )
    else:
        notes.insert(
            1,
            "Students against the teacher's own energies and forces on the same test structures: how "
            "much of the teacher distillation transferred (not the paper's metric).",
        )
    t = Table(title, header, rows, notes=notes, raw=raw)
    _mark_best(t, vals, skip_rows={i for i, run in enumerate(runs) if run == TEACHER})
    return t


def _by_size(r: Record) -> str | None:
    """'5: 18x, 20: 36x, 500: 21x' (atoms: latency speed-up) from a student's speed evaluation."""
    rows = r.get("speed", "speedup_latency_by_size") if "speed" in r.evals and not r.is_teacher else None
    if not rows:
        return None
    return ", ".join(f"{x['n_atoms']}: {x['speedup']:.0f}x" for x in rows)


def speed_table(records: list[Record], digits: int = 2) -> Table:
    header = [
        "subset",
        "teacher",
        "model",
        "params",
        "device",
        "latency (ms/step)",
        "speed-up (latency)",
        "throughput (structures/s)",
        "speed-up (throughput)",
        "ns/day (1 fs)",
        "train time (s)",
        "speed-up (latency) by size, atoms: ratio",
        "student timed as",
    ]
    rows, vals = [], []
    for r in records:
        side = "teacher" if r.is_teacher else "student"
        sp = r.get("speed", side, default={}) if "speed" in r.evals else {}
        timed = None
        if not r.is_teacher and "speed" in r.evals:
            timed = r.get("speed", "student_format")
        elif r.is_teacher and "speed" in r.evals:
            timed = "teacher, batched" if sp.get("batched") else "teacher, one structure at a time"
        v = [
            r.subset,
            r.teacher,
            _row_label(r),
            r.get("test", "n_params") or r.get("speed", "student_params"),
            r.get("speed", "device"),
            sp.get("latency_ms"),
            None if r.is_teacher else r.get("speed", "speedup_latency"),
            sp.get("throughput_structures_s"),
            None if r.is_teacher else r.get("speed", "speedup_throughput"),
            sp.get("ns_per_day"),
            r.summary.get("train_time_s"),
            _by_size(r),
            timed,
        ]
        rows.append([fmt(x, digits) if not isinstance(x, str) else x for x in v])
        vals.append(v)
    t = Table(
        "Speed: MD-step latency (one structure) and batched throughput, student and teacher measured in "
        "one process on the same device",
        header,
        rows,
        raw=vals,
        notes=[
            "Lowest latency / highest throughput and speed-up per column in bold (students only).",
            "Latency is per MD step on the subset's smallest structure (its own sizes and a large supercell "
            "in the by-size column), after warm-up on every size; the student runs as a user runs it (the "
            "exported program with a Verlet list), the teacher in float32 and, where its adapter can, "
            "batched.",
        ],
    )
    _mark_students(t, vals, records, low=(5,), high=(6, 7, 8, 9))
    return t


def _mean_se(values) -> dict:
    """``{"mean", "se", "n"}`` over the non-None values (se = sample std / sqrt(n); None for n < 2)."""
    v = [float(x) for x in values if x is not None]
    n = len(v)
    mean = sum(v) / n if n else None
    se = math.sqrt(sum((x - mean) ** 2 for x in v) / (n - 1) / n) if n > 1 else None
    return {"mean": mean, "se": se, "n": n}


def _stat(r: Record, evaluation: str, mean_key: str, per_structure=None) -> dict:
    """Mean, standard error and n of one metric over structures: recomputed from the per-structure records when
    the file has them (``per_structure(eval dict) -> values or None``), else the stored mean (n unknown)."""
    d = r.evals.get(evaluation)
    if not isinstance(d, dict):
        return {"mean": None, "se": None, "n": None}
    values = per_structure(d) if per_structure else None
    if values is not None:
        return _mean_se(values)
    return {"mean": r.get(evaluation, mean_key), "se": None, "n": None}


def _md_runs(d, key):
    runs = d.get("runs") or []
    if not runs or not all(isinstance(x, dict) and "stable" in x for x in runs):
        return None
    if key == "survival":
        return [x.get("simulated_time_ps") if x["stable"] else x.get("time_to_collapse_ps") for x in runs]
    # drift: stable runs only (a collapsed run's drift is no conservation measure), absolute values
    return [abs(x["drift_meV_atom_ps"]) for x in runs if x["stable"] and x.get("drift_meV_atom_ps") is not None]


def _relax_structs(d, key):
    recs = d.get("structures")
    if not recs:
        return None
    both = [x for x in recs if x.get("model_converged") and x.get("teacher_converged")]
    if key == "energy":
        return [abs(x["energy_error_meV_atom"]) for x in both if x.get("energy_error_meV_atom") is not None]
    return [x.get("rmsd_A") for x in both]


def _vib_runs(d, key="freq_mae_cm1"):
    runs = d.get("runs")
    return None if runs is None else [x.get(key) for x in runs]


def _hess_rel(d):
    per = d.get("hessian_rel_error_per_structure")
    return None if per is None else list(per)


def _percent(st: dict) -> dict:
    """A fraction's ``{"mean", "se", "n"}`` in per cent."""
    return {**st, **{q: None if st[q] is None else 100.0 * st[q] for q in ("mean", "se")}}


def fmt_stat(st: dict, digits: int = 2) -> str:
    """'mean ± se (n)'; 'mean (n)' for a single value; the bare mean when n is unknown; '-' without a mean."""
    if st["mean"] is None:
        return "-"
    if st["n"] is None:
        return fmt(st["mean"], digits)
    se = "" if st["se"] is None else f" ± {fmt(st['se'], digits)}"
    return f"{fmt(st['mean'], digits)}{se} ({st['n']})"


def dynamics_table(records: list[Record], digits: int = 2) -> Table:
    """MD stability, NVE drift, relaxation and frequency errors; averaged cells read 'mean ± s.e. (n structures)'."""
    header = [
        "subset",
        "teacher",
        "model",
        "MD stable",
        "mean survival (ps)",
        "|NVE drift| (meV/atom/ps)",
        "relax success",
        "relax ΔE vs teacher (meV/atom)",
        "relax RMSD (Å)",
        "freq. MAE (cm⁻¹)",
        "Hessian MAE (meV/Å²)",
        "rel. Hessian error, test rows (%)",
        "rel. Hessian error, relaxed (%)",
        "freq. MAE / teacher mean freq. (%)",
        "spurious imaginary modes",
        "phonons: MAE / teacher mean, mesh (%)",
        "phonons: spurious imaginary (mesh)",
        "train time (s)",
    ]
    rows, vals = [], []
    for r in records:
        n_st, n = r.get("md", "n_stable"), r.get("md", "n_structures")
        stats = [
            _stat(r, "md", "mean_survival_time_ps", lambda d: _md_runs(d, "survival")),
            _stat(r, "md", "mean_abs_drift_meV_atom_ps", lambda d: _md_runs(d, "drift")),
            _stat(r, "relax", "energy_error_mae_meV_atom", lambda d: _relax_structs(d, "energy")),
            _stat(r, "relax", "rmsd_mean_A", lambda d: _relax_structs(d, "rmsd")),
            {"mean": None, "se": None, "n": None}
            if r.is_teacher
            else _stat(r, "vibrations", "freq_mae_cm1", _vib_runs),
        ]
        none = {"mean": None, "se": None, "n": None}
        # errors on the teacher's scale, in per cent
        stats += [
            none if r.is_teacher else _percent(_stat(r, "test", "hessian_rel_error", _hess_rel)),
            none
            if r.is_teacher
            else _percent(_stat(r, "vibrations", "hessian_rel_error", lambda d: _vib_runs(d, "hessian_rel_error"))),
            none
            if r.is_teacher
            else _percent(_stat(r, "vibrations", "freq_mae_rel", lambda d: _vib_runs(d, "freq_mae_rel"))),
        ]
        hess = None if r.is_teacher else r.get("test", "hessian_mae_meV_A2")
        spurious = None
        if not r.is_teacher and r.get("vibrations", "n_spurious_imaginary") is not None:
            spurious = (
                f"{r.get('vibrations', 'n_spurious_imaginary')} in "
                f"{r.get('vibrations', 'n_structures_with_spurious_imaginary')}/"
                f"{r.get('vibrations', 'n_structures')} structures"
            )
        stats.append(
            none
            if r.is_teacher
            else _percent(
                _stat(
                    r,
                    "phonons",
                    "freq_mae_rel",
                    lambda d: [x.get("freq_mae_rel") for x in d.get("runs", []) if not x.get("error")] or None,
                )
            )
        )
        ph_spurious = None
        if not r.is_teacher and r.get("phonons", "n_spurious_imaginary") is not None:
            ph_spurious = (
                f"{r.get('phonons', 'n_spurious_imaginary')} in "
                f"{r.get('phonons', 'n_structures_with_spurious_imaginary')}/"
                f"{r.get('phonons', 'n_structures')} crystals"
            )
        v = [
            r.subset,
            r.teacher,
            _row_label(r),
            f"{n_st}/{n}" if n is not None else None,
            stats[0]["mean"],
            stats[1]["mean"],
            r.get("relax", "model_success_rate"),
            stats[2]["mean"],
            stats[3]["mean"],
            stats[4]["mean"],
            hess,
            stats[5]["mean"],
            stats[6]["mean"],
            stats[7]["mean"],
            spurious,
            stats[8]["mean"],
            ph_spurious,
            None if r.is_teacher else r.summary.get("train_time_s"),
        ]
        cells = [fmt(x, digits) if not isinstance(x, str) else x for x in v]
        for j, st in zip((4, 5, 7, 8, 9, 11, 12, 13, 15), stats):
            cells[j] = fmt_stat(st, digits)
        rows.append(cells)
        vals.append(v)
    t = Table(
        "Dynamics and curvature: MD stability, NVE energy drift, relaxations compared with the teacher's, "
        "harmonic frequencies and Hessian rows against the teacher",
        header,
        rows,
        raw=vals,
        notes=[
            "Averages over structures read mean ± standard error (n structures); the CSV holds the means.",
            "NVE drift: stable runs only, each over >= 0.5 ps of logged NVE (runs that collapsed report "
            "their time to collapse instead); relaxation errors: structures where both relaxations "
            "converged.",
            "Lowest error per column in bold (students only); survival and success: highest.",
            "Curvature on the teacher's scale: ||H_model - H_teacher||_F / ||H_teacher||_F over the stored "
            "teacher rows of the test structures, and over full Hessians at the teacher-relaxed "
            "structures of the vibrations evaluation; frequency MAE over the teacher's mean |frequency|; "
            "spurious imaginary modes: the model's modes below -20 cm⁻¹ beyond the teacher's; phonons: "
            "frequencies on a q-mesh of the teacher-relaxed crystals (phonopy).",
            "Train time: the student's training wall time (compare students at equal budgets).",
        ],
    )
    _mark_students(t, vals, records, low=(5, 7, 8, 9, 10, 11, 12, 13, 15), high=(4, 6))
    return t


def _arch(r: Record):
    student = r.summary.get("student") if isinstance(r.summary, dict) else None
    return student.get("arch") if isinstance(student, dict) else None


def relax_baseline(records: list[Record], r: Record) -> Record | None:
    """The undistilled run E_ref(run) - E_ref(baseline) is taken against: of the same subset and teacher, method
    ``undistilled``, the same student arch (from the run's summary.json), preferably the same size; the first
    in run order when several remain.  None when there is none (or for the teacher row)."""
    same = [
        x
        for x in records
        if x.subset == r.subset
        and x.teacher == r.teacher
        and not x.is_teacher
        and x.method == "undistilled"
        and _arch(x) == _arch(r)
        and _arch(r) is not None
    ]
    sized = [x for x in same if x.summary.get("n_params") == r.summary.get("n_params")]
    pick = sized or same
    return pick[0] if pick else None


def _relax_ref_values(d: dict) -> dict:
    """index -> (model_ref_energy_eV_atom, model_ref_fmean_eV_A) of the converged relaxations of a relax.json."""
    return {
        x.get("index"): (x.get("model_ref_energy_eV_atom"), x.get("model_ref_fmean_eV_A"))
        for x in d.get("structures") or []
        if x.get("model_converged")
    }


def relax_reference_table(records: list[Record], digits: int = 2) -> Table | None:
    """Relaxed geometries re-scored by the reference calculator (the paper's DFT re-scoring): per run, E_ref(run)
    - E_ref(undistilled baseline) in meV/atom over the structures both relaxations converged, and the mean
    reference |F| at the run's final geometries.  None when no relax.json has a reference calculator."""
    with_ref = [
        r for r in records if isinstance(r.evals.get("relax"), dict) and r.evals["relax"].get("reference_calculator")
    ]
    if not with_ref:
        return None
    header = [
        "subset",
        "teacher",
        "model",
        "method",
        "reference",
        "baseline",
        "E_ref - E_ref(baseline) (meV/atom)",
        "mean reference |F| (meV/Å)",
        "relax success",
    ]
    rows, vals = [], []
    for r in with_ref:
        d = r.evals["relax"]
        mine = _relax_ref_values(d)
        base = relax_baseline(records, r)
        diff = {"mean": None, "se": None, "n": None}
        if base is not None and isinstance(base.evals.get("relax"), dict):
            theirs = _relax_ref_values(base.evals["relax"])
            diff = _mean_se(
                [
                    1000.0 * (mine[i][0] - theirs[i][0])
                    for i in mine
                    if i in theirs and mine[i][0] is not None and theirs[i][0] is not None
                ]
            )
        force = _mean_se([1000.0 * v[1] for v in mine.values() if v[1] is not None])
        rc = d["reference_calculator"]
        ref_name = rc.get("name", "?") + (f" {rc['options']}" if rc.get("options") else "")
        v = [
            r.subset,
            r.teacher,
            _row_label(r),
            r.method,
            ref_name,
            None if base is None else base.run,
            diff["mean"],
            force["mean"],
            d.get("model_success_rate"),
        ]
        cells = [fmt(x, digits) if not isinstance(x, str) else x for x in v]
        cells[6], cells[7] = fmt_stat(diff, digits), fmt_stat(force, digits)
        rows.append(cells)
        vals.append(v)
    t = Table(
        "Relaxations re-scored by the reference calculator: energy against the undistilled student and "
        "residual reference forces at the final geometries",
        header,
        rows,
        raw=vals,
        notes=[
            "Each run's FIRE-relaxed geometries (protocol evaluation.protocol.relax) re-scored by the "
            "reference calculator; mean ± standard error (n structures).",
            "E_ref - E_ref(baseline): per structure, over structures that both runs relaxed to fmax; the "
            "baseline is the undistilled run of the same subset, teacher and student arch (the same size "
            "where there is one); negative: the run stopped lower on the reference surface.",
            "Mean reference |F|: the per-atom force norm averaged over atoms, then over converged "
            "structures (0 at a reference minimum).",
        ],
    )
    _mark_students(t, vals, with_ref, low=(7,))
    return t


def disagreement_table(records: list[Record], digits: int = 3) -> Table | None:
    """Per student run with a ``disagreement`` evaluation: its partners, the disagreement (max over atoms of
    |F_student - F_partner|) in MD and on the test structures (mean, 95th percentile), the ratio MD / test (>> 1: the
    MD leaves the training distribution), the threshold and the flagged MD frames.  None when no run has one."""
    recs = [r for r in records if isinstance(r.evals.get("disagreement"), dict)]
    if not recs:
        return None
    header = [
        "subset",
        "teacher",
        "model",
        "partners",
        "MD disagreement, mean (eV/Å)",
        "MD disagreement, p95 (eV/Å)",
        "test disagreement, mean (eV/Å)",
        "test disagreement, p95 (eV/Å)",
        "MD / test (mean)",
        "threshold (eV/Å)",
        "flagged MD frames",
        "MD runs stopped",
    ]
    rows, vals = [], []
    for r in recs:
        n_flagged, n_frames = r.get("disagreement", "n_flagged"), r.get("disagreement", "md_n_frames")
        v = [
            r.subset,
            r.teacher,
            _row_label(r),
            ", ".join(r.get("disagreement", "partners", default=[])),
            r.get("disagreement", "md_mean_eV_A"),
            r.get("disagreement", "md_p95_eV_A"),
            r.get("disagreement", "test_mean_eV_A"),
            r.get("disagreement", "test_p95_eV_A"),
            r.get("disagreement", "ratio_mean"),
            r.get("disagreement", "threshold_eV_A"),
            None if n_flagged is None else f"{n_flagged}/{n_frames}",
            f"{r.get('disagreement', 'n_stopped')}/{r.get('disagreement', 'n_md_structures')}",
        ]
        rows.append([fmt(x, digits) if not isinstance(x, str) else x for x in v])
        vals.append(v)
    t = Table(
        "Committee disagreement: where the student extrapolates, from students trained on the same data",
        header,
        rows,
        raw=vals,
        notes=[
            "Disagreement: max over atoms of |F_student - F_partner|, the largest over the partner runs (the other "
            "runs of the subset and teacher, or evaluation.protocol.disagreement.partners), at every checked frame "
            "of MD with the student, and on the test structures (the in-distribution baseline).",
            "MD / test: the ratio of the means; about 1 while the MD stays where the training data are, >> 1 when "
            "it leaves them.  Flagged frames (above the threshold; auto: 3 x the test structures' 95th "
            "percentile) are in eval/flagged.extxyz of each run.",
        ],
    )
    return t


SUMMARY_COLUMNS = [
    "subset",
    "teacher",
    "run",
    "method",
    "params",
    "energy_mae_meV_atom",
    "force_mae_meV_A",
    "force_rel_error",
    "teacher_energy_mae_meV_atom",
    "teacher_force_mae_meV_A",
    "teacher_force_rel_error",
    "hessian_mae_meV_A2",
    "speedup_latency",
    "speedup_throughput",
    "md_fraction_stable",
    "nve_drift_meV_atom_ps",
    "relax_success_rate",
    "freq_mae_cm1",
    "hessian_rel_error",
    "hessian_rel_error_relaxed",
    "freq_mae_rel",
    "n_spurious_imaginary",
    "phonon_freq_mae_cm1",
    "phonon_freq_mae_rel",
    "phonon_n_spurious_imaginary",
    "disagreement_md_eV_A",
    "disagreement_test_eV_A",
    "disagreement_ratio",
    "n_flagged_frames",
    "train_time_s",
    "epochs",
]


def summary_rows(records: list[Record]) -> list[dict]:
    """One flat row per run.  The accuracy columns are the paper's (against the reference labels, the teacher's own
    error in its row); the ``teacher_*`` columns are the students against the teacher (empty in the teacher row)."""
    out = []
    for r in records:
        vs_teacher = {
            f"teacher_{k}": None if r.is_teacher else r.get("test", f"teacher_{k}")
            for k in ("energy_mae_meV_atom", "force_mae_meV_A", "force_rel_error")
        }
        out.append(
            {
                "subset": r.subset,
                "teacher": r.teacher,
                "run": r.run,
                "method": r.method,
                "params": r.get("test", "n_params"),
                "energy_mae_meV_atom": r.get("test", "ref_energy_mae_meV_atom"),
                "force_mae_meV_A": r.get("test", "ref_force_mae_meV_A"),
                "force_rel_error": r.get("test", "ref_force_rel_error"),
                **vs_teacher,
                "hessian_mae_meV_A2": None if r.is_teacher else r.get("test", "hessian_mae_meV_A2"),
                "speedup_latency": None if r.is_teacher else r.get("speed", "speedup_latency"),
                "speedup_throughput": None if r.is_teacher else r.get("speed", "speedup_throughput"),
                "md_fraction_stable": r.get("md", "fraction_stable"),
                "nve_drift_meV_atom_ps": _stat(r, "md", "mean_abs_drift_meV_atom_ps", lambda d: _md_runs(d, "drift"))[
                    "mean"
                ],
                "relax_success_rate": r.get("relax", "model_success_rate"),
                "freq_mae_cm1": None if r.is_teacher else _stat(r, "vibrations", "freq_mae_cm1", _vib_runs)["mean"],
                "hessian_rel_error": None if r.is_teacher else r.get("test", "hessian_rel_error"),
                "hessian_rel_error_relaxed": None if r.is_teacher else r.get("vibrations", "hessian_rel_error"),
                "freq_mae_rel": None if r.is_teacher else r.get("vibrations", "freq_mae_rel"),
                "n_spurious_imaginary": None if r.is_teacher else r.get("vibrations", "n_spurious_imaginary"),
                "phonon_freq_mae_cm1": None if r.is_teacher else r.get("phonons", "freq_mae_cm1"),
                "phonon_freq_mae_rel": None if r.is_teacher else r.get("phonons", "freq_mae_rel"),
                "phonon_n_spurious_imaginary": None if r.is_teacher else r.get("phonons", "n_spurious_imaginary"),
                "disagreement_md_eV_A": r.get("disagreement", "md_mean_eV_A"),
                "disagreement_test_eV_A": r.get("disagreement", "test_mean_eV_A"),
                "disagreement_ratio": r.get("disagreement", "ratio_mean"),
                "n_flagged_frames": r.get("disagreement", "n_flagged"),
                "train_time_s": r.summary.get("train_time_s"),
                "epochs": r.summary.get("epochs"),
            }
        )
    return out


# ----------------------------------------------------------------------------------------------- figures
def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save_fig(fig, path):
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")
    _plt().close(fig)
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(buf.getvalue())


def _groups(records):
    keys = []
    for r in records:
        if (r.subset, r.teacher) not in keys:
            keys.append((r.subset, r.teacher))
    return keys


def _empty(ax, text):
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, fontsize=9, color="0.4")
    ax.set_xticks([])
    ax.set_yticks([])


def _teacher_ref_force(records, subset, teacher):
    """The teacher's own force MAE against the reference labels (None when missing or zero: its own labels)."""
    for r in records:
        if r.subset == subset and r.teacher == teacher and r.is_teacher:
            v = r.get("test", "ref_force_mae_meV_A")
            return v if v else None
    return None


def fig_accuracy_vs_speed(records, path):
    """Force MAE against the reference labels (the paper's accuracy axis) vs batched-throughput speed-up."""
    plt = _plt()
    groups = _groups(records)
    fig, axes = plt.subplots(1, len(groups), figsize=(4.5 * len(groups), 3.6), squeeze=False)
    for ax, (s, t) in zip(axes[0], groups):
        pts = [
            (r.get("speed", "speedup_throughput"), r.get("test", "ref_force_mae_meV_A"), r)
            for r in records
            if r.subset == s and r.teacher == t and not r.is_teacher
        ]
        pts = [p for p in pts if p[0] is not None and p[1] is not None]
        if not pts:
            _empty(ax, "no speed or test evaluation")
        for x, y, r in pts:
            ax.scatter(x, y, s=40, label=f"{r.run} ({r.method})")
            ax.annotate(r.run, (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
        teacher_f = _teacher_ref_force(records, s, t)
        if pts and teacher_f is not None:
            ax.axhline(teacher_f, color="0.4", ls="--", lw=1, label=f"teacher ({t}), 1x")
        ax.set_xlabel("speed-up vs teacher (batched throughput)")
        ax.set_ylabel("test force MAE vs reference labels (meV/Å)")
        ax.set_title(f"{s} / {t}", fontsize=10)
        if pts:
            ax.legend(fontsize=7)
    _save_fig(fig, path)


def size_sweep(records) -> dict:
    """{(subset, teacher): {method: [(n_params, force MAE vs reference, throughput speed-up or None, run)]}} for
    the methods with students of at least two sizes (the paper's speed-vs-accuracy figure), sorted by size."""
    out = {}
    for s, t in _groups(records):
        by_method = {}
        for r in records:
            if r.subset != s or r.teacher != t or r.is_teacher:
                continue
            n, f = r.get("test", "n_params"), r.get("test", "ref_force_mae_meV_A")
            if n is not None and f is not None:
                by_method.setdefault(r.method, []).append(
                    (int(n), float(f), r.get("speed", "speedup_throughput"), r.run)
                )
        sweeps = {m: sorted(v) for m, v in by_method.items() if len({p[0] for p in v}) >= 2}
        if sweeps:
            out[(s, t)] = sweeps
    return out


def fig_size_sweep(records, path):
    """Force MAE against the reference labels vs student size, one line per method, speed-ups annotated."""
    plt = _plt()
    sweeps = size_sweep(records)
    groups = list(sweeps) or [None]
    fig, axes = plt.subplots(1, len(groups), figsize=(4.8 * len(groups), 3.6), squeeze=False)
    for ax, g in zip(axes[0], groups):
        if g is None:
            _empty(ax, "no size sweep: every method has students of one size")
            continue
        for method, pts in sweeps[g].items():
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=method)
            for n, f, sp, _ in pts:
                if sp is not None:
                    ax.annotate(f"{sp:.0f}x", (n, f), fontsize=7, xytext=(3, 3), textcoords="offset points")
        teacher_f = _teacher_ref_force(records, *g)
        if teacher_f is not None:
            ax.axhline(teacher_f, color="0.4", ls="--", lw=1, label=f"teacher ({g[1]})")
        ax.set_xscale("log")
        ax.set_xlabel("student parameters (speed-up vs teacher annotated)")
        ax.set_ylabel("test force MAE vs reference labels (meV/Å)")
        ax.set_title(f"{g[0]} / {g[1]}", fontsize=10)
        ax.legend(fontsize=7)
    _save_fig(fig, path)


def fig_parity(records, path):
    plt = _plt()
    students = [r for r in records if not r.is_teacher]
    n = max(len(students), 1)
    ncol = min(n, 4)
    nrow = math.ceil(n / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.4 * ncol, 3.2 * nrow), squeeze=False)
    for k, ax in enumerate(axes.flat):
        if k >= len(students):
            if k == 0:
                _empty(ax, "no student runs")
            else:
                ax.axis("off")
            continue
        r = students[k]
        par = r.get("test", "parity")
        if not par or not par.get("force_pred_eV_A"):
            _empty(ax, f"{r.run}: no parity data")
            continue
        x, y = par["force_target_eV_A"], par["force_pred_eV_A"]
        lo, hi = min(min(x), min(y)), max(max(x), max(y))
        ax.plot([lo, hi], [lo, hi], color="0.6", lw=0.8)
        ax.scatter(x, y, s=3, alpha=0.5)
        ax.set_title(
            f"{r.subset} / {r.teacher} / {r.run}\nF MAE {fmt(r.get('test', 'teacher_force_mae_meV_A'), 1)} meV/Å",
            fontsize=8,
        )
        ax.set_xlabel(f"{par.get('against', 'teacher')} force (eV/Å)", fontsize=8)
        ax.set_ylabel("student force (eV/Å)", fontsize=8)
    _save_fig(fig, path)


def fig_md_energy(records, path):
    plt = _plt()
    groups = _groups(records)
    fig, axes = plt.subplots(1, len(groups), figsize=(4.8 * len(groups), 3.6), squeeze=False)
    for ax, (s, t) in zip(axes[0], groups):
        drawn = False
        for r in (r for r in records if r.subset == s and r.teacher == t):
            for k, run in enumerate(r.get("md", "runs", default=[])):
                ser = run.get("series") or {}
                if not ser.get("time_ps") or run.get("ensemble") != "nve":
                    continue
                e = [1e3 * (v - ser["etot_eV_atom"][0]) for v in ser["etot_eV_atom"]]
                ax.plot(ser["time_ps"], e, lw=1, label=f"{r.run} #{k}", ls="--" if r.is_teacher else "-")
                drawn = True
        if not drawn:
            _empty(ax, "no NVE energy series")
        else:
            ax.legend(fontsize=6)
        ax.set_xlabel("time (ps)")
        ax.set_ylabel("E_tot(t) - E_tot(0) (meV/atom)")
        ax.set_title(f"NVE energy conservation: {s} / {t}", fontsize=9)
    _save_fig(fig, path)


def _band_ticks(ax, bands):
    """Ticks at the band path's segment ends, labelled with its high-symmetry points ("X|R" where the path jumps)
    when phonopy named them (``labels``: each segment's start, its end, and a new start after every jump;
    ``connections``: whether each segment continues into the next)."""
    segments = [d for d in bands["distances"] if len(d)]
    ends = [float(d[0]) for d in segments] + [float(segments[-1][-1])] if segments else []
    names = list(bands.get("labels") or [])
    joins = list(bands.get("connections") or [])
    ticks = []
    if len(joins) == len(segments) and len(names) == len(segments) + 1 + joins[:-1].count(False):
        it = iter(names)
        ticks.append(next(it))
        for k in range(len(segments)):
            end = next(it)
            ticks.append(end if k == len(segments) - 1 or joins[k] else f"{end}|{next(it)}")
    ax.set_xticks(ends)
    ax.set_xticklabels(ticks if len(ticks) == len(ends) else [""] * len(ends))
    for x in ends[1:-1]:
        ax.axvline(x, color="0.85", lw=0.5)


def fig_phonons(records, path):
    """Per subset/teacher: the phonon bands of the first crystal of the phonons evaluation, teacher (black) and
    every student, and their densities of states."""
    plt = _plt()
    groups = _groups(records)
    fig, axes = plt.subplots(
        len(groups), 2, figsize=(9.0, 3.6 * len(groups)), squeeze=False, gridspec_kw={"width_ratios": [3, 1]}
    )
    for (ax, ax_dos), (s, t) in zip(axes, groups):
        drawn = False
        colours = iter(plt.rcParams["axes.prop_cycle"].by_key()["color"])
        for r in (r for r in records if r.subset == s and r.teacher == t and not r.is_teacher):
            runs = [x for x in r.get("phonons", "runs", default=[]) or [] if not x.get("error")]
            if not runs:
                continue
            first = runs[0]
            sides = (("teacher", "k", f"teacher ({t})"),) if not drawn else ()
            for side, colour, label in sides + (("model", next(colours), r.run),):
                bands = first["bands"][side]
                for k, (d, f) in enumerate(zip(bands["distances"], bands["frequencies_cm1"])):
                    lines = ax.plot(d, f, color=colour, lw=0.8, ls="--" if side == "teacher" else "-")
                    if k == 0 and lines:  # one legend entry per model, not one per branch
                        lines[0].set_label(label)
                if side == "teacher":
                    _band_ticks(ax, bands)
                dos = first["dos"][side]
                ax_dos.plot(
                    dos["dos"], dos["frequency_cm1"], color=colour, lw=0.8, ls="--" if side == "teacher" else "-"
                )
            drawn = True
            ax.set_title(f"phonons: {s} / {t}, {first['formula']} ({first.get('spacegroup', '')})", fontsize=9)
        if not drawn:
            _empty(ax, "no phonon evaluation (crystals only)")
            ax_dos.set_axis_off()
            continue
        ax.axhline(0.0, color="0.6", lw=0.5)
        ax.set_xlabel("wave vector (band path)")
        ax.set_ylabel("frequency (cm⁻¹)")
        ax.legend(fontsize=6)
        ax_dos.set_xlabel("DOS")
    _save_fig(fig, path)


def fig_stability(records, path):
    plt = _plt()
    recs = [r for r in records if "md" in r.evals]
    fig, ax = plt.subplots(figsize=(max(4.0, 0.9 * len(recs) + 2), 3.4))
    if not recs:
        _empty(ax, "no MD evaluation")
    else:
        labels = [f"{r.subset}\n{r.teacher}\n{r.run}" for r in recs]
        surv = [r.get("md", "mean_survival_time_ps", default=0.0) for r in recs]
        length = [
            max((x.get("simulated_time_ps") or 0.0) for x in r.get("md", "runs", default=[{}])) or 0.0 for r in recs
        ]
        pos = range(len(recs))
        ax.bar(pos, length, color="0.85", label="requested length")
        ax.bar(pos, surv, color=["tab:gray" if r.is_teacher else "tab:blue" for r in recs], label="mean survival")
        for i, r in enumerate(recs):
            ax.text(
                i,
                surv[i],
                f"{r.get('md', 'n_stable')}/{r.get('md', 'n_structures')}",
                ha="center",
                va="bottom",
                fontsize=7,
            )
        ax.set_xticks(list(pos))
        ax.set_xticklabels(labels, fontsize=6)
        ax.set_ylabel("time (ps)")
        ax.set_title("MD stability: mean survival time (stable runs / all on top)", fontsize=9)
        ax.legend(fontsize=7)
    _save_fig(fig, path)


def fig_training(records, path):
    """Validation force MAE per epoch (left) and against training wall time (right: the equal-cost view)."""
    plt = _plt()
    groups = _groups([r for r in records if not r.is_teacher]) or [("", "")]
    fig, axes = plt.subplots(len(groups), 2, figsize=(9.6, 3.6 * len(groups)), squeeze=False)
    for (ax_ep, ax_t), (s, t) in zip(axes, groups):
        drawn = False
        for r in (r for r in records if r.subset == s and r.teacher == t and r.log):
            f = [row.get("val_force_mae_meV_A") for row in r.log]
            ax_ep.plot([row.get("epoch") for row in r.log], f, lw=1.2, label=f"{r.run} ({r.method})")
            ax_t.plot([row.get("elapsed_s") for row in r.log], f, lw=1.2, label=r.run)
            drawn = True
        for ax, xlabel in ((ax_ep, "epoch"), (ax_t, "training wall time (s)")):
            if drawn:
                ax.set_yscale("log")
            else:
                _empty(ax, "no training logs")
            ax.set_xlabel(xlabel)
            ax.set_ylabel("validation force MAE (meV/Å)")
        if drawn:
            ax_ep.legend(fontsize=7)
        ax_ep.set_title(f"training: {s} / {t}", fontsize=9)
        ax_t.set_title("same, against wall time", fontsize=9)
    _save_fig(fig, path)


# ----------------------------------------------------------------------------------------------- driver
def write_report(
    paths,
    out_dir,
    *,
    runs_config=None,
    title="hessdistill report",
    float_digits: int = 2,
    paper: dict | None = None,
    figures: bool = True,
) -> dict:
    """Collect ``paths`` and write every table (md/csv/tex), figure and the summary into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    records = collect(paths, runs_config)
    tables = {
        "table_accuracy": accuracy_tables(records, float_digits, paper),
        "table_speed": [speed_table(records, float_digits)],
        "table_dynamics": [dynamics_table(records, float_digits)],
    }
    relax_ref = relax_reference_table(records, float_digits)
    if relax_ref is not None:  # relax.json re-scored by a reference calculator (relax.reference_calculator)
        tables["table_dynamics"].append(relax_ref)
    disagreement = disagreement_table(records, float_digits + 1)
    if disagreement is not None:  # runs with the disagreement evaluation (partner students)
        tables["table_dynamics"].append(disagreement)
    for name, ts in tables.items():
        atomic_write_text(out / f"{name}.md", "\n".join(t.to_markdown() for t in ts))
        atomic_write_text(out / f"{name}.csv", "\n".join(t.to_csv() for t in ts))
        atomic_write_text(out / f"{name}.tex", "\n".join(t.to_latex() for t in ts))
    rows = summary_rows(records)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=SUMMARY_COLUMNS)
    w.writeheader()
    for r in rows:
        w.writerow(r)
    atomic_write_text(out / "summary.csv", buf.getvalue())
    if figures:
        fig_accuracy_vs_speed(records, out / FIGURES[0])
        fig_parity(records, out / FIGURES[1])
        fig_md_energy(records, out / FIGURES[2])
        fig_stability(records, out / FIGURES[3])
        fig_training(records, out / FIGURES[4])
        fig_phonons(records, out / FIGURES[5])
        fig_size_sweep(records, out / FIGURES[6])
    md = [f"# {title}", ""]
    for ts in tables.values():
        md += [t.to_markdown() for t in ts]
    if figures:
        md += ["## Figures", ""] + [f"![{f[4:-4]}]({f})" for f in FIGURES]
    atomic_write_text(out / "summary.md", "\n".join(md) + "\n")
    return {"records": len(records), "tables": sorted(tables), "figures": list(FIGURES) if figures else []}
