"""Losses against brute force, and the training loop (budget, schedule, checkpoints, exact resumption)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from ase.build import molecule

from hessdistill.students.registry import STUDENTS
from hessdistill.training.data import DistillDataset, HessianCollate
from hessdistill.training.losses import LossWeights, compute_loss, hessian_loss

TESTS = Path(__file__).parent
STUDENTS.setdefault("toy", ("toy_models", "ToyStudent"))


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    """Molecules labelled by an analytic Morse teacher: reference = teacher, full Hessians for train."""
    from hessdistill.data.store import write_structures
    from hessdistill.jobs.label import run_labelling
    from hessdistill.teachers import load_teacher

    d = tmp_path_factory.mktemp("stores")
    teacher = load_teacher("torch:toy_models:morse", dtype="float64")
    rng = np.random.default_rng(0)
    splits = {}
    for split, n in (("train", 12), ("val", 4)):
        mols = []
        for i in range(n):
            a = molecule(["H2O", "CH4", "NH3", "CH3OH"][i % 4])
            a.positions += rng.normal(scale=0.08, size=a.positions.shape)
            e, f = teacher.energy_forces(a)
            from ase.calculators.singlepoint import SinglePointCalculator

            a.calc = SinglePointCalculator(a, energy=e, forces=f)
            mols.append(a)
        splits[split] = mols
    st = write_structures(d / "s.h5", splits, labels="teacher:morse")
    run_labelling(st, teacher, d / "l.h5", hessians_out=d / "h.h5", hessian_splits=["train"], progress=False)
    return st, d / "l.h5", d / "h.h5"


def toy(direct=False, dtype=torch.float64):
    from toy_models import ToyStudent

    torch.manual_seed(0)
    return ToyStudent(cutoff=4.0, direct_forces=direct).to(dtype)


def brute_force_jacobian(model, data):
    """dF/dx of one structure, (3N, 3N), built row by row."""
    from hessdistill.core.graphs import collate

    b = collate([data])
    b.pos.requires_grad_(True)
    _, f = model(b, create_graph=True)
    rows = [torch.autograd.grad(f.reshape(-1)[r], b.pos, retain_graph=True)[0].reshape(-1) for r in range(f.numel())]
    return torch.stack(rows).detach().numpy()


@pytest.mark.parametrize("direct", [False, True])
def test_hessian_loss_matches_brute_force(stores, direct):
    st, lab, hes = stores
    model = toy(direct)
    ds = DistillDataset(st, "train", model.cutoff, labels=lab, hessians=hes)
    col = HessianCollate(ds, rows_per_structure=3, seed=5)
    items = [ds[i] for i in (0, 1, 2, 3)]  # different sizes: 3, 5, 4, 6 atoms
    batch = col(items)
    batch.pos.requires_grad_(True)
    _, forces = model(batch, create_graph=True)
    loss, per_slot = hessian_loss(forces, batch)
    expected, n_total = 0.0, sum(len(ds.atoms[i]) for i in (0, 1, 2, 3))
    for ds_idx, m, pick in col.last_picks:
        js = brute_force_jacobian(model, ds[ds_idx])
        idx, rows = ds.hessians[ds_idx]
        jt = -rows
        n = len(ds.atoms[ds_idx])
        s_m = len(pick)
        for k, p in enumerate(pick):
            diff = (js[idx[p]] - jt[p]).reshape(n, 3)
            err = np.linalg.norm(diff, axis=1).sum()
            expected += err / s_m
            assert per_slot[k, m].item() == pytest.approx(err, rel=1e-9)
    assert loss.item() == pytest.approx(expected / n_total, rel=1e-9)
    loss.backward()  # second order reaches the parameters
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_rows_are_fresh_each_step_and_reproducible(stores):
    st, lab, hes = stores
    ds = DistillDataset(st, "train", 4.0, labels=lab, hessians=hes)
    col = HessianCollate(ds, rows_per_structure=2, seed=1)
    items = [ds[i] for i in range(4)]
    col.set_position(0, 0)
    a = col(items).hess_cot.clone()
    b = col(items).hess_cot.clone()
    col.set_position(0, 0)
    assert torch.equal(col(items).hess_cot, a) and not torch.equal(a, b)
    assert torch.all(a.sum(dim=(1, 2)) == 4)  # one-hot per structure per slot: a multi-hot over the batch


@pytest.mark.parametrize("probe", ["gaussian", "rademacher"])
def test_projection_loss_estimates_frobenius_error(stores, probe):
    st, lab, hes = stores
    model = toy()
    ds = DistillDataset(st, "train", model.cutoff, labels=lab, hessians=hes)
    col = HessianCollate(ds, rows_per_structure=600, weighting="projection", seed=3, probe=probe)
    items = [ds[0], ds[1]]
    batch = col(items)
    batch.pos.requires_grad_(True)
    _, forces = model(batch, create_graph=True)
    loss, _ = hessian_loss(forces, batch, squared=True, method="batched")
    frob = 0.0
    for i in (0, 1):
        idx, rows = ds.hessians[i]
        frob += ((brute_force_jacobian(model, ds[i]) + rows) ** 2).sum()
    n_total = len(ds.atoms[0]) + len(ds.atoms[1])
    assert loss.item() == pytest.approx(frob / n_total, rel=0.15)


def test_energy_force_terms(stores):
    st, lab, hes = stores
    model = toy()
    ds = DistillDataset(st, "train", model.cutoff, labels=lab)
    from hessdistill.core.graphs import collate

    batch = collate([ds[0], ds[1]])
    total, terms, _ = compute_loss(model, batch, LossWeights(energy=5, forces=100, hessian=0, teacher_forces=1))
    e, f = model(batch, create_graph=False)
    e_ref = (e.detach() - batch.energy).abs() / batch.natoms
    assert terms["energy"].item() == pytest.approx(e_ref.mean().item())
    assert terms["forces"].item() == pytest.approx(
        torch.linalg.vector_norm(f.detach() - batch.forces, dim=1).mean().item()
    )
    # reference == teacher here, so the teacher-forces term equals the force term
    assert terms["teacher_forces"].item() == pytest.approx(terms["forces"].item())
    assert total.item() == pytest.approx(5 * terms["energy"].item() + 101 * terms["forces"].item())


def run_cfg(**kw):
    cfg = dict(
        student={"arch": "toy", "cutoff": 4.0},
        method="hessian",
        rows_per_structure=2,
        batch_size=4,
        max_epochs=4,
        lr=3e-3,
        dtype="float64",
        device="cpu",
        seed=2,
    )
    cfg.update(kw)
    return cfg


def test_training_improves_and_writes_outputs(stores, tmp_path):
    from hessdistill.students.calculator import StudentCalculator
    from hessdistill.training import train

    st, lab, hes = stores
    s = train(run_cfg(max_epochs=6), st, tmp_path / "run", labels=lab, hessians=hes, progress=False)
    log = (tmp_path / "run" / "log.csv").read_text().splitlines()
    assert len(log) == 7 and "train_hessian" in log[0] and "val_force_mae_meV_A" in log[0]
    assert s["epochs"] == 6 and s["teacher_val_force_mae_meV_A"] == pytest.approx(0.0, abs=1e-9)
    first = float(log[1].split(",")[log[0].split(",").index("val_force_mae_meV_A")])
    assert s["best_val_force_mae_meV_A"] < first
    calc = StudentCalculator.from_checkpoint(tmp_path / "run" / "model.pt")
    a = molecule("H2O")
    a.calc = calc
    assert np.isfinite(a.get_potential_energy()) and a.get_forces().shape == (3, 3)


def test_resume_after_kill_matches_uninterrupted(stores, tmp_path):
    import yaml

    from hessdistill.training import train

    st, lab, hes = stores
    cfg = run_cfg(max_epochs=5)
    (tmp_path / "run.yaml").write_text(yaml.safe_dump({**cfg, "student": {"arch": "toy", "cutoff": 4.0}}))
    ref = train(cfg, st, tmp_path / "ref", labels=lab, hessians=hes, progress=False)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
    out = tmp_path / "killed"
    code = (
        "import sys; from hessdistill.students.registry import STUDENTS; STUDENTS['toy']=('toy_models','ToyStudent');"
        "from hessdistill.jobs.train import main; sys.exit(main(sys.argv[1:]))"
    )
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            code,
            str(tmp_path / "run.yaml"),
            "--structures",
            str(st),
            "--labels",
            str(lab),
            "--hessians",
            str(hes),
            "--out",
            str(out),
            "--no-progress",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.time() + 120
    while time.time() < deadline:
        if (out / "log.csv").exists() and len((out / "log.csv").read_text().splitlines()) >= 3:
            break
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = len((out / "log.csv").read_text().splitlines()) - 1
    assert 1 <= done < 5, done
    res = train(cfg, st, out, labels=lab, hessians=hes, progress=False)
    assert res["epochs"] == 5
    a = torch.load(out / "model.pt", weights_only=False)["state_dict"]
    b = torch.load(tmp_path / "ref" / "model.pt", weights_only=False)["state_dict"]
    for k in b:
        assert torch.equal(a[k], b[k]), k
    assert res["best_val_force_mae_meV_A"] == ref["best_val_force_mae_meV_A"]


def test_the_snakemake_job_trains_into_the_model_directory_with_the_rule_threads_and_given_device(
    stores, tmp_path, capsys
):
    from types import SimpleNamespace

    from hessdistill.jobs.train import snakemake_job

    st, lab, hes = stores
    smk = SimpleNamespace(
        params=SimpleNamespace(run=run_cfg(max_epochs=1, device="cuda")),
        threads=1,
        input=SimpleNamespace(structures=str(st), labels=str(lab), hessians=str(hes)),
        output=SimpleNamespace(model=str(tmp_path / "run" / "model.pt")),
    )
    summary = snakemake_job(smk, device="cpu")
    assert summary["epochs"] == 1 and (tmp_path / "run" / "model.pt").exists()
    assert json.loads(capsys.readouterr().out)["epochs"] == 1
    cfg = torch.load(tmp_path / "run" / "last.pt", weights_only=False)["config"]
    assert cfg["threads"] == 1 and cfg["device"] == "cpu"
    assert smk.params.run["device"] == "cuda"  # the params are not modified


def test_changed_settings_refuse_to_resume_and_bad_options(stores, tmp_path):
    from hessdistill.core.errors import HessdistillError
    from hessdistill.training import train

    st, lab, hes = stores
    train(run_cfg(max_epochs=1), st, tmp_path / "r", labels=lab, hessians=hes, progress=False)
    train(run_cfg(max_epochs=2), st, tmp_path / "r", labels=lab, hessians=hes, progress=False)  # budget extended: ok
    with pytest.raises(HessdistillError, match=r"settings differ \(lr: 0.003 -> 0.01\)"):
        train(run_cfg(max_epochs=3, lr=1e-2), st, tmp_path / "r", labels=lab, hessians=hes, progress=False)
    s = train(
        run_cfg(max_epochs=1, lr=1e-2),
        st,
        tmp_path / "r",
        labels=lab,
        hessians=hes,
        progress=False,
        on_mismatch="restart",
    )
    assert s["epochs"] == 1  # started over with the new settings
    with pytest.raises(HessdistillError, match="unknown training option"):
        train({"lrate": 1}, st, tmp_path / "x")
    with pytest.raises(HessdistillError, match="needs teacher Hessians"):
        train(run_cfg(), st, tmp_path / "y", labels=lab)
    with pytest.raises(HessdistillError, match="unknown loss weight"):
        train(run_cfg(weights={"hess": 1}), st, tmp_path / "z", labels=lab, hessians=hes)


def test_resume_needs_the_same_data_and_a_finished_run_rewrites_its_outputs(stores, tmp_path, caplog):
    """What a workflow rerun does: after an upstream change (other labels/Hessians) the old checkpoint is not
    resumed; a rerun of a finished run (--forcerun, outputs deleted by Snakemake) rewrites every output."""
    from hessdistill.core.errors import HessdistillError
    from hessdistill.jobs.label import run_labelling
    from hessdistill.teachers import load_teacher
    from hessdistill.training import train

    st, lab, hes = stores
    out = tmp_path / "r"
    first = train(run_cfg(max_epochs=2), st, out, labels=lab, hessians=hes, progress=False)
    for name in ("model.pt", "log.csv", "summary.json"):
        (out / name).unlink()
    again = train(run_cfg(max_epochs=2), st, out, labels=lab, hessians=hes, progress=False)
    assert all((out / n).exists() for n in ("model.pt", "log.csv", "summary.json"))
    assert len((out / "log.csv").read_text().splitlines()) == 3
    assert again["best_val_force_mae_meV_A"] == first["best_val_force_mae_meV_A"]

    # the same structures relabelled with other Hessian rows: the data differ, so no resume
    teacher = load_teacher("torch:toy_models:morse", dtype="float64")
    run_labelling(
        st,
        teacher,
        tmp_path / "l2.h5",
        hessians_out=tmp_path / "h2.h5",
        hessian_splits=["train"],
        rows_per_structure=5,
        row_seed=1,
        progress=False,
    )
    with pytest.raises(HessdistillError, match="training data differ") as err:
        train(run_cfg(max_epochs=3), st, out, labels=tmp_path / "l2.h5", hessians=tmp_path / "h2.h5", progress=False)
    assert "last.pt" in str(err.value) and "fix:" in str(err.value)
    with caplog.at_level("WARNING", logger="hessdistill.jobs.train"):
        s = train(
            run_cfg(max_epochs=3),
            st,
            out,
            labels=tmp_path / "l2.h5",
            hessians=tmp_path / "h2.h5",
            progress=False,
            on_mismatch="restart",
        )
    assert "not resuming" in caplog.text and "training data differ" in caplog.text
    assert s["epochs"] == 3 and [int(r.split(",")[0]) for r in (out / "log.csv").read_text().splitlines()[1:]] == [
        1,
        2,
        3,
    ]

    # a checkpoint from before input tracking is not trusted either
    ck = torch.load(out / "last.pt", weights_only=False)
    del ck["inputs"]
    torch.save(ck, out / "last.pt")
    caplog.clear()
    with caplog.at_level("WARNING", logger="hessdistill.jobs.train"):
        s = train(
            run_cfg(max_epochs=1),
            st,
            out,
            labels=tmp_path / "l2.h5",
            hessians=tmp_path / "h2.h5",
            progress=False,
            on_mismatch="restart",
        )
    assert "predates input tracking" in caplog.text and s["epochs"] == 1


def test_rows_per_structure_above_the_stored_rows_is_an_error(stores, tmp_path, caplog):
    from hessdistill.core.errors import HessdistillError
    from hessdistill.jobs.label import run_labelling
    from hessdistill.teachers import load_teacher
    from hessdistill.training import train

    st, lab, hes = stores
    teacher = load_teacher("torch:toy_models:morse", dtype="float64")
    run_labelling(
        st,
        teacher,
        tmp_path / "l3.h5",
        hessians_out=tmp_path / "h3.h5",
        hessian_splits=["train"],
        rows_per_structure=3,
        progress=False,
    )
    with pytest.raises(HessdistillError, match=r"rows_per_structure \(s\) = 4 .* only 3 of its 9 Hessian rows") as err:
        train(
            run_cfg(rows_per_structure=4),
            st,
            tmp_path / "a",
            labels=tmp_path / "l3.h5",
            hessians=tmp_path / "h3.h5",
            progress=False,
        )
    assert "h3.h5" in str(err.value) and "at most 3" in str(err.value)
    # full Hessians: a structure with 3N < s uses all of its rows (H2O: 9 < 10), with a warning
    with caplog.at_level("WARNING", logger="hessdistill.training.data"):
        s = train(
            run_cfg(rows_per_structure=10, max_epochs=1), st, tmp_path / "b", labels=lab, hessians=hes, progress=False
        )
    assert s["epochs"] == 1 and "fewer than s = 10 coordinates" in caplog.text


def test_a_non_finite_loss_names_the_structures_of_its_batch(stores, tmp_path, monkeypatch):
    import hessdistill.training.loop as loop
    from hessdistill.core.errors import HessdistillError
    from hessdistill.training import train

    st, lab, hes = stores
    real = loop.compute_loss

    def poisoned(model, batch, *args, **kw):
        total, terms, per_slot = real(model, batch, *args, **kw)
        if 5 in batch.idx.tolist():  # structure 5 of the train split "explodes"
            total = total * float("nan")
        return total, terms, per_slot

    monkeypatch.setattr(loop, "compute_loss", poisoned)
    with pytest.raises(HessdistillError, match="non-finite training loss at epoch 1") as err:
        train(run_cfg(max_epochs=2), st, tmp_path / "nan", labels=lab, hessians=hes, progress=False)
    msg = str(err.value)
    assert "5 (" in msg and "split 'train'" in msg and "s.h5" in msg and "fix:" in msg


def test_lambda_h_is_halved_when_student_reaches_teacher(stores, tmp_path, monkeypatch):
    from hessdistill.training import loop, train

    st, lab, hes = stores
    monkeypatch.setattr(loop, "teacher_val_force_mae", lambda ds: 50.0)  # a teacher 50 meV/Å off its references
    far = train(
        run_cfg(max_epochs=2, hessian_schedule_threshold=1e-6),
        st,
        tmp_path / "far",
        labels=lab,
        hessians=hes,
        progress=False,
    )
    assert far["lambda_h_final"] == pytest.approx(400.0)
    near = train(
        run_cfg(max_epochs=2, hessian_schedule_threshold=1e9),
        st,
        tmp_path / "near",
        labels=lab,
        hessians=hes,
        progress=False,
    )
    assert near["lambda_h_final"] == pytest.approx(200.0)  # halved once, not again


def test_baselines_n2n_a2a_teacher_forces_with_a_real_teacher(tmp_path):
    """n2n, a2a and teacher-forces runs use what the CHGNet labelling job stored (features, embeddings, forces)."""
    pytest.importorskip("chgnet")
    from ase.calculators.emt import EMT
    from ase.calculators.singlepoint import SinglePointCalculator

    from hessdistill.data.store import write_structures
    from hessdistill.jobs.label import run_labelling
    from hessdistill.teachers import load_teacher
    from hessdistill.training import train

    rng = np.random.default_rng(0)
    splits = {}
    for split, n in (("train", 4), ("val", 2)):
        mols = []
        for i in range(n):
            a = molecule(["CH4", "NH3"][i % 2])
            a.positions += rng.normal(scale=0.05, size=a.positions.shape)
            a.calc = EMT()
            a.calc = SinglePointCalculator(a, energy=a.get_potential_energy(), forces=a.get_forces())
            mols.append(a)
        splits[split] = mols
    st = write_structures(tmp_path / "s.h5", splits)
    teacher = load_teacher("chgnet", dtype="float32", device="cpu")
    run_labelling(st, teacher, tmp_path / "l.h5", node_features=True, progress=False)
    for method in ("n2n", "a2a", "teacher-forces"):
        s = train(
            run_cfg(method=method, max_epochs=2, dtype="float32"),
            st,
            tmp_path / method,
            labels=tmp_path / "l.h5",
            progress=False,
        )
        log = (tmp_path / method / "log.csv").read_text().splitlines()[0]
        assert s["epochs"] == 2
        if method == "n2n":
            assert "train_n2n" in log and "train_hessian" not in log
        if method == "teacher-forces":
            assert "train_teacher_forces" in log and "train_forces" not in log
        if method == "a2a":
            ck = torch.load(tmp_path / method / "model.pt", weights_only=False)
            assert "teacher_table" in ck["state_dict"] and ck["student_config"]["embedding_init"] is not None


@pytest.mark.parametrize(
    "student",
    [
        {"arch": "painn", "hidden": 16, "num_layers": 2, "num_rbf": 8, "cutoff": 4.0, "avg_num_neighbors": "auto"},
        {"arch": "painn", "hidden": 16, "num_layers": 2, "num_rbf": 8, "cutoff": 4.0, "direct_forces": True},
        {
            "arch": "gemnet",
            "num_blocks": 1,
            "emb_size_atom": 16,
            "emb_size_edge": 16,
            "emb_size_trip": 8,
            "emb_size_rbf": 4,
            "emb_size_cbf": 4,
            "emb_size_bil_trip": 8,
            "cutoff": 4.0,
            "direct_forces": False,
        },
        {"arch": "schnet", "hidden": 16, "num_filters": 16, "num_interactions": 2, "num_rbf": 8, "cutoff": 4.0},
    ],
)
def test_real_students_train_with_hessian_loss(stores, tmp_path, student):
    from hessdistill.students.calculator import StudentCalculator
    from hessdistill.training import train

    st, lab, hes = stores
    s = train(
        run_cfg(student=student, max_epochs=2, dtype="float32"),
        st,
        tmp_path / "r",
        labels=lab,
        hessians=hes,
        progress=False,
    )
    assert s["epochs"] == 2 and np.isfinite(s["best_val_force_mae_meV_A"])
    if student.get("avg_num_neighbors") == "auto":
        assert s["student"]["avg_num_neighbors"] > 1.0
    a = molecule("CH4")
    a.calc = StudentCalculator.from_checkpoint(tmp_path / "r" / "model.pt")
    assert a.get_forces().shape == (5, 3)


def test_energy_gradient_term_for_direct_students(stores):
    """L_Egrad = mean ||-dE/dx - F_ref||: zero only when the energy head's gradient matches the references."""
    from hessdistill.core.graphs import collate

    st, lab, hes = stores
    model = toy(direct=True)
    ds = DistillDataset(st, "train", model.cutoff, labels=lab)
    batch = collate([ds[0], ds[1]])
    total, terms, _ = compute_loss(model, batch, LossWeights(energy=0, forces=0, hessian=0, energy_grad=5.0))
    batch.pos.requires_grad_(True)
    e, _ = model(batch, create_graph=True)
    (g,) = torch.autograd.grad(e.sum(), batch.pos)
    expected = torch.linalg.vector_norm(-g - batch.forces, dim=1).mean()
    assert terms["energy_grad"].item() == pytest.approx(expected.item(), rel=1e-9)
    assert total.item() == pytest.approx(5 * expected.item(), rel=1e-9)
    total.backward()
    assert model.mlp[0].weight.grad.abs().sum() > 0  # the energy head is trained through its gradient


def test_lambda_h_schedule_with_teacher_labels_as_reference_warns_or_uses_the_absolute_threshold(
    stores, tmp_path, monkeypatch, caplog
):
    """Reference labels = the teacher's own: its val MAE is 0, so the paper's rule cannot fire; say so, and let an
    absolute threshold (meV/Å) take its place."""
    from hessdistill.training import loop, train

    st, lab, hes = stores
    monkeypatch.setattr(loop, "teacher_val_force_mae", lambda ds: 0.0)
    with caplog.at_level("WARNING", logger="hessdistill.jobs.train"):
        inert = train(
            run_cfg(max_epochs=2, hessian_schedule_threshold=1e9),
            st,
            tmp_path / "inert",
            labels=lab,
            hessians=hes,
            progress=False,
        )
    assert inert["lambda_h_final"] == pytest.approx(400.0) and inert["lambda_h_schedule_threshold_meV_A"] is None
    assert "lambda_H schedule inactive" in caplog.text and "hessian_schedule_force_mae" in caplog.text
    fired = train(
        run_cfg(max_epochs=2, hessian_schedule_force_mae=1e9),
        st,
        tmp_path / "abs",
        labels=lab,
        hessians=hes,
        progress=False,
    )
    assert fired["lambda_h_final"] == pytest.approx(200.0) and fired["lambda_h_halved"] is True
    never = train(
        run_cfg(max_epochs=2, hessian_schedule_force_mae=1e-9),
        st,
        tmp_path / "never",
        labels=lab,
        hessians=hes,
        progress=False,
    )
    assert never["lambda_h_final"] == pytest.approx(400.0)


def test_ema_is_one_fused_exponential_average():
    from hessdistill.training.loop import EMA

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    ema = EMA(model, decay=0.9)
    before = [p.detach().clone() for p in ema.shadow.parameters()]
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
        model[1].running_mean.fill_(3.0)
    ema.update(model)
    d = min(0.9, 2 / 11)
    for s, p, b in zip(ema.shadow.parameters(), model.parameters(), before):
        assert torch.allclose(s, d * b + (1 - d) * p, atol=1e-6)
    assert torch.equal(ema.shadow[1].running_mean, model[1].running_mean)


def test_a_checkpoint_resumes_on_another_device_and_records_where_it_ran(stores, tmp_path):
    """The device is not part of the resume key: a GPU checkpoint resumes on a CPU node (here cpu -> auto, which is
    the CPU on this machine; bench/gpu_check.py does cuda -> cpu); deterministic mode is accepted and recorded."""
    from hessdistill.training import train

    st, lab, hes = stores
    out = tmp_path / "dev"
    train(run_cfg(max_epochs=1, device="cpu"), st, out, labels=lab, hessians=hes, progress=False)
    s = train(
        run_cfg(max_epochs=2, device="auto", deterministic=True), st, out, labels=lab, hessians=hes, progress=False
    )
    assert s["resumed_from_epoch"] == 1 and s["epochs"] == 2
    assert s["device"] == ("cuda" if torch.cuda.is_available() else "cpu") and s["deterministic"] is True
    assert s["float32_matmul_precision"] == "highest" and s["tf32"] is False
    torch.use_deterministic_algorithms(False)


def test_cosine_schedule_decays_over_the_budget_epochs_or_wall_time(stores, tmp_path):
    """lr_schedule: cosine ends at min_lr when the epoch budget is spent, and follows the wall-time budget when
    that is the nearer one; an unknown schedule is refused by name."""
    from hessdistill.core.errors import HessdistillError
    from hessdistill.training import train
    from hessdistill.training.config import TrainConfig
    from hessdistill.training.schedule import budget_fraction, cosine_lr

    cfg = TrainConfig(lr=1e-3, min_lr=1e-5, max_epochs=10, max_time_s=100.0)
    assert cosine_lr(cfg, 0.0) == pytest.approx(1e-3) and cosine_lr(cfg, 1.0) == pytest.approx(1e-5)
    assert cosine_lr(cfg, 0.5) == pytest.approx(0.5 * (1e-3 + 1e-5))
    assert budget_fraction(cfg, 2, 10.0) == pytest.approx(0.2)  # epochs are further along
    assert budget_fraction(cfg, 2, 50.0) == pytest.approx(0.5)  # wall time is further along
    assert budget_fraction(cfg, 20, 500.0) == 1.0
    st, lab, hes = stores
    out = train(
        run_cfg(max_epochs=4, lr_schedule="cosine", lr=1e-3, min_lr=1e-5, batch_size=4),
        st,
        tmp_path / "c",
        labels=lab,
        hessians=hes,
        progress=False,
    )
    assert out["epochs"] == 4
    import csv

    lrs = [float(r["lr"]) for r in csv.DictReader(open(tmp_path / "c" / "log.csv"))]
    # logged after each epoch's last step (3 steps per epoch over 12 structures): fractions 2/3/4, 5/12, ..., 11/12
    expected = [cosine_lr(TrainConfig(lr=1e-3, min_lr=1e-5, max_epochs=4), (e + 2 / 3) / 4) for e in range(4)]
    assert lrs == pytest.approx(expected, rel=1e-6)
    assert all(a > b for a, b in zip(lrs, lrs[1:]))
    with pytest.raises(HessdistillError, match="lr_schedule"):
        TrainConfig.from_dict({"lr_schedule": "linear"})


def test_hessian_phase_ends_at_its_fraction_of_the_budget(stores, tmp_path):
    """hessian_until: 0.75 of a 4-epoch budget trains epochs 1-3 with the Hessian term and epoch 4 without it
    (λ_H = 0, no Hessian loss computed), judged on the budget of the current call after a resume (2 epochs
    first, then extended to 4); refused outside (0, 1] by name."""
    import csv

    from hessdistill.core.errors import HessdistillError
    from hessdistill.training import train
    from hessdistill.training.config import TrainConfig

    st, lab, hes = stores
    out = tmp_path / "h"
    kw = dict(hessian_until=0.75, weights={"hessian": 7.0})
    first = train(run_cfg(max_epochs=2, **kw), st, out, labels=lab, hessians=hes, progress=False)
    assert first["hessian_phase_end_epoch"] is None and first["lambda_h_final"] == 7.0
    s = train(run_cfg(max_epochs=4, **kw), st, out, labels=lab, hessians=hes, progress=False)
    assert s["resumed_from_epoch"] == 2 and s["hessian_phase_end_epoch"] == 3 and s["lambda_h_final"] == 0.0
    rows = list(csv.DictReader(open(out / "log.csv")))
    assert [float(r["lambda_h"]) for r in rows] == [7.0, 7.0, 7.0, 0.0]
    assert [bool(r["train_hessian"]) for r in rows] == [True, True, True, False]
    for bad in (0.0, 1.5):
        with pytest.raises(HessdistillError, match="hessian_until"):
            TrainConfig.from_dict({"hessian_until": bad})
