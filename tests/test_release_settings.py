"""Training settings of the authors' release configs, as options: AdamW eps, EMA without warm-up, the official
n2n reduction, the Hessian-loss outlier guard and PaiNN's neighbour cap (training, checkpoints, fast path)."""

import csv
import json

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk, molecule
from test_training import run_cfg, stores, toy  # noqa: F401 (stores: the module-scoped fixture)

from hessdistill.core.errors import HessdistillError
from hessdistill.core.graphs import atoms_to_data, collate
from hessdistill.students import build_student
from hessdistill.training.config import TrainConfig
from hessdistill.training.data import DistillDataset, HessianCollate
from hessdistill.training.loop import EMA
from hessdistill.training.losses import LossWeights, compute_loss, hessian_loss, hessian_outliers, n2n_loss


# ----------------------------------------------------------------------------- optimiser and EMA
def test_adam_eps_reaches_the_optimizer_and_outliers_are_counted(stores, tmp_path):  # noqa: F811
    from hessdistill.training import train

    st, lab, hes = stores
    # threshold below every teacher Hessian entry's max: all 12 training structures are down-weighted each epoch
    s = train(
        run_cfg(max_epochs=2, adam_eps=1e-7, hessian_outlier_threshold=1e-6),
        st,
        tmp_path / "eps",
        labels=lab,
        hessians=hes,
        progress=False,
    )
    ck = torch.load(tmp_path / "eps" / "last.pt", weights_only=False)
    assert [g["eps"] for g in ck["optimizer"]["param_groups"]] == [1e-7]
    rows = list(csv.DictReader((tmp_path / "eps" / "log.csv").open()))
    assert [int(r["hessian_outliers"]) for r in rows] == [12, 12]
    assert s["hessian_outliers"] == 24
    assert json.loads((tmp_path / "eps" / "summary.json").read_text())["hessian_outliers"] == 24
    # defaults: torch's eps, guard off and not reported
    s = train(run_cfg(max_epochs=1), st, tmp_path / "default", labels=lab, hessians=hes, progress=False)
    ck = torch.load(tmp_path / "default" / "last.pt", weights_only=False)
    assert ck["optimizer"]["param_groups"][0]["eps"] == 1e-8
    assert s["hessian_outliers"] is None and "hessian_outliers" not in (tmp_path / "default" / "log.csv").read_text()
    # a threshold above every entry: counted, zero
    s = train(
        run_cfg(max_epochs=1, hessian_outlier_threshold=1e6),
        st,
        tmp_path / "none",
        labels=lab,
        hessians=hes,
        progress=False,
    )
    assert s["hessian_outliers"] == 0


def test_ema_without_warmup_is_the_fixed_decay_recurrence():
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    shadows = {}
    for warmup in (False, True):
        ema = EMA(model, decay=0.9, warmup=warmup)
        expected = [p.detach().clone() for p in model.parameters()]
        current = [p.detach().clone() for p in model.parameters()]
        for t in range(1, 4):
            current = [c + float(t) for c in current]
            with torch.no_grad():
                for p, c in zip(model.parameters(), current):
                    p.copy_(c)
            ema.update(model)
            d = 0.9 if not warmup else min(0.9, (1 + t) / (10 + t))
            expected = [d * e + (1 - d) * c for e, c in zip(expected, current)]
        for s, e in zip(ema.shadow.parameters(), expected):
            assert torch.allclose(s, e, atol=1e-6)
        shadows[warmup] = [s.clone() for s in ema.shadow.parameters()]
        with torch.no_grad():  # back to the start for the other mode
            for p in model.parameters():
                p.sub_(6.0)
    assert not torch.allclose(shadows[False][0], shadows[True][0])  # warm-up weighs the updates far more


# ----------------------------------------------------------------------------- n2n
def test_n2n_sum_form_is_feature_dim_times_the_mean_form_and_is_the_default(stores):  # noqa: F811
    st, lab, hes = stores
    torch.manual_seed(1)
    feats, teacher = torch.randn(7, 4, dtype=torch.float64), torch.randn(7, 5, dtype=torch.float64)
    proj = torch.nn.Linear(4, 5).double()
    sq = (proj(feats) - teacher) ** 2
    assert n2n_loss(feats, proj, teacher).item() == pytest.approx(sq.sum().item() / 7, rel=1e-12)
    assert n2n_loss(feats, proj, teacher, "mean").item() == pytest.approx(sq.sum().item() / 35, rel=1e-12)
    assert n2n_loss(feats, proj, teacher).item() == pytest.approx(5 * n2n_loss(feats, proj, teacher, "mean").item())
    with pytest.raises(ValueError):
        n2n_loss(feats, proj, teacher, "sum")
    # through compute_loss (the trainer's path): default = sum over features
    model = toy()
    ds = DistillDataset(st, "train", model.cutoff, labels=lab)
    batch = collate([ds[0], ds[1]])
    batch.teacher_features = torch.randn(batch.pos.shape[0], 5, dtype=torch.float64)
    proj = torch.nn.Linear(model.feature_dim, 5).double()
    w = LossWeights(energy=0, forces=0, hessian=0, n2n=1000.0)
    total, terms, _ = compute_loss(model, batch, w, projection=proj)
    _, terms_mean, _ = compute_loss(model, batch, w, projection=proj, n2n_reduction="mean")
    assert terms["n2n"].item() == pytest.approx(5 * terms_mean["n2n"].item(), rel=1e-10)
    assert total.item() == pytest.approx(1000 * terms["n2n"].item(), rel=1e-10)
    assert TrainConfig.from_dict({"n2n_reduction": "mean"}).n2n_reduction == "mean"
    assert TrainConfig().n2n_reduction == "sum_features"
    with pytest.raises(HessdistillError, match="n2n_reduction"):
        TrainConfig.from_dict({"n2n_reduction": "sum"})
    with pytest.raises(HessdistillError, match="adam_eps"):
        TrainConfig.from_dict({"adam_eps": 0.0})


# ----------------------------------------------------------------------------- Hessian outlier guard
def test_outlier_guard_scales_exactly_the_structures_over_the_threshold(stores):  # noqa: F811
    st, lab, hes = stores
    model = toy()
    ds = DistillDataset(st, "train", model.cutoff, labels=lab, hessians=hes)
    col = HessianCollate(ds, rows_per_structure=2, seed=7)
    idx = (0, 1, 2, 3, 4)
    batch = col([ds[i] for i in idx])
    # by hand: max |H| over each structure's sampled rows
    absmax = np.zeros(len(idx))
    s_m = np.zeros(len(idx))
    for ds_idx, m, pick in col.last_picks:
        absmax[m] = np.abs(ds.hessians[ds_idx][1][pick]).max()
        s_m[m] = len(pick)
    thr = float(np.median(absmax))
    flagged = absmax > thr
    assert 0 < flagged.sum() < len(idx)
    assert hessian_outliers(batch, thr).tolist() == flagged.tolist()
    batch.pos.requires_grad_(True)
    _, forces = model(batch, create_graph=True)
    plain, per_slot = hessian_loss(forces, batch)
    guarded, per_slot_g = hessian_loss(forces, batch, outlier_threshold=thr, outlier_weight=1e-3)
    n_total = batch.pos.shape[0]
    per_struct = (per_slot.detach().numpy() / s_m).sum(0)  # Σ_k err / s_m of each structure
    assert plain.item() == pytest.approx(per_struct.sum() / n_total, rel=1e-10)
    expected = (per_struct * np.where(flagged, 1e-3, 1.0)).sum() / n_total
    assert guarded.item() == pytest.approx(expected, rel=1e-10)
    assert torch.equal(per_slot, per_slot_g)  # the sampler's per-row errors are not reweighted
    # compute_loss reports the count; a threshold above everything changes nothing
    w = LossWeights(energy=0, forces=0, hessian=400.0)
    _, terms, _ = compute_loss(model, batch, w, hessian_outlier_threshold=thr, hessian_outlier_weight=1e-8)
    assert terms["hessian_outliers"].item() == flagged.sum()
    assert terms["hessian"].item() == pytest.approx(
        (per_struct * np.where(flagged, 1e-8, 1.0)).sum() / n_total, rel=1e-10
    )
    same, _ = hessian_loss(forces, batch, outlier_threshold=absmax.max() * 2)
    assert same.item() == plain.item()


def test_outlier_guard_of_projections_uses_the_whole_stored_hessian(stores):  # noqa: F811
    st, lab, hes = stores
    ds = DistillDataset(st, "train", 4.0, labels=lab, hessians=hes)
    col = HessianCollate(ds, rows_per_structure=3, weighting="projection", seed=3)
    batch = col([ds[0], ds[1], ds[2]])
    want = [np.abs(ds.hessians[i][1]).max() for i in (0, 1, 2)]
    np.testing.assert_allclose(batch.hess_absmax.numpy(), want, rtol=1e-12)
    thr = float(np.median(want))
    assert hessian_outliers(batch, thr).tolist() == [w > thr for w in want]
    assert not hasattr(HessianCollate(ds, rows_per_structure=2)([ds[0]]), "hess_absmax")


# ----------------------------------------------------------------------------- PaiNN neighbour cap
PAINN = {"arch": "painn", "hidden": 8, "num_layers": 2, "num_rbf": 6, "cutoff": 4.0}


def _painn(**kw):
    torch.manual_seed(4)
    m = build_student({**PAINN, **kw}).double()
    m.fit_element_energies([[1, 6, 8], [14]], [-10.0, -4.0])
    return m.eval()


def _structures():
    rng = np.random.default_rng(2)
    crystal = bulk("Si", "diamond", a=5.43).repeat((2, 1, 1))  # ~16 neighbours within 4 Å
    crystal.positions += rng.normal(scale=0.08, size=crystal.positions.shape)
    mol = molecule("CH3CH2OH")
    mol.positions += rng.normal(scale=0.05, size=mol.positions.shape)
    return [crystal, mol]


def _run(model, structs, prepared=True):
    batch = collate([atoms_to_data(a, model.cutoff, student=model if prepared else None) for a in structs])
    e, f = model(batch, create_graph=False)
    return e.detach(), f.detach()


def test_painn_max_neighbors_large_is_uncapped_small_differs_and_stays_invariant():
    structs = _structures()
    e0, f0 = _run(_painn(), structs)
    e1, f1 = _run(_painn(max_neighbors=1000), structs)
    assert torch.allclose(e0, e1, rtol=0, atol=1e-10) and torch.allclose(f0, f1, rtol=0, atol=1e-10)
    capped = _painn(max_neighbors=4)
    e2, f2 = _run(capped, structs)
    assert (e2[0] - e0[0]).abs() > 1e-6 and (f2 - f0).abs().max() > 1e-6  # the cap bites on the crystal
    # prepared (precomputed kept edges) and unprepared (computed in the forward) batches agree
    e3, f3 = _run(capped, structs, prepared=False)
    assert torch.allclose(e2, e3, rtol=0, atol=1e-10) and torch.allclose(f2, f3, rtol=0, atol=1e-10)
    # permutation invariance of the capped model (ties are kept, so the kept set does not depend on atom order)
    perm = np.random.default_rng(0).permutation(len(structs[0]))
    c = structs[0]
    permuted = Atoms(numbers=c.numbers[perm], positions=c.positions[perm], cell=c.cell, pbc=c.pbc)
    e4, f4 = _run(capped, [permuted, structs[1]])
    assert torch.allclose(e4, e2, rtol=0, atol=1e-9)
    n0 = len(c)
    assert torch.allclose(f4[:n0], f2[:n0][torch.as_tensor(perm)], rtol=0, atol=1e-9)
    with pytest.raises(HessdistillError, match="max_neighbors"):
        _painn(max_neighbors=0)


def test_painn_max_neighbors_round_trips_through_a_checkpoint(tmp_path):
    from hessdistill.students.checkpoint import load_student

    model = _painn(max_neighbors=4)
    assert model.config()["max_neighbors"] == 4
    torch.save(
        {
            "format": "hessdistill.student",
            "student_config": model.config(),
            "state_dict": model.state_dict(),
            "dtype": "float64",
        },
        tmp_path / "model.pt",
    )
    loaded, _ = load_student(tmp_path / "model.pt")
    assert loaded.max_neighbors == 4 and loaded.config() == model.config()
    structs = _structures()
    e, f = _run(model, structs)
    e2, f2 = _run(loaded, structs)
    assert torch.equal(e, e2) and torch.equal(f, f2)
    # uncapped PaiNN keeps its graph tag (graphs prepared before the option existed stay valid)
    assert "max_neighbors" not in _painn().data_config() and _painn(max_neighbors=4).data_config()["max_neighbors"] == 4


def test_capped_painn_fast_path_follows_the_cap_when_neighbours_change_rank():
    """The runtime recomputes the kept edges at every call while the cap can bite (the ranking of neighbours
    changes with the positions even where the Verlet list and the set of pairs within the cutoff do not)."""
    from hessdistill.students.deployed import Runner
    from hessdistill.students.export import extras_spec
    from hessdistill.students.layers import capped_edges

    model = _painn(max_neighbors=3)
    assert extras_spec(model)["kind"] == "neighbor_cap" and extras_spec(_painn()) is None
    # an octahedron around a centre: every pair within the 4 Å cutoff (at most 3 Å apart), so the set of pairs
    # never changes, but which 3 neighbours are the nearest does (4 vertices tie at 2.1 Å from each vertex)
    octa = np.array([[1.5, 0, 0], [-1.5, 0, 0], [0, 1.5, 0], [0, -1.5, 0], [0, 0, 1.5], [0, 0, -1.5]])
    c = Atoms("CH6", positions=np.vstack([[0, 0, 0], octa]) + 5.0)
    runner = Runner(model, [c.numbers], [c.cell.array], [c.pbc], skin=1.0)
    rng = np.random.default_rng(3)
    pos = c.positions + rng.normal(scale=0.03, size=c.positions.shape)
    kept = set()
    for _ in range(6):
        e, f = runner(pos)
        a = Atoms(numbers=c.numbers, positions=pos)
        e_ref, f_ref = _run(model, [a])
        assert abs(e[0] - float(e_ref[0])) < 1e-9 and np.abs(f - f_ref.numpy()).max() < 1e-9
        kept.add(tuple(capped_edges(collate([atoms_to_data(a, 4.0)]), 4.0, 3)[0].tolist()))
        pos = pos + rng.normal(scale=0.03, size=pos.shape)
    assert runner.rebuilds == 1 and len(kept) > 1  # one neighbour search, yet the kept edges changed


def test_capped_painn_exports_and_matches_the_eager_model(tmp_path):
    from hessdistill.students.deployed import FastCalculator
    from hessdistill.students.export import export_student, load_exported

    model = _painn(max_neighbors=3).float()
    meta = export_student(model, tmp_path / "s.pt", fmt="torchscript")  # check=True: exported == eager
    assert meta["extras"]["max_neighbors"] == 3 and meta["student_config"]["max_neighbors"] == 3
    prog = load_exported(tmp_path / "s.pt")
    c = _structures()[0]
    a = c.copy()
    a.calc = FastCalculator(prog)
    e_ref, f_ref = _run(model.double(), [c])
    assert np.abs(a.get_forces() - f_ref.numpy()).max() < 1e-4
    assert abs(a.get_potential_energy() - float(e_ref[0])) < 1e-4 * max(1.0, abs(float(e_ref[0])))
