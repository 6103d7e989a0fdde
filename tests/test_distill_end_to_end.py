"""`hessdistill distill` end to end on a tiny seed set (a molecule and a small crystal, CHGNet teacher, a 1-minute
plan): the config, the whole workflow, the exported student, the verdict; a second call with the same arguments
runs no job."""

import json
import subprocess
import sys

import ase.io
import numpy as np
import pytest
import yaml
from ase.build import bulk, molecule

pytest.importorskip("snakemake")
pytest.importorskip("chgnet")


@pytest.fixture(scope="module")
def distilled(tmp_path_factory):
    d = tmp_path_factory.mktemp("distill")
    seeds = d / "seeds.extxyz"
    ase.io.write(seeds, [molecule("CH3OH"), bulk("MgO", "rocksalt", a=4.21)])
    cmd = [
        sys.executable,
        "-m",
        "hessdistill.cli",
        "distill",
        str(seeds),
        "--teacher",
        "chgnet",
        "--budget",
        "1m",
        "--workdir",
        str(d / "work"),
        "--cores",
        "2",
        "--export-format",
        "torchscript",
    ]
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=1200)
    assert first.returncode == 0, (first.stdout + first.stderr)[-8000:]
    second = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, (second.stdout + second.stderr)[-8000:]
    return {"dir": d / "work", "seeds": seeds, "first": first, "second": second}


def test_config_is_commented_and_complete(distilled):
    text = (distilled["dir"] / "config.yaml").read_text()
    assert text.startswith("# hessdistill distill arguments: ")
    cfg = yaml.safe_load(text)
    assert cfg["subsets"]["seeds"]["source"]["name"] == "sample"
    assert set(cfg["runs"]) == {"undistilled", "distilled"}
    assert "measured on the seeds" in text


def test_student_report_and_verdict(distilled):
    work = distilled["dir"]
    assert (work / "results" / "report" / "summary.md").is_file()
    verdict = (work / "verdict.md").read_text()
    assert "faster than the teacher per MD step" in verdict and "Verdict:" in verdict
    out = distilled["first"].stdout
    assert "Verdict:" in out
    # the exported student is a working ASE calculator on both kinds of seeds
    from hessdistill.deployed import FastCalculator

    calc = FastCalculator(str(work / "student.pt"))
    for atoms in ase.io.read(distilled["seeds"], ":"):
        atoms.calc = calc
        f = atoms.get_forces()
        assert f.shape == (len(atoms), 3) and np.isfinite(f).all()
    record = json.loads((work / "student.pt.json").read_text())
    assert record["source"].endswith("runs/chgnet/distilled/model.pt")


def test_sampled_frames_record_how_they_were_made(distilled):
    from hessdistill.data import read_structures

    frames = read_structures(distilled["dir"] / "results" / "seeds" / "data" / "structures.h5", "train")
    kinds = {a.info["sampling"] for a in frames}
    assert kinds <= {"md", "rattle", "relax"} and "md" in kinds
    assert all("trajectory" in a.info and "parent" in a.info for a in frames)
    assert {a.pbc.any() for a in frames} == {True, False}  # both seeds were sampled


def test_second_call_reruns_nothing(distilled):
    out = distilled["second"].stdout + distilled["second"].stderr
    assert "kept as it is" in out
    assert "Nothing to be done" in out
    assert "is up to date" in out
    assert "Verdict:" in distilled["second"].stdout


def test_augment_plans_only_the_flagged_frames_and_a_third_student(distilled, tmp_path):
    """--augment on a copy of the finished run, with two frames standing in for flagged ones: the dry run plans
    the new subset's sampling job (seed frames only) and labels, the third student, its evaluations and the
    report; nothing of the first subset, its labels or its two students."""
    import shutil

    work = tmp_path / "work"
    shutil.copytree(distilled["dir"], work, symlinks=True)
    flagged = work / "results" / "seeds" / "runs" / "chgnet" / "distilled" / "eval" / "flagged.extxyz"
    frames = ase.io.read(distilled["seeds"], ":")
    for a in frames:
        a.positions += 0.05
    ase.io.write(flagged, frames, format="extxyz")
    cmd = [
        sys.executable,
        "-m",
        "hessdistill.cli",
        "distill",
        str(distilled["seeds"]),
        "--teacher",
        "chgnet",
        "--budget",
        "1m",
        "--workdir",
        str(work),
        "--augment",
        "--dry-run",
    ]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-6000:]
    assert "as measured for" in out  # the teacher's cost of the first call: the same plan, the same subset
    cfg = yaml.safe_load((work / "config.yaml").read_text())
    assert cfg["runs"]["distilled-augmented"]["extra_train_subsets"] == ["seeds-flagged"]
    from test_workflow import planned_jobs

    jobs = planned_jobs(out)
    outputs = {j.split(": ", 1)[1] for j in jobs}
    assert "results/seeds-flagged/data/structures.h5" in outputs, jobs
    assert "results/seeds-flagged/teachers/chgnet/labels.h5" in outputs, jobs
    assert "results/seeds/runs/chgnet/distilled-augmented/model.pt" in outputs, jobs
    # nothing else: the first subset, its labels, its two students and their evaluations stay as they are
    for o in outputs:
        assert "seeds-flagged" in o or "distilled-augmented" in o or o.startswith("results/report/"), jobs
