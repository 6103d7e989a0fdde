"""Relaxation protocol as the paper's: unperturbed starts (perturb 0) and final geometries re-scored by a
reference calculator (here GFN2-xTB through tblite, the test stand-in for DFT)."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms
from ase.build import molecule
from ase.calculators.calculator import Calculator, all_changes
from ase.calculators.lj import LennardJones

from hessdistill.core.errors import TeacherError
from hessdistill.evaluation.relax import reference_score, relax_comparison
from hessdistill.teachers.reference import REFERENCE_KEY, reference_calculator

GFN2 = {"model": "ase:tblite.ase:TBLite", "options": {"method": "GFN2-xTB", "verbosity": 0}}
GFN1 = {"model": "ase:tblite.ase:TBLite", "options": {"method": "GFN1-xTB", "verbosity": 0}}


class Recording(Calculator):
    """LJ that remembers the first positions it was asked about."""

    implemented_properties = ["energy", "free_energy", "forces"]

    def __init__(self):
        super().__init__()
        self.lj = LennardJones(sigma=1.0, epsilon=1.0, rc=10.0)
        self.first = None

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        if self.first is None:
            self.first = self.atoms.get_positions().copy()
        a = self.atoms.copy()
        a.calc = self.lj
        self.results = {
            "energy": a.get_potential_energy(),
            "free_energy": a.get_potential_energy(),
            "forces": a.get_forces(),
        }


def _trimer():
    return Atoms("Ar3", positions=[[0, 0, 0], [1.2, 0, 0], [0.5, 1.0, 0.1]])


@pytest.mark.parametrize("perturb", [0.0, 0.05])
def test_perturb_zero_starts_from_the_test_structure_itself(perturb):
    model, teacher = Recording(), Recording()
    start = _trimer()
    relax_comparison([start], model, teacher, fmax=1e-3, max_steps=500, perturb=perturb, seed=1)
    for calc in (model, teacher):
        gap = np.abs(calc.first - start.get_positions()).max()
        assert (gap == 0.0) if perturb == 0 else (gap > 1e-3)
    assert np.array_equal(model.first, teacher.first)  # both relax from the same start


def test_reference_calculator_names_and_errors():
    pytest.importorskip("tblite")
    rc = reference_calculator(GFN2)
    md = rc.metadata()
    assert md["name"] == "ase:tblite.ase:TBLite" and md["options"]["method"] == "GFN2-xTB"
    assert md["version"] not in ("", "unknown")
    assert type(rc.calc).__name__ == "TBLite"  # the plain ASE calculator, no finite-difference wrapper
    # a bare name works too; a non-ase name is a teacher wrapped as a calculator
    torch_rc = reference_calculator("torch:toy_models:morse")
    assert type(torch_rc.calc).__name__ == "TeacherCalculator" and torch_rc.name == "torch:toy_models:morse"
    for bad, what in [
        ({"model": "ase:no_such_pkg.sub:Calc"}, "cannot import"),
        ({"model": "dft"}, "unknown"),
        ({"model": "ase:ase.calculators.emt:Nope"}, "no calculator class"),
        ({"model": "ase:tblite.ase"}, "incomplete"),
        ({"modle": "chgnet"}, "expected"),
        ({"model": "mace:/no/such/file.model"}, "cannot load"),
    ]:
        with pytest.raises(TeacherError, match=what) as info:
            reference_calculator(bad)
        assert REFERENCE_KEY in str(info.value) and "fix:" in str(info.value)


def test_relaxation_rescored_by_the_reference():
    pytest.importorskip("tblite")
    ref = reference_calculator(GFN2)
    model = reference_calculator(GFN1).calc  # a "model" that is not the reference
    water, ethanol = molecule("H2O"), molecule("CH3CH2OH")
    res = relax_comparison(
        [water, ethanol],
        model,
        ref.calc,
        fmax=0.05,
        max_steps=300,
        perturb=0.0,
        reference_calc=ref.calc,
        reference_info=ref.metadata(),
    )
    assert res["reference_calculator"]["options"]["method"] == "GFN2-xTB"
    assert res["model_success_rate"] == 1.0 and res["teacher_success_rate"] == 1.0
    for rec, a in zip(res["structures"], (water, ethanol)):
        # the teacher is the reference here: at its own minimum the reference forces are below fmax
        assert rec["teacher_ref_fmax_eV_A"] <= 0.05 and rec["teacher_ref_error"] is None
        assert rec["teacher_ref_fmean_eV_A"] <= rec["teacher_ref_fmax_eV_A"]
        # the GFN1 minimum is not the GFN2 one: higher on the reference surface, with forces left
        assert rec["model_ref_energy_eV"] > rec["teacher_ref_energy_eV"]
        assert rec["model_ref_fmax_eV_A"] > 0.05
        assert rec["model_ref_energy_eV_atom"] == pytest.approx(rec["model_ref_energy_eV"] / len(a))
        # the teacher is the reference: its re-scoring equals the teacher's own (to the SCF tolerance)
        assert rec["energy_error_meV_atom"] == pytest.approx(
            1000 * (rec["model_ref_energy_eV"] - rec["teacher_ref_energy_eV"]) / len(a), abs=1e-3
        )
    assert res["model_ref_energy_mean_n"] == 2 and res["model_ref_fmean_se_eV_A"] is not None
    assert res["model_ref_fmean_eV_A"] == pytest.approx(np.mean([r["model_ref_fmean_eV_A"] for r in res["structures"]]))
    assert res["teacher_ref_fmax_mean_eV_A"] <= 0.05
    # without a reference nothing of it is recorded
    plain = relax_comparison([water], model, ref.calc, perturb=0.0)
    assert "reference_calculator" not in plain and "model_ref_energy_eV" not in plain["structures"][0]


def test_reference_score_never_raises():
    bad = molecule("H2O")
    bad.positions[0, 0] = np.nan
    assert reference_score(bad, LennardJones())["error"] == "non-finite positions"

    class Fails(Calculator):
        implemented_properties = ["energy", "forces"]

        def calculate(self, *a, **k):
            raise RuntimeError("SCF did not converge")

    out = reference_score(molecule("H2O"), Fails())
    assert out["energy_eV"] is None and "SCF" in out["error"]


def test_relax_job_records_the_reference(tmp_path):
    pytest.importorskip("tblite")
    from hessdistill.data.store import write_structures
    from hessdistill.evaluation.protocols import merge_config
    from hessdistill.jobs.evaluate import run_evaluations
    from hessdistill.teachers import load_teacher

    assert merge_config(None)["relax"]["reference_calculator"] is None
    from ase.calculators.singlepoint import SinglePointCalculator

    water = molecule("H2O")
    water.calc = SinglePointCalculator(water, energy=0.0, forces=np.zeros((3, 3)))
    st = write_structures(tmp_path / "s.h5", {"test": [water]})
    teacher = load_teacher("ase:tblite.ase:TBLite", method="GFN1-xTB", verbosity=0)
    cfg = {"relax": {"n_structures": 1, "perturb": 0, "reference_calculator": GFN2}}
    res = run_evaluations(teacher, st, tmp_path / "t", evaluations=["relax"], reference_teacher=teacher, config=cfg)[
        "relax"
    ]
    assert res["protocol"]["reference_calculator"] == GFN2 and res["perturb_A"] == 0.0
    assert res["reference_calculator"]["name"] == "ase:tblite.ase:TBLite"
    assert res["structures"][0]["model_ref_energy_eV"] is not None
    assert "teacher_ref_energy_eV" not in res["structures"][0]  # the teacher's geometry: its own job re-scores it
    assert (tmp_path / "t" / "relax.json").exists()
    bad = {"relax": {"n_structures": 1, "reference_calculator": {"model": "ase:no_such_pkg:X"}}}
    with pytest.raises(TeacherError, match="reference_calculator"):
        run_evaluations(teacher, st, tmp_path / "b", evaluations=["relax"], reference_teacher=teacher, config=bad)


def test_workflow_config_accepts_and_checks_the_reference_calculator():
    from pathlib import Path

    import yaml

    from hessdistill.workflow.config_check import ConfigError, check_workflow_config

    root = Path(__file__).resolve().parents[1]
    schema = root / "schemas" / "config.schema.yaml"

    def problems(relax, md=None):
        cfg = yaml.safe_load((root / "configs" / "ci-tiny.yaml").read_text())
        cfg.setdefault("evaluation", {}).setdefault("protocol", {})["relax"] = relax
        if md is not None:
            cfg["evaluation"]["protocol"]["md"] = md
        try:
            check_workflow_config(cfg, schema)
        except ConfigError as exc:
            return str(exc)
        return ""

    assert problems({"perturb": 0, "reference_calculator": GFN2}, {"check_every": 10, "log_every": 10}) == ""
    assert problems({"reference_calculator": None}) == ""
    msg = problems({"reference_calculator": {"model": "dft:vasp"}})
    assert "evaluation.protocol.relax.reference_calculator.model" in msg and "unknown teacher" in msg
    assert "evaluation.protocol.relax.reference_calculator" in problems({"reference_calculator": {"options": {}}})
    assert "check_every" in problems({}, {"check_every": 0})


def _relax_json(energies, forces, converged=None, reference=True):
    converged = converged or [True] * len(energies)
    structs = [
        {
            "index": i,
            "model_converged": c,
            "teacher_converged": True,
            "model_ref_energy_eV_atom": e,
            "model_ref_fmean_eV_A": f,
        }
        for i, (e, f, c) in enumerate(zip(energies, forces, converged))
    ]
    d = {"evaluation": "relax", "model_success_rate": float(np.mean(converged)), "structures": structs}
    if reference:
        d["reference_calculator"] = {
            "name": "ase:tblite.ase:TBLite",
            "options": {"method": "GFN2-xTB"},
            "version": "0.8.0",
        }
    return d


def test_report_tabulates_the_reference_energy_against_the_undistilled_run(tmp_path):
    import json

    from hessdistill.reporting import collect, relax_reference_table, write_report

    files = []

    def put(run, relax, method=None, arch="painn", n_params=1000):
        base = tmp_path / "res" / "spice" / ("teachers/mace" if run == "teacher" else f"runs/mace/{run}")
        (base / "eval").mkdir(parents=True)
        (base / "eval" / "relax.json").write_text(json.dumps(relax))
        files.append(base / "eval" / "relax.json")
        if method:
            (base / "summary.json").write_text(
                json.dumps({"method": method, "n_params": n_params, "student": {"arch": arch}})
            )
            files.append(base / "summary.json")

    put("teacher", _relax_json([-5.0, -6.0], [0.001, 0.002]))
    put("und", _relax_json([-4.0, -5.0, -7.0], [0.010, 0.020, 0.030]), "undistilled")
    put("hess", _relax_json([-4.002, -5.004, -7.1], [0.004, 0.006, 0.0], [True, True, False]), "hessian")
    put("und-big", _relax_json([-3.0, -3.0, -3.0], [0.0, 0.0, 0.0]), "undistilled", n_params=5000)
    put("hess-gemnet", _relax_json([-4.0, -5.0], [0.01, 0.01]), "hessian", arch="gemnet")
    records = collect(files)
    t = relax_reference_table(records)
    rows = {r[2]: r for r in t.rows}
    raw = {v[2]: v for v in t.raw}
    # hess vs und (same arch and size): -2 and -4 meV/atom over the two structures both converged
    assert raw["hess"][5] == "und" and raw["hess"][6] == pytest.approx(-3.0)
    assert rows["hess"][6].endswith("(2)")
    assert raw["hess"][7] == pytest.approx(5.0)  # meV/Å over its converged structures
    assert raw["und"][6] == pytest.approx(0.0) and raw["und-big"][5] == "und-big"
    assert raw["hess-gemnet"][5] is None and rows["hess-gemnet"][6] == "-"  # no undistilled gemnet
    assert raw["Teacher (mace)"][5] is None and raw["Teacher (mace)"][7] == pytest.approx(1.5)
    out = write_report(files, tmp_path / "report", figures=False)
    assert out["records"] == 5
    text = (tmp_path / "report" / "table_dynamics.md").read_text()
    assert "re-scored by the reference calculator" in text and "ase:tblite.ase:TBLite" in text
    # without a reference calculator in any relax.json there is no such table
    plain = [r for r in records]
    for r in plain:
        r.evals["relax"].pop("reference_calculator")
    assert relax_reference_table(plain) is None
