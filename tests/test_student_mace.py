"""MACE (mace-torch's network) as a student: forces, Hessian loss, training, checkpoint, ASE calculator.

Runs only where mace-torch is installed (the separate MACE environment); skipped elsewhere.
"""

import csv

import numpy as np
import pytest

pytest.importorskip("mace")

import torch  # noqa: E402
from ase.build import bulk, molecule  # noqa: E402
from test_training import brute_force_jacobian, run_cfg, stores  # noqa: E402,F401  (module fixture reused)

from hessdistill.core.errors import HessdistillError  # noqa: E402
from hessdistill.core.graphs import batch_atoms  # noqa: E402
from hessdistill.students import build_student  # noqa: E402
from hessdistill.training.data import DistillDataset, HessianCollate  # noqa: E402
from hessdistill.training.losses import hessian_loss  # noqa: E402

pytestmark = pytest.mark.mace

SMALL = {
    "arch": "mace",
    "cutoff": 4.0,
    "atomic_numbers": [1, 6, 7, 8, 14],
    "num_channels": 8,
    "max_L": 1,
    "num_interactions": 2,
    "correlation": 2,
    "radial_mlp": [16, 16],
}


def small(dtype=torch.float64):
    torch.manual_seed(0)
    return build_student(SMALL).to(dtype)


def test_forces_are_minus_the_energy_gradient_molecule_and_crystal():
    model = small()
    si = bulk("Si", "diamond", a=5.43, cubic=True)
    si.rattle(0.05, seed=1)
    for a in (molecule("CH3OH"), si):
        b = batch_atoms([a], model.cutoff, dtype=torch.float64)
        _, f = model(b, create_graph=False)
        h = 1e-5
        for atom, comp in ((0, 0), (len(a) - 1, 2)):
            e = []
            for sign in (1, -1):
                d = a.copy()
                d.positions[atom, comp] += sign * h
                e.append(
                    float(model(batch_atoms([d], model.cutoff, dtype=torch.float64), create_graph=False)[0][0].detach())
                )
            assert float(f[atom, comp]) == pytest.approx(-(e[0] - e[1]) / (2 * h), rel=1e-6, abs=1e-9)


def test_energy_is_invariant_and_extensive():
    model = small()
    a = molecule("CH3OH")
    e1 = float(model(batch_atoms([a], model.cutoff), create_graph=False)[0][0])
    r = a.copy()
    r.rotate(37, "x", center="COM")
    r.translate([1.0, -2.0, 0.5])
    e2 = float(model(batch_atoms([r], model.cutoff), create_graph=False)[0][0])
    far = a.copy()
    far.translate([50, 0, 0])
    both = a + far
    e3 = float(model(batch_atoms([both], model.cutoff), create_graph=False)[0][0])
    assert e2 == pytest.approx(e1, abs=1e-9) and e3 == pytest.approx(2 * e1, abs=1e-9)


def test_hessian_loss_through_mace_matches_brute_force(stores):  # noqa: F811
    st, lab, hes = stores
    model = small()
    ds = DistillDataset(st, "train", model.cutoff, labels=lab, hessians=hes)
    col = HessianCollate(ds, rows_per_structure=2, seed=3)
    batch = col([ds[i] for i in (0, 1, 2)])
    batch.pos.requires_grad_(True)
    _, forces = model(batch, create_graph=True)
    loss, per_slot = hessian_loss(forces, batch)
    for ds_idx, m, pick in col.last_picks:
        js = brute_force_jacobian(model, ds[ds_idx])
        idx, rows = ds.hessians[ds_idx]
        n = len(ds.atoms[ds_idx])
        for k, p in enumerate(pick):
            err = np.linalg.norm((js[idx[p]] + rows[p]).reshape(n, 3), axis=1).sum()
            assert per_slot[k, m].item() == pytest.approx(err, rel=1e-8)
    loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_mace_student_trains_checkpoints_and_runs_in_ase(stores, tmp_path):  # noqa: F811
    from hessdistill.students.calculator import StudentCalculator
    from hessdistill.training import train

    st, lab, hes = stores
    s = train(
        run_cfg(student=dict(SMALL), max_epochs=3, dtype="float64", lr=3e-3),
        st,
        tmp_path / "r",
        labels=lab,
        hessians=hes,
        progress=False,
    )
    assert s["epochs"] == 3 and np.isfinite(s["best_val_force_mae_meV_A"]) and s["student"]["arch"] == "mace"
    with open(tmp_path / "r" / "log.csv") as fh:
        first = float(next(csv.DictReader(fh))["val_force_mae_meV_A"])
    assert s["best_val_force_mae_meV_A"] <= first
    a = molecule("CH4")
    a.calc = StudentCalculator.from_checkpoint(tmp_path / "r" / "model.pt")
    f = a.get_forces()
    assert f.shape == (5, 3) and np.isfinite(f).all()
    assert abs(f.sum(axis=0)).max() < 1e-8  # translation invariance: forces sum to zero


def test_unknown_elements_and_a2a_fail_clearly():
    model = small()
    with pytest.raises(HessdistillError, match=r"(?s)knows elements \[1, 6, 7, 8, 14\].*\[26\].*fix"):
        model(batch_atoms([bulk("Fe", "bcc", a=2.87)], model.cutoff), create_graph=False)
    with pytest.raises(HessdistillError, match="a2a"):
        build_student({**SMALL, "embedding_init": {"numbers": [1], "table": [[0.0]]}})
    with pytest.raises(HessdistillError, match="unknown interaction"):
        build_student({**SMALL, "interaction": "Nope"})
