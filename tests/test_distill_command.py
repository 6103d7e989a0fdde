"""`hessdistill distill`: budget parsing, seed checks, the plan, the written config and the verdict (fast parts).
The command end to end on a tiny seed set: tests/test_distill_end_to_end.py."""

import ase.io
import numpy as np
import pytest
import yaml
from ase import Atoms
from ase.build import bulk, molecule

from hessdistill.core.errors import HessdistillError
from hessdistill.workflow import distill as D


def test_budget_parsing():
    assert D.parse_budget("30m") == 1800
    assert D.parse_budget("2h") == 7200
    assert D.parse_budget("1h30m") == 5400
    assert D.parse_budget("90s") == 90
    assert D.parse_budget("15") == 900
    for bad in ("soon", "30x", "10s", "m30"):
        with pytest.raises(HessdistillError, match="--budget"):
            D.parse_budget(bad)


def test_seed_file_errors_name_the_file_and_structure(tmp_path):
    with pytest.raises(HessdistillError, match="no such seed file"):
        D.read_seeds(tmp_path / "missing.extxyz")
    bad = tmp_path / "bad.extxyz"
    bad.write_text("this is not a structure file\n")
    with pytest.raises(HessdistillError, match="bad.extxyz"):
        D.read_seeds(bad)
    slab = Atoms("Cu2", positions=[[0, 0, 0], [1.3, 1.3, 0]], cell=[3, 3, 10], pbc=[True, True, False])
    path = tmp_path / "slab.extxyz"
    ase.io.write(path, [molecule("H2O"), slab])
    with pytest.raises(HessdistillError, match=r"structure 1: periodic along some axes only"):
        D.read_seeds(path)


def test_plan_grows_with_the_budget_and_shrinks_with_the_teacher_cost():
    small, large = D.plan_budget(600, 0.05), D.plan_budget(7200, 0.05)
    assert large.frames > small.frames and large.train_time_s > small.train_time_s
    slow = D.plan_budget(7200, 1.0)
    assert slow.frames < large.frames
    for p in (small, large, slow):
        # sampling + labelling stay within about a third of the budget (above the floor of 30 frames)
        if p.frames > 45:
            cost = p.frames * (D.SAMPLE_CALLS_PER_FRAME + D.LABEL_CALLS_PER_FRAME) * p.call_s
            assert cost <= 0.35 * p.budget_s
        # enough trajectories/series for grouped train/val/test splits
        assert p.n_trajectories + p.n_rattle_series + p.n_relax_series >= 10


def _seeds(tmp_path):
    path = tmp_path / "my structures.extxyz"
    ase.io.write(path, [molecule("CH3OH"), bulk("NaCl", "rocksalt", a=5.64)])
    return path, D.read_seeds(path)


def test_config_names_the_seeds_teacher_and_both_students(tmp_path):
    path, seeds = _seeds(tmp_path)
    text = D.render_config(
        name="my-structures",
        seeds_path=path,
        seeds=seeds,
        teacher="mace-off:small",
        student="schnet",
        plan=D.plan_budget(1800, 0.02),
        augment_from=None,
    )
    cfg = yaml.safe_load(text)
    (subset,) = cfg["subsets"]
    assert cfg["subsets"][subset]["source"]["name"] == "sample"
    assert cfg["subsets"][subset]["source"]["path"] == str(path)
    assert (
        list(cfg["teachers"]) == ["mace-off-small"] and cfg["teachers"]["mace-off-small"]["model"] == "mace-off:small"
    )
    assert set(cfg["runs"]) == {"undistilled", "distilled"}
    assert cfg["runs"]["undistilled"]["student"] == cfg["runs"]["distilled"]["student"]
    assert cfg["runs"]["distilled"]["student"]["arch"] == "schnet"
    evs = cfg["evaluation"]["evaluations"]
    # one molecule and one crystal: vibrations and phonons both
    assert {"vibrations", "phonons", "md", "speed", "disagreement"} <= set(evs)
    aug = yaml.safe_load(
        D.render_config(
            name="my-structures",
            seeds_path=path,
            seeds=seeds,
            teacher="chgnet",
            student="painn",
            plan=D.plan_budget(1800, 0.02),
            augment_from=tmp_path / "flagged.extxyz",
        )
    )
    assert aug["runs"]["distilled-augmented"]["extra_train_subsets"] == ["my-structures-flagged"]
    assert aug["subsets"]["my-structures-flagged"]["source"]["options"]["seed_frames"] is True
    # the first subset and runs are unchanged by --augment: nothing of the first call reruns
    base = yaml.safe_load(
        D.render_config(
            name="my-structures",
            seeds_path=path,
            seeds=seeds,
            teacher="chgnet",
            student="painn",
            plan=D.plan_budget(1800, 0.02),
            augment_from=None,
        )
    )
    assert aug["subsets"]["my-structures"] == base["subsets"]["my-structures"]
    assert aug["runs"]["distilled"] == base["runs"]["distilled"]


def test_written_config_passes_the_workflow_check(tmp_path):
    from hessdistill.workflow.config_check import check_workflow_config

    path, seeds = _seeds(tmp_path)
    text = D.render_config(
        name="s",
        seeds_path=path,
        seeds=seeds,
        teacher="chgnet",
        student="painn",
        plan=D.plan_budget(600, 0.05),
        augment_from=None,
    )
    from pathlib import Path

    schema = Path(D.REPO) / "schemas" / "config.schema.yaml"
    check_workflow_config(yaml.safe_load(text), schema)


def test_config_is_kept_for_the_same_arguments(tmp_path):
    args = {"seeds": "x", "teacher": "chgnet", "budget_s": 60.0}
    fp = D.arguments_fingerprint(args)
    path = D.write_config(tmp_path, "use_gpu: false\n", fp, args)
    assert D.recorded_fingerprint(path) == fp
    assert D.recorded_fingerprint(tmp_path / "absent.yaml") is None
    assert D.arguments_fingerprint({**args, "budget_s": 120.0}) != fp


def _row(**kw):
    base = {
        "speedup_latency": "12.0",
        "teacher_force_rel_error": "0.08",
        "teacher_force_mae_meV_A": "40",
        "teacher_energy_mae_meV_atom": "1.5",
        "hessian_rel_error": "0.2",
        "n_spurious_imaginary": "0",
        "freq_mae_rel": "0.05",
        "md_fraction_stable": "1.0",
        "params": "30000",
    }
    base.update(kw)
    return base


def test_verdict_is_absolute_and_warns_per_failed_criterion():
    text, warnings = D.verdict({"distilled": _row(), "undistilled": _row(hessian_rel_error="0.5")})
    assert "12.0x faster" in text and "8.0% of the teacher's force scale" in text and "undistilled: 50%" in text
    assert warnings == [] and text.endswith("Verdict: usable.")
    text, warnings = D.verdict(
        {"distilled": _row(n_spurious_imaginary="2", md_fraction_stable="0.6", speedup_latency="1.5")}
    )
    assert text.endswith("NOT ready to use.")
    joined = " ".join(warnings)
    assert "spurious imaginary" in joined and "unstable" in joined and "faster" in joined
    assert len(warnings) == 3
    # missing evaluations are left out of the verdict, never counted as passed or failed
    text, warnings = D.verdict({"distilled": _row(hessian_rel_error="", n_spurious_imaginary="nan")})
    assert warnings == [] and "n/a" in text
    with pytest.raises(HessdistillError, match="no row for run 'distilled'"):
        D.verdict({"undistilled": _row()})


def test_disagreement_ratio_warns():
    row = _row()
    row["disagreement_ratio"] = 7.5
    row["n_flagged_frames"] = 4
    text, warnings = D.verdict({"distilled": row})
    assert "7.5x as much as on the test set (4 frame(s) flagged)" in text
    assert any("extrapolates" in w for w in warnings)


def test_command_refuses_a_foreign_config(tmp_path):
    path, _ = _seeds(tmp_path)
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / "config.yaml").write_text("subsets: {}\n")
    with pytest.raises(HessdistillError, match="was not written by hessdistill distill"):
        D.run_distill(path, teacher="chgnet", budget="5m", workdir=tmp_path / "work", call_seconds=0.01)
    assert (tmp_path / "work" / "config.yaml").read_text() == "subsets: {}\n"


def test_teacher_cost_is_measured_after_warm_up(monkeypatch):
    calls = []
    import hessdistill.teachers as teachers
    import hessdistill.teachers.calculator as tc

    monkeypatch.setattr(teachers, "load_teacher", lambda *a, **k: object())

    from ase.calculators.calculator import Calculator, all_changes

    class Counting(Calculator):
        implemented_properties = ["energy", "forces"]

        def __init__(self, teacher):
            super().__init__()

        def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
            super().calculate(atoms, properties, system_changes)
            calls.append(len(self.atoms))
            self.results = {"energy": 0.0, "forces": np.zeros((len(self.atoms), 3))}

    monkeypatch.setattr(tc, "TeacherCalculator", Counting)
    t = D.measure_call_seconds("chgnet", [molecule("H2O"), molecule("CH4")], repeats=3)
    assert t >= 0.0
    # each seed: one warm-up call + 3 timed calls on new geometries
    assert calls == [3] * 4 + [5] * 4


def test_teacher_cost_is_measured_once_and_other_students_keep_the_subset(tmp_path, monkeypatch):
    pytest.importorskip("snakemake")
    path, _ = _seeds(tmp_path)
    measured = []

    def measure(teacher, seeds, **kw):
        measured.append(teacher)
        return 0.03

    monkeypatch.setattr(D, "measure_call_seconds", measure)
    work = tmp_path / "work"
    lines = []
    assert D.run_distill(path, teacher="chgnet", budget="20m", workdir=work, dry_run=True, out=lines.append) == 0
    first = yaml.safe_load((work / "config.yaml").read_text())
    assert measured == ["chgnet"]
    # the same arguments: the config is kept as it is (byte for byte)
    text = (work / "config.yaml").read_text()
    assert D.run_distill(path, teacher="chgnet", budget="20m", workdir=work, dry_run=True, out=lines.append) == 0
    assert (work / "config.yaml").read_text() == text and measured == ["chgnet"]
    assert any("kept as it is" in line for line in lines)
    # another student: rewritten, but with the recorded teacher cost, so the sampled subset is unchanged
    assert (
        D.run_distill(
            path, teacher="chgnet", student="schnet", budget="20m", workdir=work, dry_run=True, out=lines.append
        )
        == 0
    )
    second = yaml.safe_load((work / "config.yaml").read_text())
    assert measured == ["chgnet"]
    assert second["subsets"] == first["subsets"] and second["runs"]["distilled"]["student"]["arch"] == "schnet"
