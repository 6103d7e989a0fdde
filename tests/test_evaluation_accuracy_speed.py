"""Accuracy metrics (against references, teacher and teacher Hessians) and the speed comparison."""

import numpy as np
import pytest
import torch
from ase.build import molecule
from ase.calculators.singlepoint import SinglePointCalculator

from hessdistill.core.model import calculator_predictor
from hessdistill.evaluation.accuracy import accuracy, accuracy_from_stores
from hessdistill.evaluation.speed import speed_comparison
from hessdistill.students.evaluated import student_hessian_rows_fn, student_predictor
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
    for a in atoms:  # references = teacher + known offsets
        e, f = teacher.energy_forces(a)
        a.calc = SinglePointCalculator(a, energy=e + 0.01 * len(a), forces=f + 0.002)
    res = accuracy(calculator_predictor(TeacherCalculator(teacher)), atoms, teacher_labels=teacher.energy_forces(atoms))
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
    from hessdistill.students.calculator import StudentCalculator

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
    from hessdistill.jobs.label import run_labelling

    teacher = load_teacher("torch:toy_models:morse", dtype="float64")
    atoms = mols(6)
    for a in atoms:
        e, f = teacher.energy_forces(a)
        a.calc = SinglePointCalculator(a, energy=e, forces=f)
    st = write_structures(tmp_path / "s.h5", {"test": atoms})
    run_labelling(st, teacher, tmp_path / "l.h5", hessians_out=tmp_path / "h.h5", rows_per_structure=3, progress=False)
    res = accuracy_from_stores(
        calculator_predictor(TeacherCalculator(teacher)),
        st,
        split="test",
        labels=tmp_path / "l.h5",
        hessians=tmp_path / "h.h5",
        hessian_rows_fn=teacher.hessian_rows,
    )
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


class _ColdStartTeacher:
    """A batched teacher whose first 3 batch calls are slow (a cold start), later ones fast; counts calls."""

    batched = True
    name = "cold"

    def __init__(self):
        self.batch_calls = []

    def energy_forces(self, atoms):
        return 0.0, np.zeros((len(atoms), 3))

    def energy_forces_batched(self, atoms_list):
        import time

        self.batch_calls.append(len(atoms_list))
        time.sleep(0.1 if len(self.batch_calls) <= 3 else 0.005)
        return np.zeros(len(atoms_list)), [np.zeros((len(a), 3)) for a in atoms_list]


def test_speed_paper_warmup_skips_the_first_batches():
    from hessdistill.evaluation.protocols import merge_config
    from hessdistill.evaluation.speed import time_teacher

    assert merge_config(None)["speed"]["warmup_batches"] is None
    assert merge_config({"speed": {"warmup_batches": 3}})["speed"]["warmup_batches"] == 3
    structs = mols(10)
    # the paper's rule: one pass over the 5 batches of 2, the first 3 (the slow cold start) untimed
    t = _ColdStartTeacher()
    res = time_teacher(t, structs, batch_size=2, repeats=3, warmup=1, warmup_batches=3)
    assert t.batch_calls == [2] * 5  # no other warm-up of the batches, one pass
    assert res["throughput_n_structures"] == 4 and len(res["batch_s"]) == 5
    assert res["throughput_structures_s"] == pytest.approx(4 / sum(res["batch_s"][3:]))
    assert res["throughput_structures_s"] > 4 / 0.1  # the slow batches are not in it
    assert res["throughput_warmup"] == "first 3 batches skipped"
    # the default rule warms up every batch (here the 3 slow calls) and times whole passes
    t = _ColdStartTeacher()
    res = time_teacher(t, structs, batch_size=2, repeats=3, warmup=1)
    assert len(t.batch_calls) == 5 + 5 * max(1, 3 // 2) and res["throughput_n_structures"] == 10
    with pytest.raises(ValueError, match="n_structures = 8"):
        time_teacher(_ColdStartTeacher(), structs[:6], batch_size=2, warmup_batches=3)


def test_offset_free_energy_error_removes_a_per_element_shift_fitted_on_another_split():
    from ase.build import molecule

    from hessdistill.evaluation.accuracy import element_offsets, offset_free_energy_mae

    rng = np.random.default_rng(0)
    mols = [molecule(n) for n in ("H2O", "CH4", "NH3", "CH3OH", "C2H6", "HCOOH", "CH3CN", "H2O2")]
    shift = {1: -0.10, 6: 0.30, 7: -0.25, 8: 0.70}  # another zero of energy per element
    e_ref = rng.normal(size=len(mols))
    noise = rng.normal(scale=1e-3, size=len(mols))  # the model's true error, eV
    e_model = [e - sum(shift[int(z)] for z in a.numbers) + x for a, e, x in zip(mols, e_ref, noise)]
    off = element_offsets(mols[:6], e_model[:6], e_ref[:6])
    assert off == pytest.approx(shift, abs=5e-3)
    res = offset_free_energy_mae(mols[:6], e_model[:6], e_ref[:6], mols[6:], e_model[6:], e_ref[6:])
    raw = np.mean([1e3 * abs(m - r) / len(a) for a, m, r in zip(mols[6:], e_model[6:], e_ref[6:])])
    assert raw > 50 and res["ref_energy_mae_offset_free_meV_atom"] < 3


def test_teacher_test_evaluation_reports_its_error_without_a_zero_of_energy_offset(tmp_path):
    """A reference with another zero of energy (+0.5 eV per H, -1 eV per O): the teacher's raw energy MAE is the
    offset, the offset-free one (per-element offsets fitted on train) is ~0; no train split: no such key."""
    from hessdistill.data.store import write_structures
    from hessdistill.jobs.label import run_labelling

    teacher = load_teacher("torch:toy_models:morse", dtype="float64")
    shift = {1: 0.5, 6: 0.0, 7: 0.0, 8: -1.0}
    rng = np.random.default_rng(3)
    splits = {}
    for split, n in (("train", 8), ("test", 4)):
        mols = []
        for i in range(n):
            a = molecule(["H2O", "CH4", "NH3", "CH3OH"][i % 4])
            a.positions += rng.normal(scale=0.05, size=a.positions.shape)
            e, f = teacher.energy_forces(a)
            a.calc = SinglePointCalculator(a, energy=e + sum(shift[int(z)] for z in a.numbers), forces=f)
            mols.append(a)
        splits[split] = mols
    st = write_structures(tmp_path / "s.h5", splits, labels="reference")
    run_labelling(st, teacher, tmp_path / "l.h5", progress=False)
    predict = calculator_predictor(TeacherCalculator(teacher))
    res = accuracy_from_stores(predict, st, labels=tmp_path / "l.h5", offsets_from="train")
    assert res["ref_energy_mae_meV_atom"] > 50 and res["ref_energy_mae_offset_free_meV_atom"] < 1e-6
    assert res["ref_energy_offsets_fitted_on"] == "train" and res["ref_force_mae_meV_A"] < 1e-9
    assert "ref_energy_mae_offset_free_meV_atom" not in accuracy_from_stores(predict, st, labels=tmp_path / "l.h5")
