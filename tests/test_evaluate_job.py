"""The evaluation job: a student run and the teacher through the same protocols, one JSON per evaluation."""

import json

import numpy as np
import pytest
import torch
from ase.build import molecule
from ase.calculators.singlepoint import SinglePointCalculator

from hessdistill.core.errors import HessdistillError
from hessdistill.evaluation.protocols import merge_config
from hessdistill.jobs.evaluate import evaluated_model, main, run_evaluations
from hessdistill.students.evaluated import EvaluatedStudent
from hessdistill.students.registry import STUDENTS

STUDENTS.setdefault("toy", ("toy_models", "ToyStudent"))

SMALL = {
    "vibrations": {"n_structures": 1, "fmax": 1e-2},
    "md": {"n_structures": 1, "steps": 40, "log_every": 5},
    "relax": {"n_structures": 2, "max_steps": 100},
    "speed": {"n_structures": 4, "batch_size": 2, "repeats": 2, "warmup": 1},
}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from toy_models import ToyStudent

    from hessdistill.data.store import write_structures
    from hessdistill.jobs.label import run_labelling
    from hessdistill.teachers import load_teacher

    d = tmp_path_factory.mktemp("ev")
    teacher = load_teacher("torch:toy_models:morse", dtype="float64")
    rng = np.random.default_rng(0)
    mols = []
    for i in range(4):
        a = molecule(["H2O", "CH4"][i % 2])
        a.positions += rng.normal(scale=0.03, size=a.positions.shape)
        e, f = teacher.energy_forces(a)
        a.calc = SinglePointCalculator(a, energy=e, forces=f)
        mols.append(a)
    st = write_structures(d / "s.h5", {"test": mols})
    run_labelling(st, teacher, d / "l.h5", hessians_out=d / "h.h5", rows_per_structure=2, progress=False)
    torch.manual_seed(0)
    m = ToyStudent(cutoff=4.0).double()
    torch.save(
        {
            "format": "hessdistill.student",
            "student_config": m.config(),
            "dtype": "float64",
            "state_dict": m.state_dict(),
        },
        d / "model.pt",
    )
    return d, st, teacher


def test_student_and_teacher_through_same_protocols(setup):
    d, st, teacher = setup
    ref = teacher
    stu = run_evaluations(
        EvaluatedStudent(d / "model.pt"),
        st,
        d / "stu",
        labels=d / "l.h5",
        hessians=d / "h.h5",
        reference_teacher=ref,
        config=SMALL,
    )
    tea = run_evaluations(
        ref, st, d / "tea", labels=d / "l.h5", hessians=d / "h.h5", reference_teacher=ref, config=SMALL
    )
    for ev in ("test", "vibrations", "md", "relax", "speed"):
        for run in ("stu", "tea"):
            data = json.loads((d / run / f"{ev}.json").read_text())
            assert data["evaluation"] == ev
    assert tea["test"]["ref_force_mae_meV_A"] == pytest.approx(0.0, abs=1e-9)  # teacher vs its own labels
    assert tea["test"]["hessian_mae_meV_A2"] == pytest.approx(0.0, abs=1e-9)
    assert tea["vibrations"]["freq_mae_cm1"] == pytest.approx(0.0, abs=1e-3)
    assert tea["relax"]["rmsd_mean_A"] == pytest.approx(0.0, abs=1e-6)
    assert stu["test"]["ref_force_mae_meV_A"] > 1.0 and stu["test"]["hessian_mae_meV_A2"] > 1.0
    assert stu["speed"]["speedup_latency"] > 0
    assert stu["speed"]["kind"] == "student" and tea["test"]["kind"] == "teacher"


def test_vibrations_reuse_the_teachers_minima_and_refuse_another_protocol(setup, tmp_path, monkeypatch):
    """The teacher's relaxations and Hessians are made once (make_minima) and every model is compared at them: the
    result equals a vibrations evaluation that relaxes by itself, and the teacher is not called again."""
    from hessdistill.evaluation.vibrations import load_minima
    from hessdistill.jobs.minima import run as make_minima

    d, st, teacher = setup
    ref = teacher
    cfg = {"vibrations": {"n_structures": 2, "fmax": 1e-2}}
    meta = make_minima(ref, st, tmp_path / "minima.h5", config=cfg)
    records, made = load_minima(tmp_path / "minima.h5")
    assert len(records) == 2 and made == {k: meta[k] for k in made} and meta["n_failed"] == 0
    assert meta["split"] == "test" and meta["fmax"] == 1e-2 and meta["teacher_dtype"] == "float64"
    for rec in records:  # relaxed by the teacher: below fmax, and the stored Hessian is the teacher's there
        e, f = teacher.energy_forces(rec["atoms"])
        assert np.abs(f).max() < 1e-2 + 1e-9
        n = 3 * len(rec["atoms"])
        np.testing.assert_allclose(rec["hessian"], ref.hessian_rows(rec["atoms"], np.arange(n)), atol=1e-8)
    alone = run_evaluations(
        EvaluatedStudent(d / "model.pt"),
        st,
        tmp_path / "a",
        evaluations=["vibrations"],
        reference_teacher=ref,
        config=cfg,
    )["vibrations"]

    def no_teacher_calls(*a, **k):
        raise AssertionError("the teacher was asked for a Hessian although the minima carry it")

    monkeypatch.setattr(ref, "hessian_rows", no_teacher_calls)
    monkeypatch.setattr(ref, "hessian", no_teacher_calls)
    shared = run_evaluations(
        EvaluatedStudent(d / "model.pt"),
        st,
        tmp_path / "b",
        evaluations=["vibrations"],
        reference_teacher=ref,
        config=cfg,
        minima=tmp_path / "minima.h5",
    )["vibrations"]
    for key in ("freq_mae_cm1", "hessian_rel_error", "n_spurious_imaginary", "n_structures"):
        assert shared[key] == pytest.approx(alone[key], rel=1e-9, abs=1e-9), key
    tea = run_evaluations(
        ref,
        st,
        tmp_path / "t",
        evaluations=["vibrations"],
        reference_teacher=ref,
        config=cfg,
        minima=tmp_path / "minima.h5",
    )["vibrations"]
    assert tea["freq_mae_cm1"] == 0.0 and tea["n_spurious_imaginary"] == 0
    with pytest.raises(
        HessdistillError, match=r"minima\.h5 were made with another protocol \(fmax: 0\.01 there, 0\.001 here\)"
    ):
        run_evaluations(
            EvaluatedStudent(d / "model.pt"),
            st,
            tmp_path / "c",
            evaluations=["vibrations"],
            reference_teacher=ref,
            config={"vibrations": {"n_structures": 2, "fmax": 1e-3}},
            minima=tmp_path / "minima.h5",
        )
    with pytest.raises(HessdistillError, match="not a teacher-minima file"):
        load_minima(d / "l.h5")


def test_cli_makes_and_uses_minima(setup, tmp_path):
    d, st, _ = setup
    m = tmp_path / "m.h5"
    assert (
        main(
            [
                "--teacher",
                "torch:toy_models:morse",
                "--structures",
                str(st),
                "--out",
                str(tmp_path),
                "--make-minima",
                str(m),
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "--model",
                str(d / "model.pt"),
                "--structures",
                str(st),
                "--out",
                str(tmp_path / "o"),
                "--reference-teacher",
                "torch:toy_models:morse",
                "--evaluations",
                "vibrations",
                "--minima",
                str(m),
            ]
        )
        == 0
    )
    assert json.loads((tmp_path / "o" / "vibrations.json").read_text())["n_structures"] == 4
    from hessdistill.evaluation.vibrations import load_minima
    from hessdistill.jobs.minima import main as minima_main

    m2 = tmp_path / "m2.h5"
    assert minima_main(["--teacher", "torch:toy_models:morse", "--structures", str(st), "--out", str(m2)]) == 0
    assert load_minima(m2)[1] == load_minima(m)[1] | {"wall_s": load_minima(m2)[1]["wall_s"]}
    assert (
        main(["--model", str(d / "model.pt"), "--structures", str(st), "--out", str(tmp_path), "--make-minima", str(m)])
        == 2
    )


def test_cli_and_config_errors(setup, capsys):
    d, st, _ = setup
    assert (
        main(
            [
                "--teacher",
                "torch:toy_models:morse",
                "--structures",
                str(st),
                "--out",
                str(d / "cli"),
                "--evaluations",
                "test",
                "--labels",
                str(d / "l.h5"),
            ]
        )
        == 0
    )
    assert json.loads((d / "cli" / "test.json").read_text())["n_structures"] == 4
    assert (
        main(["--model", str(d / "model.pt"), "--structures", str(st), "--out", str(d / "x"), "--evaluations", "relax"])
        == 2
    )
    assert "reference teacher" in capsys.readouterr().err
    with pytest.raises(HessdistillError, match="unknown option"):
        merge_config({"md": {"stepz": 3}})


def test_auto_device_resolves_where_the_job_runs(setup):
    import torch

    d, _, teacher = setup
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert str(EvaluatedStudent(d / "model.pt", device="auto").device) == expected
    assert str(evaluated_model(teacher="torch:toy_models:morse", device="auto").device) == expected


def test_speed_times_the_teacher_in_the_students_dtype_and_records_the_device(setup, tmp_path):
    """A float32 student against a teacher that labels in float64: the teacher is timed in float32 (a like-for-like
    ratio, the teacher's fastest mode) and its labelling dtype is reported beside; every output says where it ran."""
    from toy_models import ToyStudent

    d, st, _ = setup
    torch.manual_seed(0)
    m = ToyStudent(cutoff=4.0).float()
    torch.save(
        {
            "format": "hessdistill.student",
            "student_config": m.config(),
            "dtype": "float32",
            "state_dict": m.state_dict(),
        },
        tmp_path / "model32.pt",
    )
    ref = evaluated_model(teacher="torch:toy_models:morse", dtype="float64")
    cfg = {"speed": SMALL["speed"]}
    res = run_evaluations(
        EvaluatedStudent(tmp_path / "model32.pt"),
        st,
        tmp_path / "s",
        evaluations=["speed"],
        reference_teacher=ref,
        config=cfg,
    )["speed"]
    assert res["student_dtype"] == "float32" and res["teacher_dtype"] == "float32"
    assert res["teacher_label_dtype"] == "float64"
    assert res["device"] == "cpu" and "gpu_name" in res and res["float32_matmul_precision"] == "highest"
    tea = run_evaluations(ref, st, tmp_path / "t", evaluations=["speed"], reference_teacher=ref, config=cfg)["speed"]
    assert tea["teacher_dtype"] == "float32" and tea["teacher_label_dtype"] == "float64"
    # a teacher given as an object, without a way to reload it, is timed as it is and says so
    fixed = run_evaluations(
        EvaluatedStudent(tmp_path / "model32.pt"),
        st,
        tmp_path / "f",
        evaluations=["speed"],
        reference_teacher=setup[2],
        config=cfg,
    )["speed"]
    assert fixed["teacher_dtype"] == "float64"


class _Named(dict):
    """Snakemake's named lists, as far as the jobs read them: items(), keys() and attribute access."""

    __getattr__ = dict.__getitem__


def _smk(params, wildcards, inputs, output):
    from types import SimpleNamespace

    return SimpleNamespace(
        params=SimpleNamespace(**params),
        wildcards=_Named(wildcards),
        input=_Named(inputs),
        output=[str(output)],
        threads=1,
    )


def test_snakemake_jobs_write_the_identity_of_each_evaluation(setup, tmp_path, capsys):
    """The rules' jobs: the minima once for the teacher, then a student run and the teacher pseudo-run, each JSON
    with its {subset, teacher, run} (run null for the teacher)."""
    from hessdistill.jobs import evaluate, minima

    d, st, _ = setup
    spec = {"model": "torch:toy_models:morse", "options": {}, "vjp_method": "auto"}
    vib = {"n_structures": 1, "fmax": 1e-2, "max_steps": 1000, "molecules_only": False}
    meta = minima.snakemake_job(
        _smk(
            {"minima": {"split": "test", "protocol": vib, "teacher_dtype": "float64", "reference_teacher": spec}},
            {"subset": "s", "teacher": "morse"},
            {"structures": str(st)},
            tmp_path / "minima.h5",
        )
    )
    assert meta["teacher_dtype"] == "float64" and (tmp_path / "minima.h5").exists()
    inputs = {
        "structures": str(st),
        "labels": str(d / "l.h5"),
        "hessians": str(d / "h.h5"),
        "minima": str(tmp_path / "minima.h5"),
    }
    for ev, protocol in (("test", {}), ("vibrations", {"n_structures": 1, "fmax": 1e-2})):
        params = {
            "evaluation": {
                "evaluation": ev,
                "split": "test",
                "protocol": protocol,
                "teacher_dtype": "float64",
                "reference_teacher": spec,
            }
        }
        stu = evaluate.snakemake_job(
            _smk(
                params,
                {"subset": "s", "teacher": "morse", "run": "r", "evaluation": ev},
                {**inputs, "model": str(d / "model.pt")},
                tmp_path / "r" / f"{ev}.json",
            )
        )
        tea = evaluate.snakemake_job(
            _smk(params, {"subset": "s", "teacher": "morse", "evaluation": ev}, inputs, tmp_path / "t" / f"{ev}.json"),
            device="cpu",
        )
        written = json.loads((tmp_path / "r" / f"{ev}.json").read_text())
        assert written["identity"] == stu["identity"] == {"subset": "s", "teacher": "morse", "run": "r"}
        assert tea["identity"] == {"subset": "s", "teacher": "morse", "run": None} and tea["kind"] == "teacher"
        assert stu["kind"] == "student" and stu["device"] == "cpu"
    assert tea["freq_mae_cm1"] == 0.0  # the teacher at its own minima
    assert '"evaluation": "vibrations"' in capsys.readouterr().out
    with pytest.raises(HessdistillError, match="identity has unknown key"):
        run_evaluations(
            EvaluatedStudent(d / "model.pt"),
            st,
            tmp_path / "x",
            evaluations=["test"],
            identity={"subset": "s", "student": "r"},
        )


def test_teachers_and_students_meet_the_evaluated_model_contract(setup):
    from hessdistill.core.model import EvaluatedModel, check_model, validate_outputs

    d, st, teacher = setup
    water = molecule("H2O")
    for model in (teacher, EvaluatedStudent(d / "model.pt")):
        assert isinstance(model, EvaluatedModel)
        out = check_model(model, water, rows=[0, 4], structure="H2O")
        assert out["hessian_rows"].shape == (2, 9)
        np.testing.assert_allclose(model.hessian(water)[[0, 4]], out["hessian_rows"], atol=1e-10)
        assert model.calculator() is model.calculator() and (model.n_params is None or model.n_params >= 0)
    with pytest.raises(HessdistillError, match=r"structure 7: model 'm': forces must have shape \(3, 3\)"):
        validate_outputs(3, energy=1.0, forces=np.zeros((2, 3)), structure=7, model="m")
    with pytest.raises(HessdistillError, match="Hessian has 1 non-finite"):
        validate_outputs(1, hessian=np.array([[0, 0, 0], [0, np.nan, 0], [0, 0, 0]]))
    with pytest.raises(HessdistillError, match="is not an EvaluatedModel"):
        check_model(object(), water)
