"""Accuracy metrics (against references, teacher and teacher Hessians) and the speed comparison."""

import numpy as np
import pytest
import torch
from ase.build import molecule
from ase.calculators.singlepoint import SinglePointCalculator

from hessdistill.evaluation.accuracy import (accuracy, accuracy_from_stores, calculator_predictor,
                                             student_hessian_rows_fn, student_predictor)
from hessdistill.evaluation.speed import speed_comparison
from hessdistill.teachers import load_teacher
from hessdistill.teachers.calculator import TeacherCalculator


def mols(n=5, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        a = molecule(["H2O", "CH4", "NH3"][i % 3])
        a.positions += rng.normal(scale=0.05, size=a.positions.shape)
        out.append(a)
    return out


def toy():
    from toy_models import ToyStudent

    torch.manual_seed(0)
    return ToyStudent(cutoff=4.0).to(torch.float64)


def test_accuracy_against_manual_numbers():
    teacher = load_teacher("torch:toy_models:morse", dtype="float64")
    atoms = mols()
    rng = np.random.default_rng(1)
    for a in atoms:  # references = teacher + known offsets
        e, f = teacher.energy_forces(a)
        a.calc = SinglePointCalculator(a, energy=e + 0.01 * len(a), forces=f + 0.002)
    res = accuracy(calculator_predictor(TeacherCalculator(teacher)), atoms,
                   teacher_labels=teacher.energy_forces(atoms))
    assert res["ref_energy_mae_meV_atom"] == pytest.approx(10.0)
    assert res["ref_force_mae_meV_A"] == pytest.approx(2.0)
    assert res["ref_force_l2mae_meV_A"] == pytest.approx(2.0 * np.sqrt(3))
    assert res["teacher_force_mae_meV_A"] == pytest.approx(0.0, abs=1e-9)
    assert res["ref_energy_mae_meV_atom_se"] == pytest.approx(0.0, abs=1e-9)
    assert res["n_structures"] == 5
    # on the reference's scale: each atom's error is (2, 2, 2) meV/Å, so the pooled ratio is 2√3 / mean |F_ref|
    f_ref = np.concatenate([a.get_forces() for a in atoms])
    mean_ref = 1e3 * np.linalg.norm(f_ref, axis=1).mean()
    assert res["ref_mean_abs_force_meV_A"] == pytest.approx(mean_ref)
    assert res["ref_force_rel_error"] == pytest.approx(2.0 * np.sqrt(3) / mean_ref)
    assert res["teacher_force_rel_error"] == pytest.approx(0.0, abs=1e-12)


def test_student_predictor_matches_calculator_and_hessian_mae_is_zero_for_itself():
    from hessdistill.calculator import StudentCalculator

    m = toy()
    atoms = mols(4)
    e1, f1 = student_predictor(m, batch_size=3)(atoms)
    e2, f2 = calculator_predictor(StudentCalculator(m))(atoms)
    np.testing.assert_allclose(e1, e2, atol=1e-10)
    for a, b in zip(f1, f2):
        np.testing.assert_allclose(a, b, atol=1e-10)
    fn = student_hessian_rows_fn(m)
    hs = [(np.arange(3 * len(a)), fn(a, np.arange(3 * len(a)))) for a in atoms]
    for a in atoms:
        a.calc = SinglePointCalculator(a, energy=0.0, forces=np.zeros((len(a), 3)))
    res = accuracy(student_predictor(m), atoms, hessians=hs, hessian_rows_fn=fn)
    assert res["hessian_mae_meV_A2"] == pytest.approx(0.0, abs=1e-9)
    assert res["hessian_n_structures"] == 4
    assert np.allclose(hs[0][1], hs[0][1].T, atol=1e-10)  # conservative student: symmetric Hessian


def test_accuracy_from_stores(tmp_path):
    from hessdistill.data.store import write_structures
    from hessdistill.label import run_labelling

    teacher = load_teacher("torch:toy_models:morse", dtype="float64")
    atoms = mols(6)
    for a in atoms:
        e, f = teacher.energy_forces(a)
        a.calc = SinglePointCalculator(a, energy=e, forces=f)
    st = write_structures(tmp_path / "s.h5", {"test": atoms})
    run_labelling(st, teacher, tmp_path / "l.h5", hessians_out=tmp_path / "h.h5", rows_per_structure=3, progress=False)
    res = accuracy_from_stores(calculator_predictor(TeacherCalculator(teacher)), st, split="test", labels=tmp_path / "l.h5",
                               hessians=tmp_path / "h.h5", hessian_rows_fn=teacher.hessian_rows)
    assert res["ref_force_mae_meV_A"] == pytest.approx(0.0, abs=1e-9)
    assert res["hessian_mae_meV_A2"] == pytest.approx(0.0, abs=1e-9) and res["hessian_n_elements"] > 0


def test_speed_comparison_reports_both_and_ratios():
    m = toy()
    teacher = load_teacher("torch:toy_models:slow_morse", delay=0.01, dtype="float64")
    res = speed_comparison(m.float().double(), teacher, mols(6), batch_size=4, repeats=3, warmup=1)
    assert res["teacher"]["latency_ms"] >= 10.0  # the deliberate 10 ms delay per teacher call
    assert res["student"]["throughput_structures_s"] > 0 and res["teacher"]["n_structures"] == 6
    assert res["speedup_latency"] == pytest.approx(res["teacher"]["latency_ms"] / res["student"]["latency_ms"])
    assert res["teacher"]["ns_per_day"] == pytest.approx(res["teacher"]["throughput_structures_s"] * 0.0864)
