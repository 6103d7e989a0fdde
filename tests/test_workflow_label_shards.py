"""Sharded teacher labelling in the workflow (teachers.<name>.shards): the planned jobs, a change of the shard
count (reruns the shards and the merge, nothing upstream, recomputes no structure), and the start-up checks."""

import json

import h5py
import numpy as np
import pytest
from test_workflow import REPORT, R, base_config, dry_run, planned_jobs, run_jobs, snakemake, teacher_eval_jobs

T = f"{R}/teachers/chgnet"
LABELS = f"{T}/labels.h5"


def sharded_config(n):
    cfg = base_config()
    cfg["teachers"]["chgnet"]["shards"] = n
    return cfg


def shard_jobs(n):
    return {f"label_teacher_shard: {T}/label_shards/{k}.json" for k in range(n)} | {f"label_teacher_merge: {LABELS}"}


def test_shards_2_plans_two_shard_jobs_and_a_merge(tmp_path):
    jobs = dry_run(tmp_path, sharded_config(2))
    expected = (
        {f"prepare_subset: {R}/data/structures.h5", f"teacher_minima: {T}/vibrations_minima.h5"}
        | shard_jobs(2)
        | run_jobs("tiny-undistilled")
        | run_jobs("tiny-hessian")
        | teacher_eval_jobs()
        | REPORT
    )
    assert jobs == expected
    # shards: 1 is the single label_teacher job, as without the key
    jobs1 = dry_run(tmp_path, sharded_config(1))
    assert f"label_teacher: {LABELS}" in jobs1 and not any(j.startswith("label_teacher_") for j in jobs1)
    assert jobs1 == dry_run(tmp_path, base_config())


@pytest.mark.parametrize("value", [0, -2, "two"])
def test_a_bad_shard_count_fails_at_start_naming_the_key(tmp_path, value):
    res = snakemake(tmp_path, sharded_config(value), "-n")
    out = res.stdout + res.stderr
    assert res.returncode != 0 and "teachers.chgnet.shards" in out and "fix" in out, out[-3000:]


@pytest.mark.slow
def test_changing_the_shard_count_reruns_shards_and_merge_and_recomputes_nothing(tmp_path):
    """A real run of the labels with 2 shards (about a minute on 2 cores), then 3 shards: only the shard jobs and
    the merge rerun (and what reads the labels), and every structure comes from the cache."""
    res = snakemake(tmp_path, sharded_config(2), LABELS)
    assert res.returncode == 0, (res.stdout + res.stderr)[-6000:]
    sums = [json.loads((tmp_path / T / "label_shards" / f"{k}.json").read_text()) for k in range(2)]
    n = sum(s["structures"] for s in sums)
    assert sum(s["structures_computed"] for s in sums) == n and n >= 3
    for name in (
        "label_teacher_shard/tiny-sto/chgnet/0",
        "label_teacher_shard/tiny-sto/chgnet/1",
        "label_teacher_merge/tiny-sto/chgnet",
    ):
        assert (tmp_path / "results/logs" / f"{name}.log").exists()
        assert (tmp_path / "results/benchmarks" / f"{name}.tsv").exists()
    with h5py.File(tmp_path / LABELS) as f:
        before = {s: f[s]["forces"][()] for s in f if isinstance(f[s], h5py.Group)}
        assert int(f.attrs["label_shards"]) == 2
    assert (
        dry_run(tmp_path, sharded_config(2))
        == {f"teacher_minima: {T}/vibrations_minima.h5"}
        | run_jobs("tiny-undistilled")
        | run_jobs("tiny-hessian")
        | teacher_eval_jobs()
        | REPORT
    )  # labels done

    # 3 shards: the shard jobs and the merge rerun, the subset does not
    res = snakemake(tmp_path, sharded_config(3), "-n", LABELS)
    assert res.returncode == 0, res.stdout + res.stderr
    assert planned_jobs(res.stdout + res.stderr) == shard_jobs(3)
    res = snakemake(tmp_path, sharded_config(3), LABELS)
    assert res.returncode == 0, (res.stdout + res.stderr)[-6000:]
    sums = [json.loads((tmp_path / T / "label_shards" / f"{k}.json").read_text()) for k in range(3)]
    assert [s["structures_computed"] for s in sums] == [0, 0, 0]
    assert sum(s["structures_resumed"] for s in sums) == n
    with h5py.File(tmp_path / LABELS) as f:
        assert int(f.attrs["label_shards"]) == 3
        for s, forces in before.items():
            assert np.array_equal(f[s]["forces"][()], forces)

    # more shards than the existing store's structures: refused at start, nothing deleted
    snapshot = {p: p.stat().st_mtime_ns for p in (tmp_path / "results").rglob("*") if p.is_file()}
    res = snakemake(tmp_path, sharded_config(n + 1), LABELS)
    out = res.stdout + res.stderr
    assert res.returncode != 0 and "teachers.chgnet.shards" in out and f"at most {n}" in out, out[-3000:]
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "results").rglob("*") if p.is_file()} == snapshot
