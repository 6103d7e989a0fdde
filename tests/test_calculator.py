"""Students as ASE calculators: forces, stress, and use in MD/optimisers."""

import numpy as np
import pytest
import torch
from ase import units
from ase.build import bulk, molecule
from ase.md.verlet import VelocityVerlet
from ase.optimize import BFGS

from hessdistill.core.errors import HessdistillError
from hessdistill.students.calculator import StudentCalculator, load_student


def model(direct=False):
    from toy_models import ToyStudent

    torch.manual_seed(1)
    m = ToyStudent(cutoff=4.5, direct_forces=direct).to(torch.float64)
    m.fit_element_energies([[14, 14]], [-10.0])
    return m


def test_forces_and_stress_match_finite_differences():
    calc = StudentCalculator(model())
    a = bulk("Si", "diamond", a=5.43)
    a.positions += np.random.default_rng(0).normal(scale=0.05, size=a.positions.shape)
    a.calc = calc
    f = a.get_forces()
    num_f = calc.calculate_numerical_forces(a, d=1e-5)
    np.testing.assert_allclose(f, num_f, atol=1e-7)
    s = a.get_stress()
    num_s = calc.calculate_numerical_stress(a, d=1e-6)
    np.testing.assert_allclose(s, num_s, atol=1e-8)
    assert np.abs(s).max() > 1e-4


def test_md_conserves_energy_and_bfgs_relaxes():
    calc = StudentCalculator(model())
    a = molecule("CH4")
    a.calc = calc
    opt = BFGS(a, logfile=None)
    assert opt.run(fmax=1e-3, steps=200)
    assert np.abs(a.get_forces()).max() < 1e-3
    a.rattle(0.05, seed=3)
    dyn = VelocityVerlet(a, timestep=0.25 * units.fs, logfile=None)
    e0 = a.get_total_energy()
    dyn.run(100)
    assert abs(a.get_total_energy() - e0) < 1e-4


def test_checkpoint_round_trip_and_errors(tmp_path):
    m = model()
    torch.save(
        {
            "format": "hessdistill.student",
            "student_config": m.config(),
            "dtype": "float64",
            "state_dict": m.state_dict(),
        },
        tmp_path / "m.pt",
    )
    from hessdistill.students.registry import STUDENTS

    STUDENTS.setdefault("toy", ("toy_models", "ToyStudent"))
    m2, _ = load_student(tmp_path / "m.pt")
    a = molecule("H2O")
    a.calc = StudentCalculator(m)
    e1 = a.get_potential_energy()
    a.calc = StudentCalculator(m2)
    assert a.get_potential_energy() == pytest.approx(e1, abs=1e-12)
    torch.save({"hello": 1}, tmp_path / "bad.pt")
    with pytest.raises(HessdistillError, match="not a hessdistill student checkpoint"):
        load_student(tmp_path / "bad.pt")
    d = bulk("Si", "diamond", a=5.43)
    d.calc = StudentCalculator(model(direct=True))
    assert d.get_forces().shape == (2, 3)
    with pytest.raises(Exception, match="stress"):
        d.get_stress()


# ------------------------------------------------------------------------------------- files that are not students
def _toy_checkpoint(path):
    """A valid student file for the toy model, written by the training loop's own writer (as best.pt/model.pt)."""
    from hessdistill.students.checkpoint import save_student
    from hessdistill.students.registry import STUDENTS

    STUDENTS.setdefault("toy", ("toy_models", "ToyStudent"))
    save_student(
        path,
        model(),
        dtype="float64",
        epoch=3,
        val_force_mae_meV_A=12.5,
        teacher_val_force_mae_meV_A=None,
        method="hessian",
    )
    return path


def _last_pt(path):
    """A training checkpoint with the keys the training loop writes to last.pt."""
    m = model()
    opt = torch.optim.AdamW(m.parameters(), amsgrad=True)
    torch.save(
        {
            "config": {"method": "hessian"},
            "model": m.state_dict(),
            "ema": m.state_dict(),
            "ema_updates": 4,
            "optimizer": opt.state_dict(),
            "scheduler": {},
            "projection": None,
            "sampler": {},
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": None,
            "state": {"epoch": 3},
        },
        path,
    )
    return path


def _bad_file(kind, tmp_path):
    run = tmp_path / "results" / "s" / "runs" / "chgnet" / "painn"
    run.mkdir(parents=True)
    if kind == "missing":
        return run / "model.pt", "does not exist"
    if kind == "directory":
        _toy_checkpoint(run / "model.pt")
        return run, "is a directory"
    if kind == "text":
        (run / "model.pt").write_text("epoch,loss\n1,0.5\n")
        return run / "model.pt", "is a text file"
    if kind == "hdf5":
        from hessdistill.data import write_structures

        return write_structures(run / "model.pt", [molecule("H2O")], require_labels=False), "is an HDF5 file"
    if kind == "empty":
        (run / "model.pt").write_bytes(b"")
        return run / "model.pt", "is empty"
    if kind == "truncated":
        data = _toy_checkpoint(run / "full.pt").read_bytes()
        (run / "model.pt").write_bytes(data[: len(data) // 2])
        return run / "model.pt", "truncated or damaged torch file"
    if kind == "state_dict":
        torch.save(model().state_dict(), run / "model.pt")
        return run / "model.pt", "bare weights"
    return _last_pt(run / "last.pt"), "is a training checkpoint"


BAD_KINDS = ["missing", "directory", "text", "hdf5", "empty", "truncated", "state_dict", "last.pt"]


@pytest.mark.parametrize("kind", BAD_KINDS)
def test_non_student_files_name_the_file_and_the_fix(tmp_path, kind):
    path, problem = _bad_file(kind, tmp_path)
    with pytest.raises(HessdistillError) as err:
        StudentCalculator.from_checkpoint(path)
    msg = str(err.value)
    assert msg.startswith(f"file {str(path)!r}") and problem in msg and "\n  fix: pass " in msg, msg
    if kind == "last.pt":
        assert str(path.parent / "model.pt") in msg and str(path.parent / "best.pt") in msg, msg
    elif kind == "directory":
        assert msg.endswith(f"fix: pass {path / 'model.pt'}"), msg
    else:
        assert "model.pt written by training (results/<subset>/runs/<teacher>/<run>/model.pt)" in msg, msg


def test_best_pt_is_a_student_file(tmp_path):
    m, ck = load_student(_toy_checkpoint(tmp_path / "best.pt"))
    assert ck["epoch"] == 3 and m.cutoff == 4.5


@pytest.mark.parametrize("kind", ["text", "truncated", "last.pt"])
def test_evaluate_cli_reports_bad_model_files(tmp_path, capsys, kind):
    from hessdistill.jobs.evaluate import main

    path, problem = _bad_file(kind, tmp_path)
    assert main(["--model", str(path), "--structures", str(tmp_path / "s.h5"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: file {str(path)!r}") and problem in err and "Traceback" not in err, err
