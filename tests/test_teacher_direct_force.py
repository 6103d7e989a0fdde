"""A user's direct-force teacher (like the paper's MD22 teacher, JMP-L) plugged in through the ``torch:`` adapter:
loaded from its checkpoint by a factory, labelled with full "Hessians" (rows of -dF/dx, not symmetric), and
distilled into a student (configs/paper-md22.yaml shows the config lines)."""

import numpy as np
import pytest
import torch
from ase.build import molecule
from ase.calculators.singlepoint import SinglePointCalculator

from hessdistill.data.labels import HessianStore
from hessdistill.data.store import StructureStore, write_structures
from hessdistill.jobs.label import run_labelling
from hessdistill.students.registry import STUDENTS
from hessdistill.teachers import load_teacher
from hessdistill.training import train

STUDENTS.setdefault("toy", ("toy_models", "ToyStudent"))
SPEC = "torch:direct_force_model:load"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """The "fine-tuned" weights, saved as a user would save them."""
    from direct_force_model import PairDirectForce

    torch.manual_seed(3)
    path = tmp_path_factory.mktemp("ckpt") / "direct-md22.pt"
    torch.save(PairDirectForce().state_dict(), path)
    return path


def _fd_jacobian(teacher, atoms, h=1e-5):
    """-dF/dx by central differences of the teacher's forces: row k = -(F(x + h e_k) - F(x - h e_k)) / 2h."""
    x0 = atoms.positions.copy()
    cols = []
    for k in range(x0.size):
        out = []
        for sign in (1.0, -1.0):
            a = atoms.copy()
            x = x0.copy().reshape(-1)
            x[k] += sign * h
            a.positions = x.reshape(-1, 3)
            out.append(teacher.energy_forces(a)[1].reshape(-1))
        cols.append(-(out[0] - out[1]) / (2 * h))
    return np.stack(cols, axis=1)  # column k = d(-F)/dx_k, so row r = -dF_r/dx


def test_the_checkpoint_is_loaded_and_rows_are_minus_dF_dx(checkpoint):
    from direct_force_model import load

    teacher = load_teacher(SPEC, dtype="float64", checkpoint=str(checkpoint))
    assert teacher.conservative is False
    a = molecule("CH3OH")
    a.positions += np.random.default_rng(0).normal(scale=0.05, size=a.positions.shape)
    mine = load(checkpoint=str(checkpoint)).double()
    pos = torch.tensor(a.positions, requires_grad=True)
    _, f_ref = mine(pos, torch.tensor(a.numbers), None, None)
    _, f = teacher.energy_forces(a)
    np.testing.assert_allclose(f, f_ref.detach().numpy(), atol=1e-12)  # the fine-tuned weights, not a fresh init
    H = teacher.hessian(a)
    np.testing.assert_allclose(H, _fd_jacobian(teacher, a), atol=1e-6)
    assert np.abs(H - H.T).max() > 1e-3 * np.abs(H).max()  # a direct-force "Hessian" is not symmetric
    # without the checkpoint the factory gives other weights: the option reaches the user's factory
    fresh = load_teacher(SPEC, dtype="float64")
    assert not np.allclose(fresh.energy_forces(a)[1], f)


def test_labelled_and_distilled_like_any_teacher(checkpoint, tmp_path):
    teacher = load_teacher(SPEC, dtype="float64", checkpoint=str(checkpoint))
    rng = np.random.default_rng(1)
    splits = {}
    for split, n in (("train", 8), ("val", 3)):
        mols = []
        for i in range(n):
            a = molecule(["H2O", "NH3", "CH4"][i % 3])
            a.positions += rng.normal(scale=0.05, size=a.positions.shape)
            e, f = teacher.energy_forces(a)  # reference labels: here the teacher's own
            a.calc = SinglePointCalculator(a, energy=e, forces=f)
            mols.append(a)
        splits[split] = mols
    st = write_structures(tmp_path / "s.h5", splits, labels="teacher:direct")
    run_labelling(
        st,
        teacher,
        tmp_path / "l.h5",
        hessians_out=tmp_path / "h.h5",
        hessian_splits=["train"],
        rows_per_structure="full",
        progress=False,
    )
    with StructureStore(st) as s, HessianStore(tmp_path / "h.h5") as hs:
        assert hs.attrs["conservative"] in (False, 0, "False", "false")
        a = s.atoms("train", 2)
        np.testing.assert_allclose(hs.full("train", 2), teacher.hessian(a), atol=1e-10)
    cfg = dict(
        student={"arch": "toy", "cutoff": 4.0, "direct_forces": True},
        method="hessian",
        rows_per_structure=2,
        batch_size=4,
        max_epochs=3,
        lr=3e-3,
        dtype="float64",
        device="cpu",
        seed=0,
    )
    summary = train(cfg, st, tmp_path / "run", labels=tmp_path / "l.h5", hessians=tmp_path / "h.h5", progress=False)
    assert summary["epochs"] == 3 and np.isfinite(summary["best_val_force_mae_meV_A"])
    assert (tmp_path / "run" / "best.pt").exists()
