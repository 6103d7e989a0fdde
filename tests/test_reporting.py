"""hessdistill.reporting on synthetic evaluation files: layout, best marking, missing data, formats, figures."""

import csv
import io
import json
import re

import pytest

from hessdistill.reporting import FIGURES, Table, accuracy_tables, collect, fmt, size_sweep, write_report

pytest.importorskip("matplotlib")


def _write(path, obj):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))
    return path


def _tree(tmp_path, with_speed=True):
    """Two subsets x one teacher x runs {undistilled, hessian} + the teacher pseudo-run."""
    paths = []
    errs = {
        ("s1", "undistilled"): (3.0, 30.0),
        ("s1", "hessian"): (2.0, 20.0),
        ("s2", "undistilled"): (1.0, 11.0),
        ("s2", "hessian"): (1.5, 12.0),
    }
    for (subset, run), (e, f) in errs.items():
        d = tmp_path / "results" / subset / "runs" / "T" / run
        paths.append(
            _write(
                d / "eval" / "test.json",
                {
                    "n_params": 1000,
                    "ref_energy_mae_meV_atom": e,
                    "ref_force_mae_meV_A": f,
                    "ref_force_rel_error": f / 200.0,
                    "teacher_energy_mae_meV_atom": e / 2,
                    "teacher_force_mae_meV_A": f / 2,
                    "teacher_force_rel_error": f / 400.0,
                    "hessian_mae_meV_A2": 10 * f,
                    "parity": {
                        "against": "teacher",
                        "force_pred_eV_A": [0.1, 0.2, -0.3],
                        "force_target_eV_A": [0.1, 0.25, -0.2],
                        "energy_per_atom_pred_eV": [-1.0],
                        "energy_per_atom_target_eV": [-1.01],
                    },
                },
            )
        )
        if with_speed:
            paths.append(
                _write(
                    d / "eval" / "speed.json",
                    {
                        "device": "cpu",
                        "student": {"latency_ms": 2.0, "throughput_structures_s": 500.0, "ns_per_day": 43.2},
                        "teacher": {"latency_ms": 20.0, "throughput_structures_s": 50.0},
                        "speedup_latency": 10.0,
                        "speedup_throughput": 10.0 if run == "hessian" else 9.0,
                    },
                )
            )
        paths.append(
            _write(
                d / "eval" / "md.json",
                {
                    "n_structures": 2,
                    "n_stable": 2 if run == "hessian" else 1,
                    "fraction_stable": 1.0 if run == "hessian" else 0.5,
                    "mean_survival_time_ps": 1.0 if run == "hessian" else 0.6,
                    "mean_abs_drift_meV_atom_ps": 0.1,
                    "runs": [
                        {
                            "ensemble": "nve",
                            "simulated_time_ps": 1.0,
                            "series": {"time_ps": [0, 0.5, 1.0], "etot_eV_atom": [-1.0, -1.0001, -1.0002]},
                        }
                    ],
                },
            )
        )
        (d / "log.csv").write_text("epoch,val_force_mae_meV_A\n1,100\n2,50\n")
        paths.append(d / "log.csv")
        paths.append(_write(d / "summary.json", {"method": run, "train_time_s": 12.5, "epochs": 2}))
        t = tmp_path / "results" / subset / "teachers" / "T" / "eval"
        paths.append(
            _write(
                t / "test.json",
                {
                    "n_params": 99999,
                    "ref_energy_mae_meV_atom": 0.5,
                    "ref_force_mae_meV_A": 0.7,
                    "teacher_force_mae_meV_A": 0.0,
                    "ref_force_rel_error": 0.01,
                },
            )
        )
    return sorted(set(paths))


def test_collect_identifies_runs_and_teachers_and_orders_teacher_first(tmp_path):
    recs = collect(_tree(tmp_path), {"undistilled": {"method": "undistilled"}, "hessian": {"method": "hessian"}})
    assert [(r.subset, r.run) for r in recs] == [
        ("s1", "teacher"),
        ("s1", "undistilled"),
        ("s1", "hessian"),
        ("s2", "teacher"),
        ("s2", "undistilled"),
        ("s2", "hessian"),
    ]
    h = recs[2]
    assert h.method == "hessian" and h.summary["epochs"] == 2 and h.log[-1]["val_force_mae_meV_A"] == 50.0
    with pytest.raises(ValueError, match="not a run or teacher evaluation file"):
        collect([tmp_path / "x" / "test.json"])


def test_collect_prefers_an_evaluations_identity_and_falls_back_to_its_path(tmp_path):
    """eval JSONs written by the evaluation job carry identity {subset, teacher, run}: it wins over the path
    (files moved or renamed); files without it (older results) are filed by their path, as before."""
    moved = _write(
        tmp_path / "elsewhere" / "test.json",
        {"identity": {"subset": "s1", "teacher": "T", "run": "hessian"}, "ref_force_mae_meV_A": 5.0},
    )
    teacher = _write(
        tmp_path / "copy" / "speed.json", {"identity": {"subset": "s1", "teacher": "T", "run": None}, "device": "cpu"}
    )
    old = _write(tmp_path / "results" / "s1" / "runs" / "T" / "hessian" / "eval" / "md.json", {"n_structures": 2})
    recs = collect([moved, teacher, old], {"hessian": {"method": "hessian"}})
    assert [(r.subset, r.teacher, r.run) for r in recs] == [("s1", "T", "teacher"), ("s1", "T", "hessian")]
    assert set(recs[1].evals) == {"test", "md"} and recs[1].get("test", "ref_force_mae_meV_A") == 5.0
    assert set(recs[0].evals) == {"speed"}
    # an identity names the run even where the path names another
    wrong_place = _write(
        tmp_path / "results" / "s2" / "runs" / "T" / "undistilled" / "eval" / "relax.json",
        {"identity": {"subset": "s1", "teacher": "T", "run": "hessian"}},
    )
    assert [(r.subset, r.run) for r in collect([wrong_place])] == [("s1", "hessian")]


def test_report_job_finds_the_results_layout_in_a_folder(tmp_path):
    from hessdistill.core.paths import identify
    from hessdistill.jobs.report import main, report_files

    paths = _tree(tmp_path)
    found = report_files([tmp_path / "results"])
    assert sorted(found) == sorted(map(str, paths))
    assert all(identify(p) for p in found)
    out = tmp_path / "report"
    assert main([str(tmp_path / "results"), "--out", str(out), "--no-figures", "--title", "T"]) == 0
    assert (out / "summary.md").read_text().startswith("# T")


def test_accuracy_table_marks_the_best_student_per_column_not_the_teacher(tmp_path):
    recs = collect(_tree(tmp_path), {"undistilled": {}, "hessian": {}})
    t, vs_teacher = accuracy_tables(recs, digits=1)
    assert t.title.startswith("Table 1: test accuracy against the reference labels")
    assert t.header[3:] == [
        "s1: E MAE (meV/atom)",
        "s1: F MAE (meV/Å)",
        "s1: |ΔF| / |F| (%)",
        "s2: E MAE (meV/atom)",
        "s2: F MAE (meV/Å)",
        "s2: |ΔF| / |F| (%)",
    ]
    labels = [r[0] for r in t.rows]
    assert labels == ["Teacher (T)", "undistilled", "hessian"] and t.rows[0][2] == "99,999"
    assert t.rows[0][3:] == ["0.5", "0.7", "1.0", "0.5", "0.7", "1.0"]  # teacher vs the reference labels
    # s1: hessian best on all three; s2: undistilled best on all three; the teacher (lower) is never marked
    assert t.best == {(2, 3), (2, 4), (2, 5), (1, 6), (1, 7), (1, 8)}
    md = t.to_markdown()
    assert "| hessian | hessian | 1,000 | **2.0** | **20.0** | **10.0** | 1.5 | 12.0 | 6.0 |" in md
    # a '|' inside a cell is escaped: every line of the table has the same number of cell separators
    assert r"s1: \|ΔF\| / \|F\| (%)" in md
    assert len({len(re.findall(r"(?<!\\)\|", line)) for line in md.splitlines() if line.startswith("| ")}) == 1
    rows = list(csv.DictReader(io.StringIO(t.to_csv())))
    assert rows[2]["s1: F MAE (meV/Å)"] == "20.0" and rows[2]["best_s1: F MAE (meV/Å)"] == "1"
    assert rows[1]["params"] == "1000"  # raw values in the CSV, not "1,000"
    tex = t.to_latex()
    assert r"\textbf{20.0}" in tex and r"meV/\AA{}" in tex and tex.count(r"\\") >= 4
    # the second group: the students against the teacher, no teacher row, its own best marks
    assert vs_teacher.title.startswith("Test accuracy against the teacher (T)")
    assert [r[0] for r in vs_teacher.rows] == ["undistilled", "hessian"]
    assert vs_teacher.rows[1][3:] == ["1.0", "10.0", "5.0", "0.8", "6.0", "3.0"]
    assert vs_teacher.best == {(1, 3), (1, 4), (1, 5), (0, 6), (0, 7), (0, 8)}


def test_accuracy_table_prints_paper_numbers_beside_ours(tmp_path):
    recs = collect(_tree(tmp_path), {})
    t, vs_teacher = accuracy_tables(recs, paper={"s1": {"hessian": "1.2 / 8.5", "teacher": "0.65 / 6.6"}})
    assert "s1: paper E / F" not in vs_teacher.header  # the paper's numbers are against the reference labels
    col = t.header.index("s1: paper E / F")
    assert [r[0] for r in t.rows][1:] == ["hessian", "undistilled"]  # no runs config: by name
    assert [r[col] for r in t.rows] == ["0.65 / 6.6", "1.2 / 8.5", "paper: not available"]
    assert not any(j == col for _, j in t.best)


def test_write_report_with_missing_evaluations_writes_dashes_and_every_file(tmp_path):
    paths = [p for p in _tree(tmp_path, with_speed=False)]
    out = tmp_path / "report"
    summary = write_report(paths, out, runs_config={}, title="T report")
    assert summary["records"] == 6
    for name in ("table_accuracy", "table_speed", "table_dynamics"):
        for ext in ("md", "csv", "tex"):
            assert (out / f"{name}.{ext}").stat().st_size > 0
    for f in FIGURES:
        assert (out / f).read_bytes()[:4] == b"\x89PNG"
    speed = (out / "table_speed.md").read_text()
    assert "| s1 | T | hessian | 1,000 | - | - | - | - | - | - | 12.50 |" in speed
    dyn = list(csv.DictReader((out / "table_dynamics.csv").open()))
    assert [d["model"] for d in dyn[:3]] == ["Teacher (T)", "hessian", "undistilled"]
    assert dyn[1]["MD stable"] == "2/2" and dyn[2]["MD stable"] == "1/2"
    assert dyn[1]["best_mean survival (ps)"] == "1" and dyn[2]["best_mean survival (ps)"] == "0"
    md = (out / "summary.md").read_text()
    assert md.startswith("# T report") and "![parity](fig_parity.png)" in md
    # summary.csv: the paper's metric (against the reference labels) first, against the teacher apart
    rows = {(r["subset"], r["run"]): r for r in csv.DictReader((out / "summary.csv").open())}
    h = rows[("s1", "hessian")]
    assert float(h["force_mae_meV_A"]) == 20.0 and float(h["teacher_force_mae_meV_A"]) == 10.0
    assert float(h["energy_mae_meV_atom"]) == 2.0 and float(h["teacher_energy_mae_meV_atom"]) == 1.0
    t = rows[("s1", "teacher")]
    assert float(t["force_mae_meV_A"]) == 0.7 and t["teacher_force_mae_meV_A"] == ""
    assert not list(out.glob("*.tmp*"))


def test_fmt():
    assert fmt(None) == "-" and fmt(float("nan")) == "-" and fmt(1234567) == "1,234,567"
    assert fmt(3.14159, 2) == "3.14" and fmt(0.00025, 2) == "0.00025" and fmt(True) == "yes"


def test_table_csv_and_latex_escape():
    t = Table("a_b & c", ["x", "y"], [["50%", "#1"]], raw=[["50%", None]])
    assert "a\\_b \\& c" in t.to_latex() and "50\\%" in t.to_latex()
    assert t.to_csv().splitlines()[1] == "50%,"


def test_dynamics_table_shows_mean_se_n_and_averages_drift_over_stable_runs_only(tmp_path):
    from hessdistill.reporting import dynamics_table

    d = tmp_path / "results" / "s" / "runs" / "T" / "r" / "eval"
    runs = [
        {"stable": True, "simulated_time_ps": 1.0, "drift_meV_atom_ps": 0.1},
        {"stable": True, "simulated_time_ps": 1.0, "drift_meV_atom_ps": -0.3},
        {"stable": False, "time_to_collapse_ps": 0.005, "simulated_time_ps": 0.005, "drift_meV_atom_ps": 785.0},
    ]
    paths = [
        _write(d / "md.json", {"n_structures": 3, "n_stable": 2, "mean_abs_drift_meV_atom_ps": 261.8, "runs": runs}),
        _write(
            d / "vibrations.json",
            {
                "freq_mae_cm1": 3.0,
                "runs": [{"freq_mae_cm1": 2.0, "freq_mae_rel": 0.01}, {"freq_mae_cm1": 4.0, "freq_mae_rel": 0.02}],
            },
        ),
        _write(d / "test.json", {"hessian_rel_error_per_structure": [0.02, 0.03]}),
        _write(
            d / "relax.json",
            {
                "model_success_rate": 1.0,
                "energy_error_mae_meV_atom": 5.0,
                "structures": [
                    {"model_converged": True, "teacher_converged": True, "energy_error_meV_atom": -5.0, "rmsd_A": 0.1}
                ],
            },
        ),
        _write(d.parent / "summary.json", {"method": "hessian", "train_time_s": 150.4}),
    ]
    t = dynamics_table(collect(paths, {}))
    row = dict(zip(t.header, t.rows[0]))
    assert row["train time (s)"] == "150.40"  # the wall time beside the errors: students compared at equal budgets
    assert row["MD stable"] == "2/3"
    assert row["|NVE drift| (meV/atom/ps)"] == "0.20 ± 0.10 (2)"  # the collapsed run's 785 is not averaged in
    assert row["mean survival (ps)"] == "0.67 ± 0.33 (3)"
    assert row["freq. MAE (cm⁻¹)"] == "3.00 ± 1.00 (2)" and row["relax ΔE vs teacher (meV/atom)"] == "5.00 (1)"
    assert t.raw[0][5] == pytest.approx(0.2) and "±" in t.to_latex().replace(r"$\pm$", "±")
    # errors on the teacher's scale read in per cent
    assert row["rel. Hessian error, test rows (%)"] == "2.50 ± 0.50 (2)"
    assert row["freq. MAE / teacher mean freq. (%)"] == "1.50 ± 0.50 (2)"


def test_phonon_figure_has_one_legend_entry_per_model_and_named_path_points(tmp_path, monkeypatch):
    """Bands are drawn branch by branch; the legend must still list the teacher and each student once, and the
    band path's ticks carry phonopy's point names, "X|R" where the path jumps."""
    import matplotlib

    from hessdistill import reporting

    matplotlib.use("Agg")
    bands = {
        "distances": [[0.0, 0.5, 1.0], [1.0, 1.5, 2.0], [2.0, 2.5, 3.0]],
        "frequencies_cm1": [[[0.0, 100.0, 200.0]] * 3] * 3,
        "labels": ["G", "X", "R", "M", "G"],
        "connections": [True, False, False],
    }
    dos = {"frequency_cm1": [0.0, 100.0, 200.0], "dos": [0.0, 1.0, 0.5]}
    run = {
        "formula": "SrTiO3",
        "spacegroup": "Pm-3m (221)",
        "bands": {"teacher": bands, "model": bands},
        "dos": {"teacher": dos, "model": dos},
    }
    paths = []
    for name in ("undistilled", "hessian"):
        paths.append(
            _write(
                tmp_path / "results" / "s1" / "runs" / "T" / name / "eval" / "phonons.json",
                {"n_structures": 1, "runs": [run]},
            )
        )
    seen = {}
    monkeypatch.setattr(reporting, "_save_fig", lambda fig, path: seen.update(fig=fig))
    reporting.fig_phonons(collect(paths), tmp_path / "fig.png")
    ax = seen["fig"].axes[0]
    assert sorted(t.get_text() for t in ax.get_legend().get_texts()) == ["hessian", "teacher (T)", "undistilled"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["G", "X", "R|M", "G"]


def test_size_sweep_groups_students_of_several_sizes_per_method(tmp_path):
    paths = []
    for n, f_und, f_hes in ((48622, 24.2, 26.6), (672918, 11.3, 5.6), (283702, 11.2, 8.2)):
        for method, f in (("undistilled", f_und), ("hessian", f_hes)):
            d = tmp_path / "results" / "mono" / "runs" / "T" / f"{method}-{n}"
            paths.append(_write(d / "eval" / "test.json", {"n_params": n, "ref_force_mae_meV_A": f}))
            paths.append(_write(d / "eval" / "speed.json", {"speedup_throughput": 1e7 / n}))
            paths.append(_write(d / "summary.json", {"method": method}))
    d = tmp_path / "results" / "mono" / "runs" / "T" / "n2n"  # one size only: not a sweep
    paths.append(_write(d / "eval" / "test.json", {"n_params": 672918, "ref_force_mae_meV_A": 12.0}))
    paths.append(_write(d / "summary.json", {"method": "n2n"}))
    recs = collect(paths)
    sweeps = size_sweep(recs)
    assert list(sweeps) == [("mono", "T")] and sorted(sweeps[("mono", "T")]) == ["hessian", "undistilled"]
    hes = sweeps[("mono", "T")]["hessian"]
    assert [p[0] for p in hes] == [48622, 283702, 672918] and [p[1] for p in hes] == [26.6, 8.2, 5.6]
    assert hes[0][2] == pytest.approx(1e7 / 48622) and hes[0][3] == "hessian-48622"
    out = tmp_path / "report"
    write_report(paths, out)
    assert (out / "fig_size_sweep.png").read_bytes()[:4] == b"\x89PNG"
    assert size_sweep([r for r in recs if r.method == "n2n"]) == {}


def test_teacher_energy_error_without_the_offset_is_noted_under_table_1(tmp_path):
    paths = _tree(tmp_path)
    t = tmp_path / "results" / "s1" / "teachers" / "T" / "eval" / "test.json"
    d = json.loads(t.read_text())
    d.update(
        {
            "ref_energy_mae_meV_atom": 403.0,
            "ref_energy_mae_offset_free_meV_atom": 1.25,
            "ref_energy_offsets_eV": {"8": -0.687},
            "ref_energy_offset_mean_meV_atom": -412.2,
            "ref_energy_offsets_fitted_on": "train",
        }
    )
    t.write_text(json.dumps(d))
    table, vs_teacher = accuracy_tables(collect(paths))
    note = [n for n in table.notes if n.startswith("Teacher on s1")]
    assert note == [
        "Teacher on s1: energy MAE 1.25 meV/atom after per-element offsets fitted on the train split "
        "(on average -412.2 meV/atom on the test structures): the part of its energy error that is not "
        "a different zero of energy."
    ]
    assert not any(n.startswith("Teacher on") for n in vs_teacher.notes)


def test_summary_rows_carry_the_phonon_errors(tmp_path):
    from hessdistill import reporting

    d = tmp_path / "results" / "xtal" / "runs" / "T" / "hessian" / "eval"
    paths = [
        _write(d / "phonons.json", {"freq_mae_cm1": 5.8, "freq_mae_rel": 0.019, "n_spurious_imaginary": 2}),
        _write(d / "test.json", {"n_params": 1000}),
    ]
    (row,) = reporting.summary_rows(collect(paths))
    assert row["phonon_freq_mae_cm1"] == 5.8 and row["phonon_freq_mae_rel"] == 0.019
    assert row["phonon_n_spurious_imaginary"] == 2
    # the vibrations columns stay the molecules' (no vibrations evaluation here)
    assert row["freq_mae_rel"] is None and row["n_spurious_imaginary"] is None
    assert set(row) == set(reporting.SUMMARY_COLUMNS)
