"""The Snakemake workflow: the tiny CI configuration end to end, then params-triggered reruns by dry runs.

The full run (module fixture) takes a few minutes on 2 CPU cores; the dry-run checks reuse its results and
take a few seconds each.  Skipped where snakemake is not installed (pip install -e '.[workflow]').
"""

import copy
import csv
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

pytest.importorskip("snakemake")

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = Path(sys.executable).parent / "snakemake"
CI_TINY = ROOT / "configs" / "ci-tiny.yaml"


def snakemake_command(workdir, config, *args) -> list[str]:
    """The snakemake command line for the repository's Snakefile with `config` (a dict, written next to the
    results) in `workdir`, then `args`."""
    cfg_path = Path(workdir) / f"config-{time.monotonic_ns()}.yaml"
    cfg_path.write_text(yaml.safe_dump(config, sort_keys=False))
    exe = str(SNAKEMAKE) if SNAKEMAKE.exists() else shutil.which("snakemake")
    return [
        exe,
        "--snakefile",
        str(ROOT / "Snakefile"),
        "--directory",
        str(workdir),
        "--configfile",
        str(cfg_path),
        *args,
    ]


def snakemake(workdir, config, *args, timeout=900):
    """Run snakemake with `config` in `workdir` on 2 cores (:func:`snakemake_command`)."""
    cmd = snakemake_command(workdir, config, "-c", "2", *args)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def planned_jobs(output: str) -> set[str]:
    """'rule: first output' of every job a dry run plans (rule `all` left out)."""
    jobs, rule = set(), None
    for line in output.splitlines():
        m = re.match(r"^(?:local)?rule (\S+):\s*$", line)
        if m:
            rule = m.group(1)
            continue
        m = re.match(r"^\s+output: (\S+?),?(?:\s|$)", line)
        if m and rule is not None:
            jobs.add(f"{rule}: {m.group(1).rstrip(',')}")
            rule = None
    return jobs


def dry_run(workdir, config) -> set[str]:
    res = snakemake(workdir, config, "-n")
    assert res.returncode == 0, res.stdout + res.stderr
    return planned_jobs(res.stdout + res.stderr)


def base_config() -> dict:
    return yaml.safe_load(CI_TINY.read_text())


R = "results/tiny-sto"
EVALS = ("test", "vibrations", "md", "relax", "speed")


def run_jobs(run, teacher="chgnet"):
    """Jobs of one student run: train + one evaluation job per protocol."""
    jobs = {f"train_run: {R}/runs/{teacher}/{run}/model.pt"}
    for ev in EVALS:
        rule = "evaluate_run_md_speed" if ev in ("md", "speed") else "evaluate_run"
        jobs.add(f"{rule}: {R}/runs/{teacher}/{run}/eval/{ev}.json")
    return jobs


def teacher_eval_jobs(teacher="chgnet"):
    return {
        f"{'evaluate_teacher_md_speed' if ev in ('md', 'speed') else 'evaluate_teacher'}: "
        f"{R}/teachers/{teacher}/eval/{ev}.json"
        for ev in EVALS
    }


REPORT = {"report: results/report/summary.csv"}


@pytest.fixture(scope="module")
def completed(ci_tiny_completed):
    """The finished ci-tiny run (tests/conftest.py; the Slurm test compares its results with the same run)."""
    return ci_tiny_completed


def test_schema_typo_fails_naming_the_key(tmp_path):
    cfg = base_config()
    cfg["runs"]["tiny-hessian"]["lrr"] = 0.01
    res = snakemake(tmp_path, cfg, "-n")
    assert res.returncode != 0
    assert "lrr" in res.stdout + res.stderr
    cfg = base_config()
    cfg["evalution"] = {}
    res = snakemake(tmp_path, cfg, "-n")
    assert res.returncode != 0
    assert "evalution" in res.stdout + res.stderr


def test_dry_run_plans_the_whole_dag(tmp_path):
    jobs = dry_run(tmp_path, base_config())
    expected = (
        {
            f"prepare_subset: {R}/data/structures.h5",
            f"label_teacher: {R}/teachers/chgnet/labels.h5",
            f"teacher_minima: {R}/teachers/chgnet/vibrations_minima.h5",
        }
        | run_jobs("tiny-undistilled")
        | run_jobs("tiny-hessian")
        | teacher_eval_jobs()
        | REPORT
    )
    assert jobs == expected


def test_teacher_evaluations_can_be_chosen(tmp_path):
    """evaluate_teachers as a list: the teacher pseudo-run gets only those evaluations; the students all of them."""
    cfg = base_config()
    cfg["evaluation"]["evaluate_teachers"] = ["test", "speed"]
    jobs = dry_run(tmp_path, cfg)
    teacher = {j for j in jobs if "/teachers/chgnet/eval/" in j}
    assert teacher == {
        f"evaluate_teacher: {R}/teachers/chgnet/eval/test.json",
        f"evaluate_teacher_md_speed: {R}/teachers/chgnet/eval/speed.json",
    }
    assert run_jobs("tiny-hessian") <= jobs
    assert f"teacher_minima: {R}/teachers/chgnet/vibrations_minima.h5" in jobs  # the students' vibrations need it


def _dag_edges(dot: str) -> tuple[dict[str, str], set[tuple[str, str]]]:
    """(node id -> rule name, edges (from, to)) of `snakemake --dag` output."""
    nodes = {m.group(1): m.group(2) for m in re.finditer(r'^\s*(\d+)\[label = "([^"\\]+)', dot, flags=re.M)}
    edges = {(m.group(1), m.group(2)) for m in re.finditer(r"^\s*(\d+) -> (\d+)", dot, flags=re.M)}
    return nodes, edges


def test_the_disagreement_evaluation_waits_for_its_partners_training(tmp_path):
    """disagreement in evaluation.evaluations: one job per student run (none for the teacher), which reads the other
    run's model: the partner's training is planned, is an input of the job, and comes before it in the DAG."""
    cfg = base_config()
    cfg["evaluation"]["evaluations"].append("disagreement")
    cfg["evaluation"]["protocol"]["disagreement"] = {"n_structures": 1, "steps": 10, "every": 5}
    res = snakemake(tmp_path, cfg, "-n")
    assert res.returncode == 0, res.stdout + res.stderr
    jobs = planned_jobs(res.stdout)
    assert {j for j in jobs if j.startswith("evaluate_run_disagreement")} == {
        f"evaluate_run_disagreement: {R}/runs/chgnet/{r}/eval/disagreement.json"
        for r in ("tiny-undistilled", "tiny-hessian")
    }
    assert not any("teachers/chgnet/eval/disagreement" in j for j in jobs)
    assert run_jobs("tiny-undistilled") | run_jobs("tiny-hessian") <= jobs
    block = res.stdout[res.stdout.index("rule evaluate_run_disagreement:") :].split("\n\n")[0]
    run = re.search(r"runs/chgnet/([^/]+)/eval/disagreement.json", block).group(1)
    partner = ({"tiny-undistilled", "tiny-hessian"} - {run}).pop()
    inputs = re.search(r"^\s+input: (.*)$", block, flags=re.M).group(1).split(", ")
    assert f"{R}/runs/chgnet/{partner}/model.pt" in inputs and f"{R}/runs/chgnet/{run}/model.pt" in inputs
    assert f"{R}/runs/chgnet/{run}/eval/flagged.extxyz" in block
    # the DAG: every disagreement job depends on both trainings (its own run's and its partner's)
    dag = snakemake(tmp_path, cfg, "--dag")
    assert dag.returncode == 0, dag.stderr
    nodes, edges = _dag_edges(dag.stdout)
    trains = {i for i, rule in nodes.items() if rule == "train_run"}
    evals = {i for i, rule in nodes.items() if rule == "evaluate_run_disagreement"}
    assert len(trains) == 2 and len(evals) == 2
    assert all((t, e) in edges for t in trains for e in evals)
    # MD on the job's device: with use_gpu the disagreement jobs ask for a GPU, like md
    cfg["use_gpu"] = True
    res = snakemake(tmp_path, cfg, "-n")
    assert res.returncode == 0, res.stdout + res.stderr
    gpu = _gpu_jobs(res.stdout + res.stderr)
    assert {f"evaluate_run_disagreement: {R}/runs/chgnet/{r}/eval/disagreement.json" for r in (run, partner)} <= gpu


def _tiny_students(workdir, cfg):
    """A structure store and an untrained student of each ci-tiny run where the workflow keeps them (the teacher's
    label files as empty placeholders, older than the students, which nothing here reads): one evaluation job can
    run without the workflow before it."""
    import numpy as np
    import torch
    from ase.spacegroup import crystal

    from hessdistill.data.store import write_structures
    from hessdistill.students.checkpoint import save_student
    from hessdistill.students.registry import build_student

    base = Path(workdir) / R
    rng = np.random.default_rng(0)
    frames = []
    for _ in range(4):
        a = crystal(
            ["Sr", "Ti", "O"], [(0, 0, 0), (0.5, 0.5, 0.5), (0.5, 0.5, 0)], spacegroup=221, cellpar=[3.9] * 3 + [90] * 3
        )
        a.positions += rng.normal(scale=0.03, size=a.positions.shape)
        frames.append(a)
    (base / "data").mkdir(parents=True)
    split = {"train": frames[:2], "val": frames[2:3], "test": frames[3:]}
    write_structures(base / "data" / "structures.h5", split, require_labels=False)
    (base / "teachers" / "chgnet").mkdir(parents=True)
    for name in ("labels.h5", "hessians.h5"):
        (base / "teachers" / "chgnet" / name).touch()
    time.sleep(1.1)
    for k, run in enumerate(cfg["runs"]):
        torch.manual_seed(k)
        (base / "runs" / "chgnet" / run).mkdir(parents=True)
        save_student(base / "runs" / "chgnet" / run / "model.pt", build_student(dict(cfg["runs"][run]["student"])))


def test_the_disagreement_job_writes_its_outputs_and_reruns_when_a_partner_changes(tmp_path):
    """The rule's job itself (only it: students saved in place of the trainings), then a dry run after the partner's
    model changed plans it again."""
    cfg = base_config()
    cfg["evaluation"].update(evaluations=["disagreement"], evaluate_teachers=False)
    cfg["evaluation"]["protocol"] = {"disagreement": {"n_structures": 1, "steps": 10, "every": 5}}
    _tiny_students(tmp_path, cfg)
    target = f"{R}/runs/chgnet/tiny-hessian/eval/disagreement.json"
    only = ("--allowed-rules", "evaluate_run_disagreement")
    res = snakemake(tmp_path, cfg, target, *only)
    assert res.returncode == 0, res.stdout + res.stderr
    data = json.loads((tmp_path / target).read_text())
    assert data["identity"] == {"subset": "tiny-sto", "teacher": "chgnet", "run": "tiny-hessian"}
    assert data["partners"] == ["tiny-undistilled"] and data["md_n_frames"] == 3 and data["md_mean_eV_A"] > 0
    from hessdistill.evaluation.disagreement import read_flagged

    assert len(read_flagged(tmp_path / R / "runs/chgnet/tiny-hessian/eval/flagged.extxyz")) == data["n_flagged"]

    def planned():
        res = snakemake(tmp_path, cfg, target, *only, "-n")
        assert res.returncode == 0, res.stdout + res.stderr
        return planned_jobs(res.stdout + res.stderr)

    assert planned() == set()
    time.sleep(1.1)
    import torch

    from hessdistill.students.checkpoint import save_student
    from hessdistill.students.registry import build_student

    torch.manual_seed(7)  # the partner retrained: another model.pt (Snakemake sees through a mere touch)
    partner = build_student(dict(cfg["runs"]["tiny-undistilled"]["student"]))
    save_student(tmp_path / R / "runs/chgnet/tiny-undistilled/model.pt", partner)
    assert planned() == {f"evaluate_run_disagreement: {target}"}


def test_a_disagreement_without_partners_fails_at_start(tmp_path):
    cfg = base_config()
    cfg["evaluation"]["evaluations"].append("disagreement")
    del cfg["runs"]["tiny-undistilled"]
    res = snakemake(tmp_path, cfg, "-n")
    assert res.returncode != 0
    assert "evaluation.protocol.disagreement.partners" in res.stdout + res.stderr
    assert "undistilled" in res.stdout + res.stderr  # the fix: add an undistilled run, or list partners


@pytest.mark.slow
def test_full_ci_tiny_run_writes_the_report(completed):
    rep = completed / "results" / "report"
    rows = list(csv.DictReader((rep / "summary.csv").open()))
    assert {r["run"] for r in rows} == {"teacher", "tiny-undistilled", "tiny-hessian"}
    for r in rows:
        assert r["subset"] == "tiny-sto" and r["teacher"] == "chgnet"
        assert float(r["force_mae_meV_A"]) >= 0 and int(r["params"]) > 0
        if r["run"] != "teacher":
            assert float(r["hessian_mae_meV_A2"]) >= 0 and float(r["speedup_latency"]) > 0
            assert r["method"] in ("undistilled", "hessian") and int(r["epochs"]) == 2
    md = (rep / "summary.md").read_text()
    assert md.startswith("# hessdistill ci-tiny") and "tiny-hessian" in md
    for name in ("table_accuracy", "table_speed", "table_dynamics"):
        for ext in ("md", "csv", "tex"):
            assert (rep / f"{name}.{ext}").stat().st_size > 0
    acc = list(csv.DictReader((rep / "table_accuracy.csv").open()))
    assert [r["model"] for r in acc][0].startswith("Teacher (chgnet")
    best = [r for r in acc if r["best_tiny-sto: F MAE (meV/Å)"] == "1"]
    assert len(best) >= 1 and all(not r["model"].startswith("Teacher") for r in best)
    assert "\\begin{tabular}" in (rep / "table_accuracy.tex").read_text()
    for fig in ("fig_accuracy_vs_speed", "fig_parity", "fig_md_energy", "fig_stability", "fig_training"):
        assert (rep / f"{fig}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for ev in EVALS:
        assert (completed / R / "runs/chgnet/tiny-hessian/eval" / f"{ev}.json").exists()
        assert (completed / R / "teachers/chgnet/eval" / f"{ev}.json").exists()
    for sub in ("logs", "benchmarks"):
        assert any((completed / "results" / sub).rglob("*"))


@pytest.mark.slow
def test_nothing_to_do_after_a_complete_run(completed):
    assert dry_run(completed, base_config()) == set()


@pytest.mark.slow
def test_changing_one_runs_lr_reruns_only_that_run(completed):
    cfg = base_config()
    cfg["runs"]["tiny-hessian"]["lr"] = 0.002
    assert dry_run(completed, cfg) == run_jobs("tiny-hessian") | REPORT


@pytest.mark.slow
def test_changing_a_report_option_reruns_only_the_report(completed):
    cfg = base_config()
    cfg["report"]["title"] = "another title"
    assert dry_run(completed, cfg) == REPORT


@pytest.mark.slow
def test_changing_one_protocol_reruns_only_that_evaluation(completed):
    cfg = base_config()
    cfg["evaluation"]["protocol"]["md"]["steps"] = 30
    expected = {
        f"evaluate_run_md_speed: {R}/runs/chgnet/{r}/eval/md.json" for r in ("tiny-undistilled", "tiny-hessian")
    }
    expected |= {f"evaluate_teacher_md_speed: {R}/teachers/chgnet/eval/md.json"}
    assert dry_run(completed, cfg) == expected | REPORT  # the report reads md.json (stability table, figures)


@pytest.mark.slow
def test_the_teachers_minima_are_made_once_and_rerun_only_with_the_relaxation_protocol(completed):
    """Every vibrations evaluation reads one minima file per subset and teacher; a relaxation setting reruns it and
    the vibrations evaluations, a student setting or the teacher's labelling dtype never does."""
    minima = f"teacher_minima: {R}/teachers/chgnet/vibrations_minima.h5"
    assert (completed / minima.split(": ")[1]).exists()
    cfg = base_config()
    cfg["evaluation"]["protocol"]["vibrations"]["fmax"] = 0.02
    expected = {minima, f"evaluate_teacher: {R}/teachers/chgnet/eval/vibrations.json"}
    expected |= {
        f"evaluate_run: {R}/runs/chgnet/{r}/eval/vibrations.json" for r in ("tiny-undistilled", "tiny-hessian")
    }
    assert dry_run(completed, cfg) == expected | REPORT


@pytest.mark.slow
def test_changing_the_teacher_dtype_reruns_labels_and_after_not_the_subset(completed):
    cfg = base_config()
    cfg["teachers"]["chgnet"]["dtype"] = "float64"
    expected = (
        {f"label_teacher: {R}/teachers/chgnet/labels.h5"}
        | run_jobs("tiny-undistilled")
        | run_jobs("tiny-hessian")
        | teacher_eval_jobs()
        | REPORT
    )
    assert dry_run(completed, cfg) == expected


@pytest.mark.slow
def test_adding_a_run_adds_only_its_jobs(completed):
    cfg = base_config()
    cfg["runs"]["tiny-new"] = copy.deepcopy(cfg["runs"]["tiny-undistilled"]) | {"seed": 1}
    assert dry_run(completed, cfg) == run_jobs("tiny-new") | REPORT


@pytest.mark.slow
def test_reordering_config_keys_reruns_nothing(completed):
    cfg = base_config()
    cfg["runs"] = {k: dict(reversed(list(v.items()))) for k, v in reversed(list(cfg["runs"].items()))}
    cfg["teachers"]["chgnet"] = dict(reversed(list(cfg["teachers"]["chgnet"].items())))
    assert dry_run(completed, cfg) == set()


@pytest.mark.slow
def test_changing_resources_or_gpu_request_reruns_nothing(completed):
    cfg = base_config()
    cfg["resources"] = {
        "train": {"mem_mb": 32000, "runtime": "2h", "extra": {"slurm_partition": "gpu"}},
        "label": {"threads": 8},
    }
    cfg["gpu_request"] = {"gres": "gpu:a100:1"}
    assert dry_run(completed, cfg) == set()


@pytest.mark.slow
def test_moving_jobs_to_the_gpu_reruns_only_the_speed_evaluations(completed):
    """The device is where a job runs, not what it computes: labels, training, MD and the rest stay; only the
    speed evaluations (whose numbers are the device's) rerun."""
    cfg = base_config()
    cfg["use_gpu"] = True
    cfg["gpu_device"] = "auto"
    expected = (
        {f"evaluate_run_md_speed: {R}/runs/chgnet/{r}/eval/speed.json" for r in ("tiny-undistilled", "tiny-hessian")}
        | {f"evaluate_teacher_md_speed: {R}/teachers/chgnet/eval/speed.json"}
        | REPORT
    )
    assert dry_run(completed, cfg) == expected


@pytest.mark.slow
def test_every_output_records_where_it_was_computed(completed):
    import h5py

    summary = json.loads((completed / R / "runs/chgnet/tiny-hessian/summary.json").read_text())
    assert summary["device"] == "cpu" and summary["float32_matmul_precision"] == "highest" and not summary["tf32"]
    for ev in EVALS:
        rec = json.loads((completed / R / "runs/chgnet/tiny-hessian/eval" / f"{ev}.json").read_text())
        assert rec["device"] == "cpu" and "gpu_name" in rec and "torch" in rec
    speed = json.loads((completed / R / "runs/chgnet/tiny-hessian/eval/speed.json").read_text())
    assert speed["teacher_dtype"] == speed["student_dtype"] == "float32"
    with h5py.File(completed / R / "teachers/chgnet/labels.h5") as f:
        assert f.attrs["device"] == "cpu" and f.attrs["float32_matmul_precision"] == "highest"


@pytest.mark.slow
def test_snakemake_report_builds_an_html_report_with_the_figures(completed):
    res = snakemake(completed, base_config(), "--report", "report.html")
    assert res.returncode == 0, (res.stdout + res.stderr)[-4000:]
    html = (completed / "report.html").read_text(errors="replace")
    assert len(html) > 10_000
    for name in ("fig_parity.png", "fig_training.png", "table_accuracy.csv"):
        assert name in html
    assert "Force parity" in html  # a caption from report/fig_parity.rst


def test_resources_reach_the_jobs_and_a_gpu_request_only_gpu_families(tmp_path):
    cfg = base_config()
    cfg["use_gpu"] = True
    cfg["gpu_device"] = "auto"
    cfg["gpu_request"] = {"gpu": 1, "gpu_model": "a100"}
    cfg["resources"] = {"train": {"mem_mb": 12345, "runtime": 99, "extra": {"slurm_partition": "gpu"}}}
    res = snakemake(tmp_path, cfg, "-n")
    assert res.returncode == 0, res.stdout + res.stderr
    blocks = re.split(r"\n(?=(?:local)?rule \S+:)", res.stdout + res.stderr)
    seen = set()
    for b in blocks:
        m = re.match(r"(?:local)?rule (\S+):", b)
        if not m or m.group(1) == "all":
            continue
        rule = m.group(1)
        seen.add(rule)
        res_line = next(line for line in b.splitlines() if line.strip().startswith("resources:"))
        gpu = "gpu=1" in res_line and "gpu_model=a100" in res_line
        assert gpu == (rule in ("label_teacher", "train_run", "evaluate_run_md_speed", "evaluate_teacher_md_speed")), b
        if rule == "train_run":
            assert "mem_mb=12345" in res_line and "runtime=99" in res_line and "slurm_partition=gpu" in res_line
    assert "train_run" in seen and "prepare_subset" in seen


def _gpu_jobs(output: str) -> set[str]:
    """'rule: first output' of the jobs of a dry run that ask for a GPU (gpu=1 among their resources)."""
    out = set()
    for b in re.split(r"\n(?=(?:local)?rule \S+:)", output):
        m = re.match(r"(?:local)?rule (\S+):", b)
        if not m or m.group(1) == "all":
            continue
        res_line = next((ln for ln in b.splitlines() if ln.strip().startswith("resources:")), "")
        if re.search(r"\bgpu=1\b", res_line):
            out |= planned_jobs(b)
    return out


def test_gpu_requests_follow_each_jobs_own_device(tmp_path):
    """A run's own device: cuda asks for a GPU without use_gpu; with use_gpu, an ASE-calculator teacher's labelling
    and speed jobs stay on the CPU (that teacher cannot use a GPU) while its MD runs on the GPU."""
    cfg = base_config()
    cfg["runs"]["tiny-hessian"]["device"] = "cuda"
    res = snakemake(tmp_path, cfg, "-n")
    assert res.returncode == 0, res.stdout + res.stderr
    assert _gpu_jobs(res.stdout + res.stderr) == {f"train_run: {R}/runs/chgnet/tiny-hessian/model.pt"}
    cfg = base_config()
    cfg["use_gpu"] = True
    cfg["teachers"] = {"emt": {"model": "ase:ase.calculators.emt:EMT", "rows": 3}}
    del cfg["runs"]["tiny-undistilled"]
    res = snakemake(tmp_path, cfg, "-n")
    assert res.returncode == 0, res.stdout + res.stderr
    gpu = _gpu_jobs(res.stdout + res.stderr)
    assert f"train_run: {R}/runs/emt/tiny-hessian/model.pt" in gpu
    assert f"evaluate_run_md_speed: {R}/runs/emt/tiny-hessian/eval/md.json" in gpu
    assert not any(j.startswith("label_teacher") or j.endswith("speed.json") for j in gpu), gpu


def _write_cu_frames(path):
    """Six rattled fcc Cu cells labelled by EMT, as extxyz at ``path`` (a small generic source file)."""
    from ase.build import bulk
    from ase.calculators.emt import EMT
    from ase.io import write

    frames = []
    for i in range(6):
        a = bulk("Cu", "fcc", a=3.6, cubic=True)
        a.rattle(0.02, seed=i)
        a.calc = EMT()
        a.get_potential_energy()
        frames.append(a)
    path.parent.mkdir(parents=True)
    write(path, frames, format="extxyz")
    return path


def test_a_missing_source_file_is_downloaded_with_its_checksum(tmp_path):
    """A subset whose source file is absent plans download_source (URL + sha256 from the config), which fetches
    and verifies it; a wrong checksum fails the job and leaves no file."""
    import hashlib

    pub = _write_cu_frames(tmp_path / "published" / "cu.xyz")
    sha = hashlib.sha256(pub.read_bytes()).hexdigest()
    cfg = base_config()
    cfg["data_dir"] = str(tmp_path / "data")
    cfg["subsets"] = {
        "cu": {
            "source": {"name": "generic", "path": "cu.xyz", "url": pub.as_uri(), "sha256": sha},
            "split": {"fractions": {"train": 0.5, "val": 0.25, "test": 0.25}, "seed": 0},
        }
    }
    work = tmp_path / "work"
    work.mkdir()
    target = str(tmp_path / "data" / "cu.xyz")
    assert f"download_source: {target}" in dry_run(work, cfg)
    res = snakemake(work, cfg, target)
    assert res.returncode == 0, (res.stdout + res.stderr)[-3000:]
    assert hashlib.sha256((tmp_path / "data" / "cu.xyz").read_bytes()).hexdigest() == sha
    assert "prepare_subset: results/cu/data/structures.h5" in dry_run(work, cfg)
    assert not any(j.startswith("download_source") for j in dry_run(work, cfg))
    bad = copy.deepcopy(cfg)
    bad["subsets"]["cu"]["source"]["path"] = "cu2.xyz"
    bad["subsets"]["cu"]["source"]["sha256"] = "0" * 64
    res = snakemake(work, bad, str(tmp_path / "data" / "cu2.xyz"))
    assert res.returncode != 0 and not (tmp_path / "data" / "cu2.xyz").exists()
    log = (work / "results/logs/download_source").rglob("*.log")
    assert any("does not match" in p.read_text() for p in log)


def test_snakemake_lint_is_clean(tmp_path):
    res = snakemake(tmp_path, base_config(), "--lint")
    out = res.stdout + res.stderr
    assert res.returncode == 0 and "Congratulations, your workflow is in a good condition" in out, out[-3000:]


@pytest.mark.slow
def test_a_killed_training_job_resumes_from_its_checkpoint(completed):
    """What a Slurm requeue or a crashed node does to a long training job: the rerun continues from last.pt."""
    import os
    import signal

    cfg = base_config()
    cfg["runs"]["tiny-resume"] = copy.deepcopy(cfg["runs"]["tiny-undistilled"]) | {"max_epochs": 25}
    target = f"{R}/runs/chgnet/tiny-resume/model.pt"
    cfg_path = completed / "config-resume.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    exe = str(SNAKEMAKE) if SNAKEMAKE.exists() else shutil.which("snakemake")
    cmd = [
        exe,
        "--snakefile",
        str(ROOT / "Snakefile"),
        "--directory",
        str(completed),
        "--configfile",
        str(cfg_path),
        "-c",
        "2",
        target,
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    log_csv = completed / R / "runs/chgnet/tiny-resume/log.csv"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if log_csv.exists() and len(log_csv.read_text().splitlines()) >= 4:  # header + 3 epochs
            break
        assert proc.poll() is None, "the training finished before it could be interrupted"
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = len(log_csv.read_text().splitlines()) - 1
    assert 3 <= done_before < 25
    assert not (completed / target).exists()
    assert snakemake(completed, cfg, "--unlock").returncode == 0
    res = snakemake(completed, cfg, "--rerun-incomplete", target)
    assert res.returncode == 0, (res.stdout + res.stderr)[-3000:]
    train_log = (completed / "results/logs/train_run/tiny-sto/chgnet/tiny-resume.log").read_text()
    assert re.search(r"resumed \S+ at epoch (\d+)", train_log), train_log[-2000:]
    resumed_at = int(re.search(r"resumed \S+ at epoch (\d+)", train_log).group(1))
    assert resumed_at >= done_before - 1  # at most the epoch in flight is redone
    epochs = [int(r["epoch"]) for r in csv.DictReader(log_csv.open())]
    assert epochs == list(range(1, 26))


# ---------------------------------------------------------------- reruns that never break and never lose work
def _copy_of(completed, tmp_path):
    """A copy of the finished workflow directory (results and Snakemake metadata, modification times kept)."""
    work = tmp_path / "copy"
    shutil.copytree(completed, work, symlinks=True)
    return work


def _snapshot(work):
    return {
        str(p.relative_to(work)): (p.stat().st_mtime_ns, p.stat().st_size)
        for p in (work / "results").rglob("*")
        if p.is_file()
    }


def _train_outputs(work, run):
    return [work / R / "runs/chgnet" / run / n for n in ("model.pt", "log.csv", "summary.json")]


@pytest.mark.slow
def test_an_upstream_change_retrains_from_scratch_and_succeeds(completed, tmp_path):
    """New teacher labels (dtype float64): the rerun training must not resume the checkpoint made on the old
    labels (it would find its budget spent, write nothing and fail for good); it starts over and succeeds."""
    work = _copy_of(completed, tmp_path)
    cfg = base_config()
    cfg["teachers"]["chgnet"]["dtype"] = "float64"
    target = f"{R}/runs/chgnet/tiny-hessian/model.pt"
    res = snakemake(work, cfg, target)
    assert res.returncode == 0, (res.stdout + res.stderr)[-4000:]
    log = (work / "results/logs/train_run/tiny-sto/chgnet/tiny-hessian.log").read_text()
    assert "not resuming" in log and "training data differ" in log, log[-3000:]
    assert all(p.exists() for p in _train_outputs(work, "tiny-hessian"))
    epochs = [int(r["epoch"]) for r in csv.DictReader((work / R / "runs/chgnet/tiny-hessian/log.csv").open())]
    assert epochs == [1, 2]
    assert f"train_run: {target}" not in dry_run(work, cfg)


@pytest.mark.slow
def test_a_forced_rerun_of_a_training_succeeds(completed, tmp_path):
    work = _copy_of(completed, tmp_path)
    target = f"{R}/runs/chgnet/tiny-undistilled/model.pt"
    res = snakemake(work, base_config(), target, "--forcerun", "train_run")  # (--forcerun takes several names)
    assert res.returncode == 0, (res.stdout + res.stderr)[-4000:]
    assert "train_run" in res.stdout + res.stderr and "evaluate_run" not in res.stdout + res.stderr
    assert all(p.exists() for p in _train_outputs(work, "tiny-undistilled"))
    assert len((work / R / "runs/chgnet/tiny-undistilled/log.csv").read_text().splitlines()) == 3
    res = snakemake(work, base_config(), target, "--forcerun", "train_run")  # and again: no stale state left
    assert res.returncode == 0, (res.stdout + res.stderr)[-4000:]


@pytest.mark.slow
def test_touching_scripts_and_library_files_reruns_nothing(completed):
    """Modification times of the code (a touch, a git checkout back and forth) are not code changes."""
    import os

    for p in [
        *(ROOT / "workflow_scripts").glob("*.py"),
        *(ROOT / "src" / "hessdistill").rglob("*.py"),
        *(ROOT / "rules").glob("*.smk"),
        ROOT / "Snakefile",
    ]:
        os.utime(p, None)
    assert dry_run(completed, base_config()) == set()


@pytest.mark.slow
def test_a_code_change_reruns_the_jobs_whose_code_it_is(completed, tmp_path):
    """A copy of the workflow whose labelling job does something new: labelling and everything after it are
    planned, nothing before it; the same job with only a new comment plans nothing."""
    repo = tmp_path / "repo"
    repo.mkdir()
    for name in ("Snakefile", "rules", "workflow_scripts", "schemas", "profiles", "report", "envs", "src"):
        src = ROOT / name
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, repo / name)
    env = {**os.environ, "PYTHONPATH": str(repo / "src")}  # the copy's library: its code is what is hashed
    work = _copy_of(completed, tmp_path)
    cfg_path = work / "cfg.yaml"
    cfg_path.write_text(yaml.safe_dump(base_config(), sort_keys=False))
    exe = str(SNAKEMAKE) if SNAKEMAKE.exists() else shutil.which("snakemake")

    def planned():
        res = subprocess.run(
            [
                exe,
                "--snakefile",
                str(repo / "Snakefile"),
                "--directory",
                str(work),
                "--configfile",
                str(cfg_path),
                "-c",
                "1",
                "-n",
            ],
            capture_output=True,
            text=True,
            timeout=300,
            env=env,
        )
        assert res.returncode == 0, res.stdout + res.stderr
        return planned_jobs(res.stdout + res.stderr)

    assert planned() == set()  # the copy's code is the same code
    script = repo / "src" / "hessdistill" / "jobs" / "label.py"
    script.write_text(script.read_text() + "\n# a comment only\n")
    assert planned() == set()
    script.write_text(script.read_text() + "\n_LABELLED = True\n")
    expected = (
        {f"label_teacher: {R}/teachers/chgnet/labels.h5"}
        | run_jobs("tiny-undistilled")
        | run_jobs("tiny-hessian")
        | teacher_eval_jobs()
        | REPORT
    )
    assert planned() == expected


@pytest.mark.slow
@pytest.mark.parametrize(
    "path,value,key",
    [
        (("teachers", "chgnet", "rows"), "eight", "teachers.chgnet.rows"),
        (("teachers", "chgnet", "rows"), -3, "teachers.chgnet.rows"),
        (("teachers", "chgnet", "model"), "chgnett", "teachers.chgnet.model"),
        (("runs", "tiny-hessian", "student", "arch"), "painnn", "runs.tiny-hessian.student.arch"),
        (("runs", "tiny-hessian", "student", "hiden"), 16, "hiden"),
        (("subsets", "tiny-sto", "selectors"), [{"contains_element": ["Sr"]}], "subsets.tiny-sto.selectors"),
        (("subsets", "tiny-sto", "source", "options", "n_trajectorys"), 3, "n_trajectorys"),
    ],
)
def test_a_bad_config_value_fails_at_start_and_deletes_nothing(completed, path, value, key):
    cfg = base_config()
    node = cfg
    for k in path[:-1]:
        node = node[k]
    node[path[-1]] = value
    before = _snapshot(completed)
    res = snakemake(completed, cfg)  # a real run, not a dry run: nothing may be deleted before the error
    out = res.stdout + res.stderr
    assert res.returncode != 0 and key in out and "fix" in out, out[-3000:]
    assert _snapshot(completed) == before


@pytest.mark.slow
def test_forcing_everything_keeps_the_users_source_files(tmp_path):
    """-F reruns every job, but a source file that exists (here fetched by hand, no URL known) is an input,
    not an output of download_source: it is neither deleted nor re-downloaded."""
    mine = _write_cu_frames(tmp_path / "data" / "mine.xyz")
    content = mine.read_bytes()
    cfg = base_config()
    cfg["data_dir"] = str(tmp_path / "data")
    cfg["subsets"] = {
        "cu": {
            "source": {"name": "generic", "path": "mine.xyz"},
            "split": {"fractions": {"train": 0.5, "val": 0.25, "test": 0.25}, "seed": 0},
        }
    }
    work = tmp_path / "work"
    work.mkdir()
    assert not any(j.startswith("download_source") for j in dry_run(work, cfg))
    target = "results/cu/data/structures.h5"
    for _ in range(2):
        res = snakemake(work, cfg, "-F", target)
        assert res.returncode == 0, (res.stdout + res.stderr)[-3000:]
        assert mine.read_bytes() == content and (work / target).exists()
