"""Source -> subset -> split -> store in one job."""

import json

import numpy as np
import pytest
import yaml
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator

from hessdistill.core.errors import HessdistillError, StructureError
from hessdistill.data.formats import read_extxyz, write_extxyz
from hessdistill.data.store import StructureStore
from hessdistill.jobs.prepare import main, prepare_subset


def make_xyz(path, n=24, seed=0):
    rng = np.random.default_rng(seed)
    frames = []
    for i in range(n):
        el = ["Cu", "Al", "Ni"][i % 3]
        a = bulk(el, "fcc", a={"Cu": 3.6, "Al": 4.05, "Ni": 3.52}[el], cubic=True)
        if i % 4 == 0:
            a = a.repeat((2, 1, 1))
        a.positions += rng.normal(scale=0.05, size=a.positions.shape)
        a.calc = EMT()
        e, f = a.get_potential_energy(), a.get_forces()
        a.calc = SinglePointCalculator(a, energy=e, forces=f)
        a.info["config_type"] = f"group{i % 2}"
        a.info["material"] = f"{el}-{i // 6}"
        frames.append(a)
    write_extxyz(path, frames)
    return path


def spec_for(path, **split):
    return {
        "source": {"name": "generic", "path": str(path)},
        "selectors": [{"exclude_elements": ["Ni"]}, {"max_atoms": 4}],
        "split": {"fractions": {"train": 0.5, "val": 0.25, "test": 0.25}, "seed": 3, **split},
    }


def test_prepare_counts_splits_and_determinism(tmp_path):
    xyz = make_xyz(tmp_path / "d.xyz")
    rep = prepare_subset(spec_for(xyz, group_by="material"), tmp_path / "a.h5")
    sel = rep["selection"]["source"]
    assert sel["n_input"] == 24
    assert [s["kept"] for s in sel["selectors"]] == [16, 12]  # Ni out, then the 8-atom cells out
    assert sum(rep["splits"].values()) == 12
    prepare_subset(spec_for(xyz, group_by="material"), tmp_path / "b.h5")
    assert (tmp_path / "a.h5").read_bytes() == (tmp_path / "b.h5").read_bytes()
    with StructureStore(tmp_path / "a.h5") as st:
        owner = {}
        for split in st.splits:
            for i in range(st.n_structures(split)):
                a = st.atoms(split, i)
                assert "Ni" not in a.get_chemical_symbols() and len(a) <= 4
                assert owner.setdefault(a.info["material"], split) == split
        assert json.loads(st.attrs["subset_spec"])["split"]["seed"] == 3
    prepare_subset(spec_for(xyz, seed=4), tmp_path / "c.h5")
    assert (tmp_path / "c.h5").read_bytes() != (tmp_path / "a.h5").read_bytes()


def test_test_source_and_carving(tmp_path):
    xyz = make_xyz(tmp_path / "d.xyz")
    test = make_xyz(tmp_path / "t.xyz", n=6, seed=1)
    spec = spec_for(xyz)
    spec["split"] = {"fractions": {"train": 0.75, "val": 0.25}, "seed": 0}
    spec["test_source"] = {"name": "generic", "path": str(test)}
    rep = prepare_subset(spec, tmp_path / "s.h5")
    assert rep["splits"] == {"train": 9, "val": 3, "test": 2}  # Ni and 8-atom frames removed from the test file too
    spec = spec_for(xyz)
    spec["split"] = {"fractions": {"train": 0.75, "val": 0.25}, "seed": 0, "carve_test_from_train": True}
    rep = prepare_subset(spec, tmp_path / "m.h5")
    assert rep["splits"] == {"train": 6, "val": 3, "test": 3}


def test_errors_name_the_problem(tmp_path, capsys):
    xyz = make_xyz(tmp_path / "d.xyz")
    spec = spec_for(xyz)
    spec["selectors"].append({"contains_elements": ["Y"]})
    with pytest.raises(HessdistillError, match=r"selectors\[2\]"):
        prepare_subset(spec, tmp_path / "x.h5")
    assert not (tmp_path / "x.h5").exists()
    bad = spec_for(xyz)
    bad["split"]["sed"] = 1
    with pytest.raises(HessdistillError, match="unknown key.*sed"):
        prepare_subset(bad, tmp_path / "x.h5")
    nos = spec_for(xyz)
    del nos["split"]["seed"]
    with pytest.raises(HessdistillError, match="seed"):
        prepare_subset(nos, tmp_path / "x.h5")
    missing = spec_for(tmp_path / "nope.xyz")
    with pytest.raises(HessdistillError, match="does not exist"):
        prepare_subset(missing, tmp_path / "x.h5")
    typo = spec_for(xyz)
    typo["selectors"] = [{"max_atom": 3}]
    with pytest.raises(HessdistillError, match="max_atom"):
        prepare_subset(typo, tmp_path / "x.h5")
    # the CLI reports the same errors on stderr with exit code 2
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    assert main([str(tmp_path / "spec.yaml"), "--out", str(tmp_path / "x.h5")]) == 2
    assert "contains_elements" in capsys.readouterr().err


def test_overlapping_atoms_name_the_structure_and_a_selector_that_drops_it(tmp_path):
    xyz = make_xyz(tmp_path / "d.xyz")
    frames = read_extxyz(xyz)
    bad = frames[1]  # Al, 4 atoms: passes the selectors
    bad.positions[1] = bad.positions[0] + [0.1, 0.0, 0.0]
    bad.calc = SinglePointCalculator(bad, energy=bad.calc.results["energy"], forces=bad.calc.results["forces"])
    write_extxyz(xyz, frames)
    spec = spec_for(xyz)
    with pytest.raises(StructureError, match=r"atoms 0 and 1 are 0\.100 Å apart") as err:
        prepare_subset(spec, tmp_path / "s.h5")
    msg = str(err.value)
    assert "s.h5" in msg and "structure_id 'd:1'" in msg and "of split" in msg, msg
    assert not (tmp_path / "s.h5").exists()
    selector = json.loads(msg.split("e.g. ", 1)[1].split(" in the subset", 1)[0])  # the fix, applied as written
    spec["selectors"].append(selector)
    assert sum(prepare_subset(spec, tmp_path / "s.h5")["splits"].values()) == 11


def test_cli_writes_report(tmp_path, capsys):
    make_xyz(tmp_path / "d.xyz")
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec_for("d.xyz")))  # relative to the spec file
    assert (
        main([str(tmp_path / "spec.yaml"), "--out", str(tmp_path / "o.h5"), "--report", str(tmp_path / "r.json")]) == 0
    )
    rep = json.loads((tmp_path / "r.json").read_text())
    assert rep["selection"]["source"]["n_selected"] == 12
    assert "kept 12 of 16" in capsys.readouterr().out


def test_run_and_snakemake_job_build_the_same_store(tmp_path):
    """run (a spec mapping or file, optional report file) and the workflow rule's snakemake_job give the same store
    as prepare_subset."""
    from types import SimpleNamespace

    from hessdistill.jobs.prepare import run, snakemake_job

    make_xyz(tmp_path / "d.xyz")
    spec = spec_for("d.xyz")
    ref = prepare_subset(spec, tmp_path / "ref.h5", base_dir=tmp_path)
    (tmp_path / "spec.json").write_text(json.dumps(spec))  # JSON keeps the order of the split names (YAML sorts)
    rep = run(tmp_path / "spec.json", tmp_path / "run.h5", base_dir=tmp_path, report=tmp_path / "r.json")
    assert rep["splits"] == ref["splits"] == json.loads((tmp_path / "r.json").read_text())["splits"]
    smk = SimpleNamespace(
        threads=1,
        params=SimpleNamespace(spec=spec),
        output=[str(tmp_path / "smk.h5")],
        config={"data_dir": str(tmp_path)},
    )
    assert snakemake_job(smk)["splits"] == ref["splits"]
    with (
        StructureStore(tmp_path / "ref.h5") as a,
        StructureStore(tmp_path / "run.h5") as b,
        StructureStore(tmp_path / "smk.h5") as c,
    ):
        assert a.content_hash("train") == b.content_hash("train") == c.content_hash("train")
