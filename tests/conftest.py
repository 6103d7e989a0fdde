import os
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).parent
sys.path.insert(0, str(TESTS))
os.environ.setdefault("OMP_NUM_THREADS", "2")


@pytest.fixture(autouse=True)
def _torch_threads():
    try:
        import torch
    except ImportError:
        yield
        return
    torch.set_num_threads(2)
    yield


@pytest.fixture(scope="session", autouse=True)
def slurm_background(request, tmp_path_factory):
    """When tests/test_slurm.py is part of the session and a Slurm controller answers: its workflow run through
    Slurm, started now in the background (about 8 minutes, mostly waiting for the scheduler, while the other tests
    use the cores), as (process, working directory); else None.  The process is killed at the end of the session
    if still running."""
    wanted = any(Path(str(item.fspath)).name == "test_slurm.py" for item in request.session.items)
    if not wanted:
        yield None
        return
    import test_slurm

    if test_slurm.slurm_up() is not None:
        yield None
        return
    wd = tmp_path_factory.mktemp("slurm")
    proc = test_slurm.start_slurm_run(wd)
    yield proc, wd
    if proc.poll() is None:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="session")
def ci_tiny_completed(tmp_path_factory):
    """One complete run of configs/ci-tiny.yaml (a few minutes on 2 cores), shared by the workflow tests (its rerun
    checks) and the Slurm test (the local run its Slurm results are compared with): made once per session."""
    import time

    from test_workflow import base_config, snakemake

    d = tmp_path_factory.mktemp("wf")
    t0 = time.perf_counter()
    res = snakemake(d, base_config(), "--show-failed-logs")
    elapsed = time.perf_counter() - t0
    assert res.returncode == 0, (res.stdout + res.stderr)[-8000:]
    print(f"ci-tiny workflow: {elapsed:.0f} s")
    return d
