"""Students as ASE calculators: forces, stress, and use in MD/optimisers."""

import numpy as np
import pytest
import torch
from ase.build import bulk, molecule
from ase.md.verlet import VelocityVerlet
from ase.optimize import BFGS
from ase import units

from hessdistill.calculator import StudentCalculator, load_student
from hessdistill.errors import HessdistillError


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
    torch.save({"format": "hessdistill.student", "student_config": m.config(), "dtype": "float64",
                "state_dict": m.state_dict()}, tmp_path / "m.pt")
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
