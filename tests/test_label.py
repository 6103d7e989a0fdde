"""The teacher labelling job: outputs, row selection, and resumption after a kill."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from ase.build import molecule

from hessdistill.core import hessian as hess
from hessdistill.core.errors import HessdistillError, StoreError
from hessdistill.data.labels import HessianStore, LabelStore
from hessdistill.jobs.label import rows_for, run_labelling
from hessdistill.teachers import load_teacher

TESTS = Path(__file__).parent


def make_store(path, n_train=10, n_test=3, seed=0):
    from hessdistill.data.store import write_structures

    rng = np.random.default_rng(seed)
    names = ["H2O", "CH4", "NH3", "CH3OH", "C2H2"]
    splits = {}
    for split, n in (("train", n_train), ("test", n_test)):
        mols = []
        for i in range(n):
            a = molecule(names[i % len(names)])
            a.positions += rng.normal(scale=0.05, size=a.positions.shape)
            mols.append(a)
        splits[split] = mols
    return write_structures(path, splits, labels="none", require_labels=False, attrs={"source": "test"})


def read_all(path):
    out = {}
    with h5py.File(path, "r") as f:

        def visit(name, obj):
            if isinstance(obj, h5py.Dataset):
                out[name] = obj[()]

        f.visititems(visit)
        attrs = dict(f.attrs)
    return out, attrs


def test_labels_and_rows_match_teacher(tmp_path):
    st = make_store(tmp_path / "s.h5")
    teacher = load_teacher("torch:toy_models:morse", dtype="float64")
    summary = run_labelling(
        st,
        teacher,
        tmp_path / "labels.h5",
        hessians_out=tmp_path / "hess.h5",
        hessian_splits=["train"],
        rows_per_structure=4,
        row_seed=7,
        chunk_size=3,
        progress=False,
    )
    assert summary["structures_computed"] == 13 and summary["structures_resumed"] == 0
    assert not (tmp_path / "labels.h5.parts").exists()
    from hessdistill.data.store import StructureStore

    with StructureStore(st) as s, LabelStore(tmp_path / "labels.h5") as ls, HessianStore(tmp_path / "hess.h5") as hs:
        assert ls.splits == ["test", "train"] and hs.splits == ["train"]
        assert hs.attrs["quantity"].startswith("H = d2E/dx2")
        assert hs.attrs["teacher"] == teacher.name and hs.attrs["teacher_dtype"] == "float64"
        assert hs.attrs["rows_per_structure"] == "4" and int(hs.attrs["row_seed"]) == 7
        assert ls.arrays("train")["wall_time"].shape == (10,)
        assert (ls.arrays("train")["wall_time"] > 0).all()
        for split in ("train", "test"):
            for i in range(s.n_structures(split)):
                a = s.atoms(split, i)
                e, f = teacher.energy_forces(a)
                le, lf = ls.energy_forces(split, i)
                assert le == pytest.approx(e, abs=1e-12)
                np.testing.assert_allclose(lf, f, atol=1e-12)
        for i in range(10):
            a = s.atoms("train", i)
            idx, rows = hs.rows("train", i)
            assert len(idx) == min(4, 3 * len(a))
            assert np.array_equal(idx, rows_for(len(a), 4, 7, "train", i))
            np.testing.assert_allclose(rows, teacher.hessian(a)[idx], atol=1e-12)
        with pytest.raises(StoreError, match="rows stored"):
            hs.full("train", 1)
        with pytest.raises(StoreError, match="no split 'test'"):
            hs.rows("test", 0)


def test_full_hessians_float32_storage(tmp_path):
    st = make_store(tmp_path / "s.h5", n_train=3, n_test=1)
    teacher = load_teacher("torch:toy_models:morse", dtype="float64")
    run_labelling(
        st, teacher, tmp_path / "l.h5", hessians_out=tmp_path / "h.h5", storage_dtype="float32", progress=False
    )
    from hessdistill.data.store import StructureStore

    with StructureStore(st) as s, HessianStore(tmp_path / "h.h5") as hs:
        assert hs.splits == ["test", "train"]
        a = s.atoms("train", 2)
        H = hs.full("train", 2)
        assert H.dtype == np.float32
        ref = teacher.hessian(a)
        assert np.abs(H - ref).max() / np.abs(ref).max() < 1e-6
        assert hess.symmetry_error(H) < 1e-6


def _run_cli(args, env=None):
    return subprocess.Popen(
        [sys.executable, "-m", "hessdistill.jobs.label", *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )


def test_killed_job_resumes_without_recomputing(tmp_path):
    st = make_store(tmp_path / "s.h5", n_train=12, n_test=4)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
    out = tmp_path / "killed" / "labels.h5"
    hout = tmp_path / "killed" / "hess.h5"
    common = [
        "--rows",
        "5",
        "--row-seed",
        "3",
        "--chunk-size",
        "2",
        "--hessian-splits",
        "train",
        "--no-progress",
        "--dtype",
        "float64",
        "--device",
        "cpu",
    ]
    proc = _run_cli(
        [
            str(st),
            "--teacher",
            "torch:toy_models:slow_morse",
            "--teacher-options",
            '{"delay": 0.25}',
            "--labels-out",
            str(out),
            "--hessians-out",
            str(hout),
            *common,
        ],
        env=env,
    )
    parts = out.parent / "labels.h5.parts"
    deadline = time.time() + 120
    while time.time() < deadline and len(list(parts.glob("train-*.npz"))) < 2:
        assert proc.poll() is None, proc.stderr.read().decode()
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = sorted(p.name for p in parts.glob("*-*.npz"))
    assert 2 <= len(done) < 8, done  # killed mid-way: some chunks finished, others not
    assert not out.exists() and not hout.exists()

    # resume in-process with the same settings (the delay is not part of the result)
    finished = {(p.split("-")[0], int(p.split("-")[1].split(".")[0])) for p in done}
    teacher = load_teacher("torch:toy_models:slow_morse", delay=0.0, dtype="float64", device="cpu")
    teacher.name = "torch:toy_models:slow_morse"
    computed = []
    summary = run_labelling(
        st,
        teacher,
        out,
        hessians_out=hout,
        hessian_splits=["train"],
        rows_per_structure=5,
        row_seed=3,
        chunk_size=2,
        progress=False,
        computed_log=computed,
    )
    assert len(computed) == len(set(computed))
    recomputed = {(s, i) for s, i in computed if (s, i // 2) in finished}
    assert not recomputed, f"structures computed twice: {sorted(recomputed)}"
    assert summary["structures_computed"] + summary["structures_resumed"] == 16
    assert summary["structures_resumed"] == 2 * len(done)

    # an uninterrupted run gives identical stores
    ref_l, ref_h = tmp_path / "ref" / "labels.h5", tmp_path / "ref" / "hess.h5"
    run_labelling(
        st,
        teacher,
        ref_l,
        hessians_out=ref_h,
        hessian_splits=["train"],
        rows_per_structure=5,
        row_seed=3,
        chunk_size=2,
        progress=False,
    )
    for a, b in ((out, ref_l), (hout, ref_h)):
        da, aa = read_all(a)
        db, ab = read_all(b)
        assert da.keys() == db.keys()
        for k in da:
            if k.endswith("wall_time"):
                continue
            assert np.array_equal(da[k], db[k]), k
            assert da[k].dtype == db[k].dtype


def test_resume_refuses_changed_settings(tmp_path):
    st = make_store(tmp_path / "s.h5", n_train=4, n_test=1)
    teacher = load_teacher("torch:toy_models:morse", dtype="float64")
    parts = tmp_path / "l.h5.parts"
    parts.mkdir()
    (parts / "manifest.json").write_text(json.dumps({"rows_per_structure": 2}))
    with pytest.raises(HessdistillError, match="different settings"):
        run_labelling(
            st, teacher, tmp_path / "l.h5", hessians_out=tmp_path / "h.h5", rows_per_structure=4, progress=False
        )


def test_cli_errors_are_clear(tmp_path):
    st = make_store(tmp_path / "s.h5", n_train=2, n_test=1)
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "hessdistill.jobs.label",
            str(st),
            "--teacher",
            "nope",
            "--labels-out",
            str(tmp_path / "l.h5"),
        ],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 2 and "unknown teacher" in res.stderr
    teacher = load_teacher("torch:toy_models:morse")
    with pytest.raises(StoreError, match="no split 'val'"):
        run_labelling(st, teacher, tmp_path / "l.h5", splits=["val"], progress=False)
    with pytest.raises(HessdistillError, match="rows per structure"):
        run_labelling(st, teacher, tmp_path / "l.h5", hessians_out=tmp_path / "h.h5", rows_per_structure="many")


@pytest.fixture(scope="module")
def chgnet_teacher():
    pytest.importorskip("chgnet")
    return load_teacher("chgnet", device="cpu", dtype="float64")


def test_node_features_stored_aligned(tmp_path, chgnet_teacher):
    teacher = chgnet_teacher
    st = make_store(tmp_path / "s.h5", n_train=3, n_test=2)
    summary = run_labelling(
        st,
        teacher,
        tmp_path / "l.h5",
        hessians_out=tmp_path / "h.h5",
        hessian_splits=["train"],
        rows_per_structure=2,
        chunk_size=2,
        progress=False,
        node_features=True,
    )
    assert summary["node_features"] and summary["node_feature_dim"] == 64
    from hessdistill.data.store import StructureStore

    with StructureStore(st) as s, LabelStore(tmp_path / "l.h5") as ls, HessianStore(tmp_path / "h.h5") as hs:
        assert ls.splits == ["test", "train"] and hs.splits == ["train"]
        assert ls.has_node_features and ls.node_feature_dim == 64 and "readout_norm" in ls.attrs["node_features"]
        for split in ("train", "test"):
            arr = ls.arrays(split)
            assert arr["node_features"].shape == (arr["offsets"][-1], 64) and arr["node_features"].dtype == np.float32
            for i in range(s.n_structures(split)):
                a = s.atoms(split, i)
                x = ls.node_features(split, i)
                assert x.shape == (len(a), 64)
                np.testing.assert_allclose(x, teacher.node_features(a), rtol=1e-6, atol=1e-7)
                e, _ = teacher.energy_forces(a)
                assert ls.energy_forces(split, i)[0] == pytest.approx(e, abs=1e-9)
        numbers, table = ls.element_embeddings()
        tn, tt = teacher.element_embeddings()
        assert np.array_equal(numbers, tn) and table.dtype == np.float32 and table.shape == (94, 64)
        np.testing.assert_allclose(table, tt, rtol=1e-6, atol=1e-7)


def test_node_features_off_by_default_and_unsupported(tmp_path):
    st = make_store(tmp_path / "s.h5", n_train=2, n_test=1)
    teacher = load_teacher("torch:toy_models:morse", dtype="float64")
    run_labelling(st, teacher, tmp_path / "l.h5", progress=False)
    with LabelStore(tmp_path / "l.h5") as ls:
        assert not ls.has_node_features and ls.node_feature_dim is None
        with pytest.raises(StoreError, match="no teacher node features"):
            ls.node_features("train", 0)
        with pytest.raises(StoreError, match="no teacher element embedding"):
            ls.element_embeddings()
    with pytest.raises(HessdistillError, match="does not provide them"):
        run_labelling(st, teacher, tmp_path / "l2.h5", progress=False, node_features=True)
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "hessdistill.jobs.label",
            str(st),
            "--teacher",
            "ase:ase.calculators.emt:EMT",
            "--labels-out",
            str(tmp_path / "l3.h5"),
            "--node-features",
            "--no-progress",
        ],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 2 and "does not provide them" in res.stderr


class _Interrupt(RuntimeError):
    pass


def _interrupting(teacher, method, after):
    """Make ``teacher.<method>`` raise after ``after`` calls (a job killed mid-way, in-process)."""
    original = getattr(type(teacher), method)
    calls = []

    def wrapped(atoms, rows=None):
        if len(calls) >= after:
            raise _Interrupt()
        calls.append(1)
        return original(teacher, atoms, rows=rows)

    setattr(teacher, method, wrapped)
    return lambda: delattr(teacher, method)


def test_node_features_resume_and_refuse_mixing(tmp_path, chgnet_teacher):
    teacher = chgnet_teacher
    st = make_store(tmp_path / "s.h5", n_train=4, n_test=1)
    kw = dict(
        hessians_out=tmp_path / "h.h5", hessian_splits=["train"], rows_per_structure=2, chunk_size=2, progress=False
    )
    out = tmp_path / "l.h5"
    parts = tmp_path / "l.h5.parts"

    # interrupted without features: switching features on must not reuse those parts
    undo = _interrupting(teacher, "labels", 2)
    try:
        with pytest.raises(_Interrupt):
            run_labelling(st, teacher, out, **kw)
    finally:
        undo()
    assert len(list(parts.glob("*.npz"))) == 1
    with pytest.raises(HessdistillError, match="different settings(.|\n)*node_features"):
        run_labelling(st, teacher, out, node_features=True, **kw)

    # interrupted with features, then resumed: nothing computed twice, same result as an uninterrupted run
    shutil.rmtree(parts)
    undo = _interrupting(teacher, "labels_with_features", 2)
    try:
        with pytest.raises(_Interrupt):
            run_labelling(st, teacher, out, node_features=True, **kw)
    finally:
        undo()
    with pytest.raises(HessdistillError, match="different settings"):
        run_labelling(st, teacher, out, **kw)  # and switching them off is refused too
    computed = []
    summary = run_labelling(st, teacher, out, node_features=True, computed_log=computed, **kw)
    assert summary["structures_resumed"] == 2 and sorted(computed) == [("test", 0), ("train", 2), ("train", 3)]
    ref = tmp_path / "ref.h5"
    run_labelling(st, teacher, ref, node_features=True, **{**kw, "hessians_out": tmp_path / "href.h5"})
    da, aa = read_all(out)
    db, ab = read_all(ref)
    assert da.keys() == db.keys() and "train/node_features" in da and "element_embeddings" in da
    for k in da:
        if not k.endswith("wall_time"):
            assert np.array_equal(da[k], db[k]) and da[k].dtype == db[k].dtype, k
    assert aa["node_feature_dim"] == 64 and aa["node_features"] == ab["node_features"]


def test_hessian_blocks_are_written_one_structure_at_a_time(tmp_path):
    """write_hessians takes callables and calls each once, in order; the file equals the one from arrays; and the
    labelling job hands it one chunk's values at a time (each chunk file's values read once)."""
    from hessdistill.data.labels import write_hessians
    from hessdistill.jobs.label import _ChunkBlocks

    rng = np.random.default_rng(0)
    n_atoms = [3, 5, 4]
    row_index = [np.arange(2), np.arange(15), np.array([0, 7])]
    rows = [rng.normal(size=(len(i), 3 * n)) for i, n in zip(row_index, n_atoms)]
    calls = []

    def lazy(k):
        def f():
            calls.append(k)
            return rows[k]

        return f

    d = {"n_atoms": n_atoms, "row_index": row_index, "structure_content_hash": "x"}
    write_hessians(tmp_path / "a.h5", {"train": {**d, "rows": rows}}, {"teacher": "t"}, "float32")
    write_hessians(
        tmp_path / "b.h5", {"train": {**d, "rows": [lazy(k) for k in range(3)]}}, {"teacher": "t"}, "float32"
    )
    assert calls == [0, 1, 2]
    a, _ = read_all(tmp_path / "a.h5")
    b, _ = read_all(tmp_path / "b.h5")
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)

    chunk = tmp_path / "chunk.npz"
    np.savez(chunk, values=np.arange(12.0))
    opened = []
    real_load = np.load

    def counting_load(path, *a, **kw):
        opened.append(path)
        return real_load(path, *a, **kw)

    blocks = _ChunkBlocks(chunk, 2)
    np.load = counting_load
    try:
        assert blocks.block(0, 6, (2, 3)).tolist() == [[0, 1, 2], [3, 4, 5]]
        assert blocks.block(6, 6, (2, 3))[1, 2] == 11.0
    finally:
        np.load = real_load
    assert opened == [chunk] and blocks.values is None  # read once, released after the last block
