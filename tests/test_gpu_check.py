"""`make gpu-check` (bench/gpu_check.py) on the CPU: the same steps a GPU node runs, so the check itself stays
correct on machines without a GPU (on a GPU node it runs with --device cuda and the workflow step)."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STEPS = (
    "environment",
    "labels",
    "train-painn",
    "train-gemnet-dT",
    "resume-cpu",
    "resume-on-cpu",
    "forces-cpu-vs-cpu",
    "deterministic",
    "speed",
    "export",
)


@pytest.mark.slow
def test_gpu_check_passes_every_step_on_the_cpu(tmp_path):
    res = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "gpu_check.py"),
            "--device",
            "cpu",
            "--no-workflow",
            "--out",
            str(tmp_path / "gc"),
        ],
        capture_output=True,
        text=True,
        timeout=1200,
    )
    out = res.stdout
    assert res.returncode == 0, out + res.stderr[-4000:]
    for step in STEPS:
        assert any(line.startswith("PASS") and f" {step} " in line for line in out.splitlines()), out
    assert f"gpu-check: {len(STEPS)} passed, 0 failed" in out
    assert (tmp_path / "gc" / "painn" / "model.pt").exists()
