"""Sharded teacher labelling (hessdistill.jobs.label_shards): shard assignment, merge = unsharded run, per-structure
reuse across a killed shard and a change of the shard count, and the config checks of teachers.<name>.shards."""

import json

import numpy as np
import pytest
from test_label import _Interrupt, _interrupting, make_store, read_all

from hessdistill.core.errors import HessdistillError
from hessdistill.jobs.label import run_labelling
from hessdistill.jobs.label_shards import merge_label_shards, run_label_shard, shard_assignment
from hessdistill.teachers import load_teacher
from hessdistill.workflow.config_check import ConfigError, check_label_shards, label_shard_problems

KW = dict(hessian_splits=["train"], rows_per_structure=4, row_seed=7)


def _sharded(st, teacher, root, n, kw=KW, computed=None, **extra):
    sums = [
        run_label_shard(
            st,
            teacher,
            root / "label_cache",
            k,
            n,
            summary_out=root / "label_shards" / f"{k}.json",
            computed_log=computed,
            **kw,
            **extra,
        )
        for k in range(n)
    ]
    return sums


def _assert_same_files(a, b, shards):
    da, aa = read_all(a)
    db, ab = read_all(b)
    assert da.keys() == db.keys()
    for k in da:
        if k.endswith("wall_time"):
            continue  # a measurement
        assert da[k].dtype == db[k].dtype and da[k].shape == db[k].shape, k
        assert np.array_equal(da[k], db[k]) and da[k].tobytes() == db[k].tobytes(), k
    assert aa.pop("label_shards") == shards and "label_shards" not in ab
    assert aa.keys() == ab.keys()
    for k in aa:
        assert np.array_equal(aa[k], ab[k]), (k, aa[k], ab[k])


def test_shard_assignment_is_deterministic_complete_and_balanced():
    counts = {"train": 10, "val": 2, "test": 3}
    for n in (1, 2, 3, 4, 15):
        shards = shard_assignment(counts, n)
        assert shards == shard_assignment(dict(counts), n)
        flat = [x for s in shards for x in s]
        assert sorted(flat) == sorted((s, i) for s, m in counts.items() for i in range(m))
        assert len(flat) == len(set(flat)) and all(shards)
        assert max(map(len, shards)) - min(map(len, shards)) <= 1
    assert shard_assignment(counts, 2)[0][:3] == [("train", 0), ("train", 2), ("train", 4)]
    with pytest.raises(HessdistillError, match=r"teachers\.t\.shards(.|\n)*at most 15"):
        shard_assignment(counts, 16, key="teachers.t.shards")
    for bad in (0, -1, 1.5, True):
        with pytest.raises(HessdistillError, match=r"teachers\.t\.shards(.|\n)*fix"):
            shard_assignment(counts, bad, key="teachers.t.shards")


@pytest.mark.parametrize(
    "model,n,kw",
    [
        ("torch:toy_models:morse", 3, KW),
        ("torch:toy_models:morse", 2, dict(rows_per_structure="full", storage_dtype="float32")),
        ("ase:ase.calculators.emt:EMT", 2, dict(hessian_splits=["train", "test"], rows_per_structure=3, row_seed=1)),
    ],
)
def test_merged_shards_equal_an_unsharded_run_bitwise(tmp_path, model, n, kw):
    st = make_store(tmp_path / "s.h5", n_train=5, n_test=2)
    teacher = load_teacher(model, dtype="float64")
    ref = tmp_path / "ref"
    run_labelling(st, teacher, ref / "labels.h5", hessians_out=ref / "hessians.h5", chunk_size=3, progress=False, **kw)
    sums = _sharded(st, teacher, tmp_path, n, kw)
    assert sum(s["structures_computed"] for s in sums) == 7 and all(s["structures"] >= 7 // n for s in sums)
    files = sorted(tmp_path.joinpath("label_shards").glob("*.json"))
    summary = merge_label_shards(st, files, tmp_path / "labels.h5", hessians_out=tmp_path / "hessians.h5")
    assert summary["shards"] == n
    _assert_same_files(tmp_path / "labels.h5", ref / "labels.h5", n)
    _assert_same_files(tmp_path / "hessians.h5", ref / "hessians.h5", n)


def test_a_killed_shard_and_a_new_shard_count_recompute_nothing(tmp_path):
    st = make_store(tmp_path / "s.h5", n_train=8, n_test=3)
    teacher = load_teacher("torch:toy_models:morse", dtype="float64")
    computed = []
    # shard 0 of 2 killed after 3 structures, shard 1 finishes
    undo = _interrupting(teacher, "labels", 3)
    try:
        with pytest.raises(_Interrupt):
            run_label_shard(st, teacher, tmp_path / "label_cache", 0, 2, computed_log=computed, **KW)
    finally:
        undo()
    assert len(computed) == 3
    run_label_shard(st, teacher, tmp_path / "label_cache", 1, 2, computed_log=computed, **KW)
    # rerun with 3 shards: only the 3 structures (of its 6) shard 0 had not finished are computed
    sums = _sharded(st, teacher, tmp_path, 3, computed=computed)
    assert len(computed) == 11 and len(set(computed)) == 11, computed  # each structure computed exactly once
    assert sum(s["structures_resumed"] for s in sums) == 8 and sum(s["structures_computed"] for s in sums) == 3
    merge_label_shards(
        st,
        [tmp_path / "label_shards" / f"{k}.json" for k in range(3)],
        tmp_path / "l3.h5",
        hessians_out=tmp_path / "h3.h5",
    )
    # and back to 2 (or up to 11) shards with a teacher that fails on any call: everything comes from the cache
    undo = _interrupting(teacher, "labels", 0)
    try:
        for n in (2, 11):
            sums = _sharded(st, teacher, tmp_path, n)
            assert [s["structures_computed"] for s in sums] == [0] * n
            assert sum(s["structures_resumed"] for s in sums) == 11
    finally:
        undo()
    merge_label_shards(st, sums, tmp_path / "l11.h5", hessians_out=tmp_path / "h11.h5")
    ref = tmp_path / "ref"
    run_labelling(st, teacher, ref / "l.h5", hessians_out=ref / "h.h5", progress=False, **KW)
    _assert_same_files(tmp_path / "l3.h5", ref / "l.h5", 3)
    _assert_same_files(tmp_path / "h11.h5", ref / "h.h5", 11)


def test_other_inputs_reuse_nothing_and_the_merge_refuses_gaps(tmp_path):
    st = make_store(tmp_path / "s.h5", n_train=4, n_test=2)
    teacher = load_teacher("torch:toy_models:morse", dtype="float64")
    a = run_label_shard(st, teacher, tmp_path / "label_cache", 0, 2, **KW)
    b = run_label_shard(st, teacher, tmp_path / "label_cache", 0, 2, **{**KW, "row_seed": 8})
    assert a["digest"] != b["digest"] and b["structures_computed"] == 3 and b["structures_resumed"] == 0
    manifest = json.loads((tmp_path / "label_cache" / a["digest"] / "manifest.json").read_text())
    assert manifest["row_seed"] == 7 and "chunk_size" not in manifest
    with pytest.raises(HessdistillError, match="not shards 0..1"):
        merge_label_shards(st, [a], tmp_path / "l.h5")
    with pytest.raises(HessdistillError, match="different settings"):
        merge_label_shards(st, [a, {**b, "shard": 1}], tmp_path / "l.h5")
    with pytest.raises(HessdistillError, match="structure 1 of split 'train' is missing"):
        merge_label_shards(st, [a, {**a, "shard": 1}], tmp_path / "l.h5")
    assert not (tmp_path / "l.h5").exists()


@pytest.fixture(scope="module")
def chgnet_teacher():
    pytest.importorskip("chgnet")
    return load_teacher("chgnet", device="cpu", dtype="float64")


def test_node_features_merge_as_unsharded(tmp_path, chgnet_teacher):
    st = make_store(tmp_path / "s.h5", n_train=3, n_test=1)
    kw = dict(hessian_splits=["train"], rows_per_structure=2, node_features=True)
    run_labelling(st, chgnet_teacher, tmp_path / "ref.h5", hessians_out=tmp_path / "href.h5", progress=False, **kw)
    sums = _sharded(st, chgnet_teacher, tmp_path, 2, kw)
    merge_label_shards(st, sums, tmp_path / "l.h5", hessians_out=tmp_path / "h.h5")
    _assert_same_files(tmp_path / "l.h5", tmp_path / "ref.h5", 2)
    _assert_same_files(tmp_path / "h.h5", tmp_path / "href.h5", 2)


def test_config_check_of_the_shard_count(tmp_path):
    cfg = {"teachers": {"t": {"model": "chgnet", "shards": 20}, "u": {"model": "chgnet"}}}
    assert label_shard_problems(cfg, {}) == []  # no store yet: the shard jobs check it
    (p,) = label_shard_problems(cfg, {"sub": 13})
    assert "'teachers.t.shards'" in p and "only 13 structures" in p and "fix: set teachers.t.shards to at most 13" in p
    assert "teachers.t.shards" in label_shard_problems({"teachers": {"t": {"shards": 0}}}, {})[0]
    st = make_store(tmp_path / "s.h5", n_train=10, n_test=3)
    with pytest.raises(ConfigError, match=r"teachers\.t\.shards(.|\n)*fix"):
        check_label_shards(cfg, {"sub": st, "other": tmp_path / "missing.h5"})
    cfg["teachers"]["t"]["shards"] = 13
    check_label_shards(cfg, {"sub": st})
