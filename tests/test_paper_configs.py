"""configs/paper-*.yaml: schema-valid, dry-run clean, with the job counts the paper's experiment matrix implies;
and the workflow helpers that make per-subset run settings (hessdistill.workflow.params)."""

import re

import pytest
import yaml

from hessdistill.workflow.params import canon, combos, evaluation_protocol, run_config

pytest.importorskip("snakemake")

from test_workflow import ROOT, snakemake  # noqa: E402


def load(name):
    return yaml.safe_load((ROOT / "configs" / f"paper-{name}.yaml").read_text())


def job_counts(output: str) -> dict[str, int]:
    block = output.split("Job stats:")[1].split("total")[0]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", block, flags=re.M)}


def dry_run_counts(tmp_path, cfg) -> dict[str, int]:
    """Jobs per rule of a dry run of ``cfg`` (without `all`), which must succeed."""
    res = snakemake(tmp_path, cfg, "-n")
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-3000:]
    counts = job_counts(out)
    counts.pop("all", None)
    return counts


# name -> (data files present in data_dir, expected job counts)
EXPECTED = {
    # 3 subsets x 11 runs + 6 s-ablation runs on one subset + 6 size-sweep runs on another = 45 trainings; 3 CPU
    # evaluations (test, vibrations, relax) and 2 GPU ones (md, speed) per run and teacher; one teacher_minima per
    # subset and teacher (shared by the vibrations evaluations)
    "spice": (
        ["train_large_neut_no_bad_clean.xyz", "test_large_neut_all.xyz"],
        {
            "prepare_subset": 3,
            "label_teacher_shard": 24,
            "label_teacher_merge": 3,
            "train_run": 45,
            "evaluate_run": 135,
            "evaluate_run_md_speed": 90,
            "evaluate_teacher": 9,
            "evaluate_teacher_md_speed": 6,
            "teacher_minima": 3,
            "report": 1,
        },
    ),
    "mptrj": (
        ["MPtrj_2022.9_full.json", "bandgap_gt5_mp_ids.txt"],
        {
            "prepare_subset": 3,
            "label_teacher_shard": 24,
            "label_teacher_merge": 3,
            "train_run": 24,
            "evaluate_run": 72,
            "evaluate_run_md_speed": 48,
            "evaluate_teacher": 9,
            "evaluate_teacher_md_speed": 6,
            "teacher_minima": 3,
            "report": 1,
        },
    ),
    # MD22 files absent: the download rule fetches both (URLs from SOURCES)
    "md22": (
        [],
        {
            "download_source": 2,
            "prepare_subset": 2,
            "label_teacher_shard": 8,
            "label_teacher_merge": 2,
            "train_run": 8,
            "evaluate_run": 24,
            "evaluate_run_md_speed": 16,
            "evaluate_teacher": 6,
            "evaluate_teacher_md_speed": 4,
            "teacher_minima": 2,
            "report": 1,
        },
    ),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_paper_config_dry_runs_with_the_expected_jobs(name, tmp_path):
    files, expected = EXPECTED[name]
    data = tmp_path / "data"
    data.mkdir()
    for f in files:
        (data / f).write_text("")
    cfg = load(name)
    cfg["data_dir"] = str(data)
    assert dry_run_counts(tmp_path, cfg) == expected


def test_paper_settings_per_subset():
    spice = load("spice")
    assert run_config(spice, "monomers", "gemnet-hessian")["rows_per_structure"] == 4
    assert run_config(spice, "solvated-amino-acids", "gemnet-hessian")["rows_per_structure"] == 1
    assert run_config(spice, "iodine", "gemnet-hessian")["weights"] == {"energy": 5, "forces": 100, "hessian": 400}
    assert "paper_table" not in run_config(spice, "iodine", "gemnet-hessian")
    ablation = {r for s, _, r in combos(spice) if r.split("-")[-1] in ("s4", "s10", "s15")}
    assert ablation == {f"{a}-hessian-{s}" for a in ("gemnet", "painn") for s in ("s4", "s10", "s15")}
    sweep = {r for s, _, r in combos(spice) if r.endswith("k")}
    assert len(sweep) == 6 and all(s == "monomers" for s, _, r in combos(spice) if r in sweep)
    assert all(s == "solvated-amino-acids" for s, _, r in combos(spice) if r in ablation)
    assert evaluation_protocol(spice, "solvated-amino-acids", "md")["ensemble"] == "nvt"
    assert evaluation_protocol(spice, "monomers", "md")["ensemble"] == "nve"
    mptrj = load("mptrj")
    bg = run_config(mptrj, "bandgap", "painn-hessian")["student"]
    assert bg["cutoff"] == 6.0 and bg["hidden"] == 128  # merged into the student dict, not replacing it
    assert run_config(mptrj, "yttrium", "painn-hessian")["student"]["cutoff"] == 12.0
    assert run_config(mptrj, "yttrium", "gemnet-hessian")["weights"]["hessian"] == 200
    md22 = load("md22")
    assert {run_config(md22, "buckyball-catcher", r)["student"]["direct_forces"] for r in md22["runs"]} == {True, False}
    # every run's options are valid TrainConfig options (what the train job will accept)
    from hessdistill.training.config import TrainConfig

    for cfg in (spice, mptrj, md22):
        for s, _, r in combos(cfg):
            TrainConfig.from_dict(run_config(cfg, s, r))


def test_canon_is_order_and_type_insensitive():
    a = canon({"b": (1, 2), "a": {"y": 1.0, "x": None}})
    b = canon({"a": {"x": None, "y": 1.0}, "b": [1, 2]})
    assert repr(a) == repr(b) == "{'a': {'x': None, 'y': 1.0}, 'b': [1, 2]}"


def test_offline_analogue_config_dry_runs_with_the_expected_jobs(tmp_path):
    cfg = yaml.safe_load((ROOT / "configs" / "offline-analogue.yaml").read_text())
    assert dry_run_counts(tmp_path, cfg) == {
        "prepare_subset": 1,
        "label_teacher": 1,
        "train_run": 8,
        "evaluate_run": 24,
        "evaluate_run_md_speed": 16,
        "evaluate_teacher": 3,
        "evaluate_teacher_md_speed": 2,
        "teacher_minima": 1,
        "report": 1,
    }


def test_offline_table1_config_learns_reference_labels_from_another_model_than_the_teacher(tmp_path):
    cfg = yaml.safe_load((ROOT / "configs" / "offline-table1.yaml").read_text())
    (subset,) = cfg["subsets"].values()
    (teacher,) = cfg["teachers"].values()
    assert subset["source"]["options"]["teacher"] == "chgnet" and teacher["model"] == "sevenn"  # reference != teacher
    assert {r["method"] for r in cfg["runs"].values()} == {"undistilled", "hessian", "n2n", "teacher-forces"}
    assert dry_run_counts(tmp_path, cfg) == {
        "prepare_subset": 1,
        "label_teacher": 1,
        "train_run": 4,
        "evaluate_run": 8,
        "evaluate_run_md_speed": 4,
        "evaluate_teacher": 1,
        "evaluate_teacher_md_speed": 1,
        "teacher_minima": 1,
        "report": 1,
    }
