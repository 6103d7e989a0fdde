"""The disagreement evaluation: two students trained on the same data disagree where one extrapolates.

Students here are untrained toy students (tests/toy_models.py) with different seeds: different, smooth force
fields; a partner that is the same checkpoint must disagree by exactly nothing and flag no frame."""

import json

import ase.io
import numpy as np
import pytest
import torch
from ase.build import molecule

from hessdistill.core.errors import HessdistillError
from hessdistill.evaluation.disagreement import (
    FLAGGED_NAME,
    disagreement_suite,
    force_disagreement,
    protocol_problems,
    read_flagged,
    resolve_threshold,
)
from hessdistill.evaluation.protocols import DEFAULTS
from hessdistill.jobs.evaluate import default_evaluations, run_evaluations
from hessdistill.students.evaluated import EvaluatedStudent
from hessdistill.students.registry import STUDENTS

STUDENTS.setdefault("toy", ("toy_models", "ToyStudent"))

SMALL = {"disagreement": {"n_structures": 2, "steps": 20, "every": 5, "temperature_K": 300.0}}


def _save_student(path, seed, **kw):
    from toy_models import ToyStudent

    torch.manual_seed(seed)
    m = ToyStudent(cutoff=4.0, **kw).double()
    torch.save(
        {
            "format": "hessdistill.student",
            "student_config": m.config(),
            "dtype": "float64",
            "state_dict": m.state_dict(),
        },
        path,
    )
    return path


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from hessdistill.data.store import write_structures

    d = tmp_path_factory.mktemp("dis")
    rng = np.random.default_rng(0)
    mols = []
    for i in range(4):
        a = molecule(["H2O", "CH4"][i % 2])
        a.positions += rng.normal(scale=0.03, size=a.positions.shape)
        mols.append(a)
    st = write_structures(d / "s.h5", {"test": mols}, require_labels=False)
    return d, st, _save_student(d / "a.pt", 0), _save_student(d / "b.pt", 1), mols


def test_force_disagreement_by_hand():
    f = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    rec = force_disagreement(f, {"p": f + [[0.0, 3.0, 4.0], [0.0, 0.0, 0.0]], "q": f})
    assert rec["max_atom_eV_A"] == pytest.approx(5.0) and rec["partner"] == "p"
    assert rec["rms_eV_A"] == pytest.approx(np.sqrt(25.0 / 2))
    assert rec["student_rms_eV_A"] == pytest.approx(np.sqrt(1.0 / 2))
    assert rec["relative"] == pytest.approx(5.0)
    assert rec["per_partner"] == {"p": pytest.approx(5.0), "q": 0.0}
    assert force_disagreement(np.zeros((2, 3)), {"p": np.zeros((2, 3))})["relative"] is None
    with pytest.raises(ValueError, match="shape"):
        force_disagreement(f, {"p": np.zeros((3, 3))})


def test_threshold_auto_is_three_times_the_test_95th_percentile():
    recs = [{"max_atom_eV_A": x} for x in np.linspace(0.0, 1.0, 101)]
    thr, how = resolve_threshold("auto", recs, 3.0)
    assert thr == pytest.approx(3.0 * 0.95) and how.startswith("auto")
    assert resolve_threshold(0.2, recs) == (0.2, "given")
    with pytest.raises(ValueError, match="threshold_eV_A"):
        resolve_threshold("high", recs)
    assert protocol_problems(DEFAULTS["disagreement"]) == []
    problems = protocol_problems({"ensemble": "npt", "threshold_eV_A": -1, "threshold_factor": 0, "every": 0})
    assert len(problems) == 4 and "ensemble" in problems[0] and "threshold_eV_A" in problems[1]


def test_different_students_disagree_and_flag_frames(setup, tmp_path):
    d, st, a, b, mols = setup
    res = run_evaluations(
        EvaluatedStudent(a),
        st,
        tmp_path,
        evaluations=["disagreement"],
        config={"disagreement": {**SMALL["disagreement"], "threshold_eV_A": 0.0}},
        identity={"subset": "s", "teacher": "t", "run": "distilled"},
        partners={"undistilled": b},
    )["disagreement"]
    data = json.loads((tmp_path / "disagreement.json").read_text())
    assert data["identity"] == {"subset": "s", "teacher": "t", "run": "distilled"}
    assert data["partners"] == ["undistilled"] and data["kind"] == "student"
    assert res["md_mean_eV_A"] > 0 and res["test_mean_eV_A"] > 0 and res["ratio_mean"] > 0
    assert res["n_test_structures"] == 4 and res["n_md_structures"] == 2
    # 20 steps checked every 5: frames at 0, 5, 10, 15, 20 per start structure
    assert [f["step"] for f in res["runs"][0]["frames"]] == [0, 5, 10, 15, 20]
    assert res["md_n_frames"] == 10 and not res["n_stopped"]
    # threshold 0: every frame with a non-zero disagreement is flagged, and the file holds exactly them
    assert res["n_flagged"] == 10 == sum(f["flagged"] for r in res["runs"] for f in r["frames"])
    assert res["md_fraction_above_threshold"] == 1.0
    frames = ase.io.read(tmp_path / FLAGGED_NAME, index=":", format="extxyz")
    assert len(frames) == res["n_flagged"] == len(read_flagged(tmp_path / FLAGGED_NAME))
    first = frames[0]
    assert first.info["run"] == "distilled" and first.info["partner"] == "undistilled"
    assert first.info["structure"] == 0 and first.info["step"] == 0
    assert first.info["disagreement_eV_A"] == pytest.approx(res["runs"][0]["frames"][0]["max_atom_eV_A"])
    np.testing.assert_array_equal(first.numbers, mols[0].numbers)
    assert not first.pbc.any()
    # the JSON's per-frame numbers are the forces of the two students at the stored frame
    fa = EvaluatedStudent(a).energy_forces(first)[1]
    fb = EvaluatedStudent(b).energy_forces(first)[1]
    assert first.info["disagreement_eV_A"] == pytest.approx(np.linalg.norm(fa - fb, axis=1).max(), rel=1e-6)


def test_the_report_shows_disagreement_ratio_and_flagged_frames(setup, tmp_path):
    """The evaluation's JSON, as written, in the report: a table beside the dynamics one and summary.csv columns."""
    import csv

    from hessdistill.reporting import write_report

    d, st, a, b, mols = setup
    ev = tmp_path / "results" / "s" / "runs" / "t" / "distilled" / "eval"
    res = run_evaluations(
        EvaluatedStudent(a),
        st,
        ev,
        evaluations=["disagreement"],
        config={"disagreement": {**SMALL["disagreement"], "threshold_eV_A": 0.0}},
        identity={"subset": "s", "teacher": "t", "run": "distilled"},
        partners={"undistilled": b},
    )["disagreement"]
    out = tmp_path / "report"
    write_report([ev / "disagreement.json"], out, figures=False)
    md = (out / "table_dynamics.md").read_text()
    assert "Committee disagreement" in md and "| s | t | distilled | undistilled |" in md
    assert f"| {res['n_flagged']}/{res['md_n_frames']} |" in md
    row = next(csv.DictReader((out / "summary.csv").open()))
    assert float(row["disagreement_ratio"]) == pytest.approx(res["ratio_mean"])
    assert float(row["disagreement_md_eV_A"]) == pytest.approx(res["md_mean_eV_A"])
    assert int(row["n_flagged_frames"]) == res["n_flagged"] == 10
    assert "Committee disagreement" in (out / "summary.md").read_text()


def test_an_identical_partner_disagrees_by_nothing(setup, tmp_path):
    d, st, a, b, mols = setup
    res = run_evaluations(
        EvaluatedStudent(a),
        st,
        tmp_path,
        evaluations=["disagreement"],
        config=SMALL,
        partners={"same": a},
    )["disagreement"]
    assert res["md_max_eV_A"] == 0.0 and res["test_max_eV_A"] == 0.0
    assert res["threshold_eV_A"] == 0.0 and res["n_flagged"] == 0 and res["ratio_mean"] is None
    assert (tmp_path / FLAGGED_NAME).read_text() == ""  # always written; empty without flagged frames
    assert read_flagged(tmp_path / FLAGGED_NAME) == []


def test_langevins_centre_of_mass_constraint_does_not_count_as_disagreement(tmp_path):
    """A direct-force student's forces need not sum to zero; Langevin MD removes their mean (FixCom) from the forces
    it integrates, but the comparison is of the models' own forces: against itself the disagreement stays 0."""
    path = _save_student(tmp_path / "direct.pt", 3, direct_forces=True)
    water = molecule("H2O")
    f = EvaluatedStudent(path).energy_forces(water)[1]
    assert np.abs(f.sum(axis=0)).max() > 1e-3  # a net force, which FixCom would remove
    calc, same = EvaluatedStudent(path).calculator(), EvaluatedStudent(path).calculator()
    res = disagreement_suite([water], [water], calc, {"same": same}, steps=10, every=5, ensemble="nvt")
    assert res["md_n_frames"] == 3 and res["md_max_eV_A"] == 0.0 and res["n_flagged"] == 0


def test_auto_threshold_and_committee_of_two(setup, tmp_path):
    """Two partners: the disagreement is the larger of the two; the auto threshold follows the test structures."""
    d, st, a, b, mols = setup
    c = _save_student(tmp_path / "c.pt", 2)
    calc = EvaluatedStudent(a).calculator()
    partners = {"b": EvaluatedStudent(b).calculator(), "c": EvaluatedStudent(c).calculator()}
    res = disagreement_suite(
        mols[:1], mols, calc, partners, flagged_path=tmp_path / "f.extxyz", steps=10, every=5, run_name="a"
    )
    assert res["partners"] == ["b", "c"]
    assert res["threshold_eV_A"] == pytest.approx(
        3.0 * np.percentile([t["max_atom_eV_A"] for t in res["test_structures"]], 95)
    )
    for t in res["test_structures"]:
        assert t["max_atom_eV_A"] == max(t["per_partner"].values())
    assert len(read_flagged(tmp_path / "f.extxyz")) == res["n_flagged"]
    assert set(res["per_partner"]) == {"b", "c"}


def test_no_partner_is_an_error_and_the_default_evaluations_leave_it_out(setup, tmp_path):
    d, st, a, b, mols = setup
    model = EvaluatedStudent(a)
    with pytest.raises(HessdistillError, match="partners"):
        run_evaluations(model, st, tmp_path / "x", evaluations=["disagreement"], config=SMALL)
    assert not (tmp_path / "x" / "disagreement.json").exists() and not (tmp_path / "x" / FLAGGED_NAME).exists()
    assert "disagreement" not in default_evaluations(model)
    assert "disagreement" in default_evaluations(model, {"b": b})
    with pytest.raises(HessdistillError, match="threshold_eV_A"):
        run_evaluations(
            model,
            st,
            tmp_path / "y",
            evaluations=["disagreement"],
            config={"disagreement": {"threshold_eV_A": "sometimes"}},
            partners={"b": b},
        )


def test_the_rules_job_reads_the_partners_in_the_order_of_their_names(setup, tmp_path):
    """rule evaluate_run_disagreement: params.evaluation.partners names the models of input.partners, in order."""
    from types import SimpleNamespace

    from hessdistill.jobs import evaluate

    class Named(dict):
        __getattr__ = dict.__getitem__

    d, st, a, b, mols = setup
    params = {"evaluation": "disagreement", "split": "test", "protocol": SMALL["disagreement"], "partners": ["same"]}
    smk = SimpleNamespace(
        params=SimpleNamespace(evaluation=params),
        wildcards=Named(subset="s", teacher="t", run="r"),
        input=Named(model=str(a), partners=[str(a)], structures=str(st)),
        output=[str(tmp_path / "eval" / "disagreement.json"), str(tmp_path / "eval" / FLAGGED_NAME)],
        threads=1,
    )
    res = evaluate.snakemake_job(smk, device="cpu")
    assert res["partners"] == ["same"] and res["md_max_eV_A"] == 0.0 and res["identity"]["run"] == "r"
    assert read_flagged(tmp_path / "eval" / FLAGGED_NAME) == []
    smk.params.evaluation = {**params, "partners": ["same", "other"]}
    with pytest.raises(HessdistillError, match="2 partner names"):
        evaluate.snakemake_job(smk, device="cpu")


def test_the_command_line_takes_partners_as_run_equals_model(setup, tmp_path, capsys):
    import yaml

    from hessdistill.jobs.evaluate import main

    d, st, a, b, mols = setup
    cfg = tmp_path / "eval.yaml"
    cfg.write_text(yaml.safe_dump(SMALL))
    common = ["--model", str(a), "--structures", str(st), "--config", str(cfg), "--evaluations", "disagreement"]
    assert main([*common, "--out", str(tmp_path / "e"), "--partners", f"undistilled={b}"]) == 0
    data = json.loads((tmp_path / "e" / "disagreement.json").read_text())
    assert data["partners"] == ["undistilled"] and data["md_mean_eV_A"] > 0
    assert len(read_flagged(tmp_path / "e" / FLAGGED_NAME)) == data["n_flagged"]
    assert main([*common, "--out", str(tmp_path / "f"), "--partners", str(b)]) == 2
    assert "write each as RUN=path/to/model.pt" in capsys.readouterr().err
    assert main([*common, "--out", str(tmp_path / "g")]) == 2  # no partner: the error names the fix
    assert "fix: add another run" in capsys.readouterr().err and not (tmp_path / "g" / FLAGGED_NAME).exists()


def test_flagged_periodic_frames_keep_cell_and_pbc(setup, tmp_path):
    from ase.build import bulk

    d, st, a, b, mols = setup
    cu = bulk("Cu", "fcc", a=3.6, cubic=True)
    cu.rattle(0.05, seed=1)
    calc, other = EvaluatedStudent(a).calculator(), EvaluatedStudent(b).calculator()
    res = disagreement_suite(
        [cu], [cu], calc, {"b": other}, threshold=0.0, flagged_path=tmp_path / "f.extxyz", steps=4, every=2
    )
    frames = read_flagged(tmp_path / "f.extxyz")
    assert res["n_flagged"] == len(frames) == 3 and res["runs"][0]["periodic"]
    for fr, rec in zip(frames, res["runs"][0]["frames"]):
        assert fr.pbc.all() and np.allclose(fr.cell, cu.cell) and fr.info["step"] == rec["step"]
        assert fr.info["disagreement_eV_A"] == pytest.approx(rec["max_atom_eV_A"])
