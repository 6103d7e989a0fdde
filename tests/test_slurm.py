"""The workflow on a real Slurm: configs/ci-tiny.yaml through `snakemake --profile profiles/slurm`.

Needs a running Slurm controller with a node that has GPU GRES (`.ci/slurm-up.sh` brings up a single-node one
from Debian packages with 2 dummy GPUs; `.ci/run` calls it).  Skipped when no controller answers, unless
HESSDISTILL_REQUIRE_SLURM=1 (set by `.ci/run`), which turns the skip into a failure.

Checks: every job went through sbatch; the GPU job families (teacher labels, training, MD, speed) were
submitted with a GPU request and the others without (read back from `scontrol show job`); the results equal
those of a local run of the same configuration.
"""

import csv
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml
from test_workflow import ROOT, base_config, snakemake_command

# label_teacher_shard: teachers.<name>.shards > 1 (label_teacher_merge is a CPU job)
GPU_RULES = {"label_teacher", "label_teacher_shard", "train_run", "evaluate_run_md_speed", "evaluate_teacher_md_speed"}
FAMILIES = (
    "prepare",
    "label",
    "train",
    "evaluate",
    "evaluate_device",
    "evaluate_teacher",
    "evaluate_teacher_device",
    "report",
)


def slurm_up() -> str | None:
    """None when a controller answers with an idle/mixed node, else why not."""
    if shutil.which("sbatch") is None or shutil.which("scontrol") is None:
        return "sbatch/scontrol not installed (bash .ci/slurm-up.sh installs and starts a single-node Slurm)"
    ping = subprocess.run(["scontrol", "ping"], capture_output=True, text=True)
    if "UP" not in ping.stdout:
        return f"no Slurm controller answers ({ping.stdout.strip() or ping.stderr.strip()}); run bash .ci/slurm-up.sh"
    return None


@pytest.fixture(scope="module")
def slurm():
    why = slurm_up()
    if why is not None:
        if os.environ.get("HESSDISTILL_REQUIRE_SLURM") == "1":
            pytest.fail(f"HESSDISTILL_REQUIRE_SLURM=1 but {why}")
        pytest.skip(why)


def slurm_config() -> dict:
    cfg = base_config()
    cfg["use_gpu"] = True  # GPU families request gpu_request ({gpu: 1}) ...
    cfg["gpu_device"] = "auto"  # ... and run on cpu where the (dummy) GPU is not usable
    # one thread per job so that two jobs share the 2-core test node
    cfg["resources"] = {f: {"threads": 1, "mem_mb": 2500} for f in FAMILIES}
    return cfg


def _jobs_by_rule(output: str) -> dict[int, str]:
    """Slurm job id -> rule name, from the executor's 'submitted with SLURM jobid' lines."""
    jobs = {}
    for m in re.finditer(r"has been submitted with SLURM jobid (\d+) \(log: \S*?/rule_(\w+)/", output):
        jobs[int(m.group(1))] = m.group(2)
    return jobs


def start_slurm_run(workdir) -> subprocess.Popen:
    """Start ci-tiny through the Slurm profile in ``workdir`` (labelling sharded in 2 jobs + a merge) without waiting:
    tests/conftest.py starts it at the beginning of the session, so that the other tests use the cores while
    Slurm schedules; :func:`runs` waits for it.  Output goes to ``workdir/snakemake.out``."""
    workdir = Path(workdir)
    cfg = slurm_config()
    # through Slurm the labelling is sharded (2 shard jobs + a merge job): the comparison with the local, unsharded
    # run below checks that the merged labels are the single job's
    cfg["teachers"] = {t: {**spec, "shards": 2} for t, spec in cfg["teachers"].items()}
    cmd = snakemake_command(
        workdir,
        cfg,
        "--profile",
        str(ROOT / "profiles" / "slurm"),
        "--slurm-init-seconds-before-status-checks",
        "3",
        # a finished job is seen within 2 s instead of Snakemake's default 10 s (the DAG is ~8 jobs deep)
        "--seconds-between-status-checks",
        "2",
        "--slurm-logdir",
        str(workdir / "slurm-logs"),
    )
    out = (workdir / "snakemake.out").open("w")
    return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, text=True)


def slurm_run_result(proc: subprocess.Popen, workdir, timeout: float = 1500) -> tuple[int, str]:
    """Wait for a run started by :func:`start_slurm_run`; (return code, its output)."""
    try:
        rc = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        rc = -9
    return rc, (Path(workdir) / "snakemake.out").read_text()


@pytest.fixture(scope="module")
def runs(slurm, tmp_path_factory, ci_tiny_completed, slurm_background):
    if slurm_background is not None:  # started at the beginning of the session (tests/conftest.py)
        proc, wd_slurm = slurm_background
    else:
        wd_slurm = tmp_path_factory.mktemp("slurm")
        proc = start_slurm_run(wd_slurm)
    rc, out = slurm_run_result(proc, wd_slurm)
    assert rc == 0, out[-6000:]
    # the local run is the session's ci-tiny run (tests/conftest.py), shared with test_workflow: the same configuration
    # but for settings that change no result (GPU requests, device "auto" on a machine without a usable GPU, job
    # resources, the shard count)
    return {"slurm": wd_slurm, "local": ci_tiny_completed, "output": out}


def _show_job(jobid: int) -> str:
    res = subprocess.run(["scontrol", "show", "job", str(jobid)], capture_output=True, text=True)
    assert res.returncode == 0, f"scontrol show job {jobid}: {res.stderr} (MinJobAge too short?)"
    return res.stdout


def test_every_job_went_through_slurm_and_gpu_families_asked_for_a_gpu(runs):
    jobs = _jobs_by_rule(runs["output"])
    rules = set(jobs.values())
    # report is a localrule (cheap, on the submitting node); everything else is a Slurm job
    assert rules == {
        "prepare_subset",
        "label_teacher_shard",
        "label_teacher_merge",
        "train_run",
        "evaluate_run",
        "evaluate_run_md_speed",
        "evaluate_teacher",
        "evaluate_teacher_md_speed",
        "teacher_minima",
    }, rules
    assert list(jobs.values()).count("label_teacher_shard") == 2
    assert len(jobs) == 22, jobs  # 24 jobs less `all` and the local report
    for jobid, rule in jobs.items():
        info = _show_job(jobid)
        assert "JobState=COMPLETED" in info, info
        gpu = re.search(r"TresPerJob=\S*gres[:/]gpu[:=]1\b", info) or re.search(r"TresPerNode=\S*gpu[:=]1\b", info)
        if rule in GPU_RULES:
            assert gpu, f"{rule} (job {jobid}) was submitted without a GPU request:\n{info}"
        else:
            assert not gpu, f"{rule} (job {jobid}) asked for a GPU:\n{info}"
        assert "NumCPUs=1" in info, info


def _assert_same(actual: np.ndarray, desired: np.ndarray, what: str) -> None:
    """Integers (atomic numbers, Hessian row indices) and the sampled positions must agree exactly or nearly so.
    Teacher outputs are float32 and the two runs use different thread counts (1 per Slurm job, all cores locally),
    so their sums are reduced in a different order: they agree to float32 round-off of the array's own scale
    (a few 1e-6 relative; 1e-4 of the largest entry leaves a margin and still catches any real difference, which
    would show up at the 1e-2 level)."""
    if not np.issubdtype(desired.dtype, np.floating):
        np.testing.assert_array_equal(actual, desired, err_msg=what)
    elif what.endswith("/positions"):
        np.testing.assert_allclose(actual, desired, rtol=1e-5, atol=1e-6, err_msg=what)
    else:
        scale = float(np.max(np.abs(desired))) if desired.size else 0.0
        np.testing.assert_allclose(actual, desired, rtol=1e-4, atol=1e-4 * max(scale, 1.0), err_msg=what)


def test_results_match_a_local_run(runs):
    a, b = runs["slurm"] / "results", runs["local"] / "results"
    pairs = {
        "structures": ("data/structures.h5", ["positions", "numbers", "energy", "forces"]),
        "labels": ("teachers/chgnet/labels.h5", ["energy", "forces"]),
        "hessians": ("teachers/chgnet/hessians.h5", ["row_index", "values"]),
    }
    for name, (rel, keys) in pairs.items():
        with h5py.File(a / "tiny-sto" / rel) as fa, h5py.File(b / "tiny-sto" / rel) as fb:
            assert sorted(fa.keys()) == sorted(fb.keys()), name
            for split in fa.keys():
                if not isinstance(fa[split], h5py.Group):
                    continue
                for k in keys:
                    if k in fa[split]:
                        _assert_same(fa[split][k][()], fb[split][k][()], f"{name}/{split}/{k}")
    for run in ("tiny-undistilled", "tiny-hessian"):
        ta = json.loads((a / f"tiny-sto/runs/chgnet/{run}/eval/test.json").read_text())
        tb = json.loads((b / f"tiny-sto/runs/chgnet/{run}/eval/test.json").read_text())
        for key in ("teacher_force_mae_meV_A", "teacher_energy_mae_meV_atom"):
            assert ta[key] == pytest.approx(tb[key], rel=1e-3, abs=1e-3), (run, key, ta[key], tb[key])
    rows = list(csv.DictReader((a / "report/summary.csv").open()))
    assert sorted(r["run"] for r in rows) == ["teacher", "tiny-hessian", "tiny-undistilled"]


def test_slurm_profile_parses_and_names_the_status_command():
    prof = yaml.safe_load((ROOT / "profiles" / "slurm" / "config.yaml").read_text())
    assert prof["executor"] == "slurm"
    assert prof["slurm-status-command"] == "squeue"
    assert prof["slurm-requeue"] is True
    # `snakemake --profile slurm` run from the repository root finds it through the ./slurm link
    assert (ROOT / "slurm").resolve() == (ROOT / "profiles" / "slurm").resolve()
