"""The MPtrj "perovskites" subset as the paper made it (space group Pm-3m per material) and the per-frame
85/15 split with a test split of |val| carved from train."""

import json

import numpy as np
import pytest
from ase import Atoms

from hessdistill.data.perovskite import is_perovskite
from hessdistill.data.spacegroup import mptrj_frame_order, space_group, space_group_numbers
from hessdistill.data.store import StructureStore
from hessdistill.data.subsets import SelectorError, compile_selectors, select
from hessdistill.jobs.prepare import prepare_subset

spglib = pytest.importorskip("spglib")

PEROVSKITE_FRAC = [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]]


# ---------------------------------------------------------------------------------------------- structures
def _srtio3(a=3.905, b=None, c=None, ti_dz=0.0):
    """SrTiO3 (Pm-3m); b, c != a make it tetragonal/orthorhombic, ti_dz (Å) moves Ti off centre along c."""
    b, c = b or a, c or a
    frac = np.array(PEROVSKITE_FRAC, dtype=float)
    frac[1, 2] += ti_dz / c
    return ["Sr", "Ti", "O", "O", "O"], np.diag([a, b, c]), frac


def _cscl(a=4.12):
    return ["Cs", "Cl"], np.eye(3) * a, np.array([[0, 0, 0], [0.5, 0.5, 0.5]])


def _pmg(species, lattice, frac):
    lattice = np.asarray(lattice, dtype=float)
    sites = [
        {
            "species": [{"element": s, "occu": 1}],
            "abc": list(map(float, f)),
            "xyz": (np.asarray(f) @ lattice).tolist(),
            "label": s,
            "properties": {},
        }
        for s, f in zip(species, frac)
    ]
    return {
        "@module": "pymatgen.core.structure",
        "@class": "Structure",
        "charge": 0,
        "lattice": {"matrix": lattice.tolist(), "pbc": [True, True, True]},
        "sites": sites,
    }


def _frame(structure, e_per_atom, mp_id, rng):
    n = len(structure[0])
    e = e_per_atom * n
    return {
        "structure": _pmg(*structure),
        "uncorrected_total_energy": e + 0.1,
        "corrected_total_energy": e,
        "energy_per_atom": e / n,
        "ef_per_atom": -1.0,
        "e_per_atom_relaxed": e_per_atom,
        "ef_per_atom_relaxed": -1.0,
        "force": rng.normal(scale=0.05, size=(n, 3)).round(6).tolist(),
        "stress": np.eye(3).tolist(),
        "magmom": None,
        "bandgap": 1.0,
        "mp_id": mp_id,
    }


def _noisy(structure, rng, scale):
    species, cell, frac = structure
    cart = frac @ cell + rng.normal(scale=scale, size=frac.shape)
    return species, cell, cart @ np.linalg.inv(cell)


def mptrj_like(path, seed=0):
    """A small MPtrj JSON: {mp_id: {"<task>-<calc>-<step>": frame}}, energies falling along each relaxation.

    * mp-5229 SrTiO3: two early frames with Ti 0.25 Å off centre (P4mm), the relaxed last frame Pm-3m;
    * mp-22865 CsCl (Pm-3m, 2 atoms; not ABX3): frames with 0.01 Å noise;
    * mp-20459 tetragonal PbTiO3-like SrTiO3 (P4mm, c/a 1.06, Ti off centre);
    * mp-4019 orthorhombic SrTiO3 cell (3.80/3.90/4.00 Å, Pmmm).
    """
    rng = np.random.default_rng(seed)
    data = {
        "mp-5229": {
            "mp-5229-0-0": _frame(_srtio3(3.95, ti_dz=0.25), -7.90, "mp-5229", rng),
            "mp-5229-0-4": _frame(_srtio3(3.93, ti_dz=0.25), -7.95, "mp-5229", rng),
            "mp-5229-1-2": _frame(_srtio3(3.905), -8.00, "mp-5229", rng),
        },
        "mp-22865": {
            f"mp-22865-0-{k}": _frame(_noisy(_cscl(4.15 - 0.01 * k), rng, 0.01), -3.0 - 0.01 * k, "mp-22865", rng)
            for k in range(4)
        },
        "mp-20459": {
            f"mp-20459-0-{k}": _frame(_srtio3(3.90, c=4.13, ti_dz=0.3 + 0.01 * k), -7.0 - 0.01 * k, "mp-20459", rng)
            for k in range(3)
        },
        "mp-4019": {
            f"mp-4019-0-{k}": _frame(_srtio3(3.80, b=3.90, c=4.00 + 0.01 * k), -7.5 - 0.01 * k, "mp-4019", rng)
            for k in range(2)
        },
    }
    path.write_text(json.dumps(data))
    return path


def _spec(path, selectors, **split):
    return {
        "source": {"name": "mptrj", "path": str(path)},
        "selectors": selectors,
        "split": {"fractions": {"train": 0.85, "val": 0.15}, "seed": 0, **split},
    }


def _read(path):
    from hessdistill.data.sources import read_mptrj

    return read_mptrj(path)


def _mp_ids(frames):
    return [a.info["mp_id"] for a in frames]


# ---------------------------------------------------------------------------------------------- helpers
def test_space_group_helpers():
    def atoms(s):
        return Atoms(s[0], cell=s[1], scaled_positions=s[2], pbc=True)

    assert space_group(atoms(_srtio3())) == (221, "Pm-3m")
    assert space_group(atoms(_cscl()))[0] == 221
    assert space_group(atoms(_srtio3(3.9, c=4.1, ti_dz=0.3)))[0] == 99  # P4mm
    assert space_group(atoms(_srtio3(3.8, b=3.9, c=4.0)))[0] == 47  # Pmmm
    off = atoms(_srtio3(ti_dz=0.03))
    assert space_group(off)[0] == 221 and space_group(off, symprec=0.01)[0] == 99  # symprec decides
    assert space_group(Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.74]]))[0] is None  # molecule: none
    assert space_group_numbers([221], ["Pm-3m", "P m -3 m", "P4/m-32/m", "P4mm"]) == ((221, 99), [])
    assert space_group_numbers([], ["Pm3m"])[1] == ["Pm3m"]
    assert mptrj_frame_order("mp-1234-1-17") == (1, 17) and mptrj_frame_order("mp-1234") is None


# ---------------------------------------------------------------------------------------------- selection
def test_pm3m_per_material_keeps_whole_materials_any_composition(tmp_path):
    frames = _read(mptrj_like(tmp_path / "mptrj.json"))
    kept, rep = select(frames, [{"space_group": {"number": 221}}])
    # SrTiO3 whole (its first two frames are P4mm), CsCl (not ABX3) whole; P4mm and Pmmm materials out
    assert _mp_ids(kept) == ["mp-5229"] * 3 + ["mp-22865"] * 4
    e = rep["selectors"][0]
    assert e["per"] == "material" and e["key"] == "mp_id" and e["frame"] == "lowest_energy"
    assert e["symprec"] == 0.1 and e["angle_tolerance"] == -1.0 and e["spglib_version"] == spglib.__version__
    assert e["space_groups"] == [221] and e["n_materials"] == 4 and e["n_materials_kept"] == 2
    assert e["materials"] == {
        "mp-5229": ["mp-5229-1-2", 221],
        "mp-22865": ["mp-22865-0-3", 221],
        "mp-20459": ["mp-20459-0-2", 99],
        "mp-4019": ["mp-4019-0-1", 47],
    }
    assert e["space_group_counts"] == {"47": 1, "99": 1, "221": 2}

    # the same by symbol, and by frame: only the frames that are themselves Pm-3m
    assert _mp_ids(select(frames, [{"space_group": "Pm-3m"}])[0]) == _mp_ids(kept)
    per_frame, rep_f = select(frames, [{"space_group": {"symbol": "Pm-3m", "per": "frame"}}])
    assert [a.info["frame_id"] for a in per_frame] == ["mp-5229-1-2"] + [f"mp-22865-0-{k}" for k in range(4)]
    assert rep_f["selectors"][0]["per"] == "frame" and "materials" not in rep_f["selectors"][0]
    assert rep_f["selectors"][0]["space_group_counts"] == {"47": 2, "99": 5, "221": 5}

    # the geometric ABX3 rule (kept as an option) rejects CsCl and the distorted SrTiO3 frames
    abx3 = select(frames, [{"perovskite": {"cubic_only": True}}])[0]
    assert [a.info["frame_id"] for a in abx3] == ["mp-5229-1-2"]
    assert not is_perovskite(frames[3])  # CsCl


def test_decision_is_made_on_the_whole_input_whatever_comes_before(tmp_path):
    frames = _read(mptrj_like(tmp_path / "mptrj.json"))
    # the first selector removes SrTiO3's relaxed frame (-8.00 eV/atom) first; the material is still Pm-3m
    kept, rep = select(frames, [{"not": {"max_energy_per_atom": -7.99}}, {"space_group": {"number": 221}}])
    assert rep["selectors"][0]["kept"] == 11
    assert [a.info["frame_id"] for a in kept] == ["mp-5229-0-0", "mp-5229-0-4"] + [f"mp-22865-0-{k}" for k in range(4)]
    assert rep["selectors"][1]["materials"]["mp-5229"] == ["mp-5229-1-2", 221]


def test_representative_frame_rule(tmp_path):
    frames = _read(mptrj_like(tmp_path / "mptrj.json"))
    # make SrTiO3's distorted first frame (mp-5229-0-0) the lowest in energy: lowest_energy now analyses it
    sto = [a for a in frames if a.info["mp_id"] == "mp-5229"]
    for a in sto:
        a.calc.results["energy"] = -9.0 * len(a) if a.info["frame_id"] == "mp-5229-0-0" else a.calc.results["energy"]
    low = select(sto, [{"space_group": 221}], allow_empty=True)[1]["selectors"][0]
    assert low["materials"] == {"mp-5229": ["mp-5229-0-0", 99]} and low["kept"] == 0
    last = select(sto, [{"space_group": {"number": 221, "frame": "last"}}])[1]["selectors"][0]
    assert last["materials"] == {"mp-5229": ["mp-5229-1-2", 221]} and last["kept"] == 3  # calc 1 > calc 0


def test_symprec_is_applied_and_recorded(tmp_path):
    frames = _read(mptrj_like(tmp_path / "mptrj.json"))
    kept, rep = select(frames, [{"space_group": {"number": 221, "symprec": 1e-3}}])
    assert _mp_ids(kept) == ["mp-5229"] * 3  # CsCl's 0.01 Å noise is beyond 1e-3 Å
    e = rep["selectors"][0]
    assert e["symprec"] == 1e-3 and e["materials"]["mp-22865"][1] != 221
    rep5 = select(frames, [{"space_group": {"number": 221, "angle_tolerance": 5}}])[1]
    assert rep5["selectors"][0]["angle_tolerance"] == 5.0


@pytest.mark.parametrize(
    "spec, pattern",
    [
        ({"space_group": {}}, r"selectors\[0\]: space_group: give the space group as number .*\n  fix: write"),
        ({"space_group": {"symbol": "Pm3m"}}, r"unknown space group symbol 'Pm3m' \(did you mean 'Pm-3m'\?\)"),
        ({"space_group": 231}, r"space_group number must be 1..230, got 231"),
        ({"space_group": {"number": 221, "symbol": "Pm-3m"}}, r"give number or symbol, not both"),
        ({"space_group": {"number": 221, "per": "frames"}}, r"space_group: per must be one of material, frame"),
        ({"space_group": {"number": 221, "symprec": 0}}, r"space_group: symprec \(Å\) must be > 0"),
        ({"space_group": {"number": 221, "angle_tolerance": 95}}, r"angle_tolerance must be in \(0, 90\)"),
        ({"space_group": {"number": 221, "per": "frame", "frame": "last"}}, r"\['frame'\] only apply to per: material"),
        (
            {"space_group": {"number": 221, "symmprec": 0.1}},
            r"unknown option\(s\) \['symmprec'\] \(did you mean 'symprec'\?\)",
        ),
    ],
)
def test_space_group_spec_errors_name_the_selector(spec, pattern):
    with pytest.raises(SelectorError, match=pattern):
        compile_selectors([spec])


def test_per_material_needs_the_material_key():
    a = Atoms(*(_cscl()[:1]), cell=_cscl()[1], scaled_positions=_cscl()[2], pbc=True)
    with pytest.raises(
        SelectorError,
        match=r"selectors\[0\] space_group \(per: material\): atoms.info has no key "
        r"'mp_id'.*\n  fix: use per: frame",
    ):
        select([a], [{"space_group": 221}])
    assert len(select([a], [{"space_group": {"number": 221, "per": "frame"}}])[0]) == 1


# ---------------------------------------------------------------------------------------------- prepare + splits
def test_prepared_store_records_how_the_subset_was_made(tmp_path):
    path = mptrj_like(tmp_path / "mptrj.json")
    rep = prepare_subset(
        _spec(path, [{"space_group": {"number": 221}}], carve_test_from_train=True), tmp_path / "perovskites.h5"
    )
    assert rep["selection"]["source"]["n_selected"] == 7
    with StructureStore(tmp_path / "perovskites.h5") as st:
        sel = json.loads(st.attrs["selection_report"])["selectors"][0]
        assert sel["selector"] == "space_group" and sel["symprec"] == 0.1 and sel["angle_tolerance"] == -1.0
        assert sel["spglib_version"] == spglib.__version__ and sel["frame"] == "lowest_energy"
        assert sel["materials"]["mp-5229"] == ["mp-5229-1-2", 221]
        assert json.loads(st.attrs["selectors"]) == [{"space_group": {"number": 221}}]


def _many_frames_json(path, n_materials=10, n_frames=4, seed=1):
    rng = np.random.default_rng(seed)
    data = {}
    for m in range(n_materials):
        mp = f"mp-{1000 + m}"
        data[mp] = {
            f"{mp}-0-{k}": _frame(_noisy(_cscl(4.0 + 0.02 * m), rng, 0.01), -3.0 - 0.01 * k, mp, rng)
            for k in range(n_frames)
        }
    path.write_text(json.dumps(data))
    return path


def test_mptrj_split_85_15_per_frame_then_test_carved_from_train(tmp_path):
    path = _many_frames_json(tmp_path / "mptrj.json")  # 10 Pm-3m materials x 4 frames = 40 frames
    spec = _spec(path, [{"space_group": {"number": 221}}], carve_test_from_train=True)
    rep = prepare_subset(spec, tmp_path / "s.h5")
    # 40 frames: train 34 / val 6 (85/15 per frame), then |val| = 6 frames carved out of train
    assert rep["splits"] == {"train": 28, "val": 6, "test": 6}
    with StructureStore(tmp_path / "s.h5") as st:
        ids = {s: [st.atoms(s, i).info["structure_id"] for i in range(st.n_structures(s))] for s in st.splits}
        split_rep = json.loads(st.attrs["split_report"])
    all_ids = [i for v in ids.values() for i in v]
    assert len(all_ids) == len(set(all_ids)) == 40  # disjoint and complete
    assert split_rep["group_by"] is None and split_rep["fractions"] == {"train": 0.85, "val": 0.15}
    # per frame: frames of one material do land in different splits (that is the paper's protocol)
    where = {}
    for s, v in ids.items():
        for i in v:
            where.setdefault(i.split(":")[1], set()).add(s)
    assert any(len(v) > 1 for v in where.values())
    # reproducible; another seed gives other splits
    prepare_subset(spec, tmp_path / "s2.h5")
    assert (tmp_path / "s.h5").read_bytes() == (tmp_path / "s2.h5").read_bytes()

    # grouping by material (the leak-free option): no material in two splits
    grouped = _spec(path, [{"space_group": {"number": 221}}], carve_test_from_train=True, group_by="mp_id")
    prepare_subset(grouped, tmp_path / "g.h5")
    with StructureStore(tmp_path / "g.h5") as st:
        g = json.loads(st.attrs["split_report"])
        assert g["groups_in_several_splits"] == 0 and g["n_structures"] == 40
        assert all(e["n_structures"] % 4 == 0 for e in g["splits"].values())


def test_cli_prints_and_config_check_reports_space_group(tmp_path, capsys):
    import yaml

    from hessdistill.jobs.prepare import main
    from hessdistill.workflow.config_check import _selector_problems

    path = mptrj_like(tmp_path / "mptrj.json")
    spec = tmp_path / "perovskites.yaml"
    spec.write_text(yaml.safe_dump(_spec(path, [{"space_group": {"number": 221}}], carve_test_from_train=True)))
    assert main([str(spec), "--out", str(tmp_path / "p.h5")]) == 0
    out = capsys.readouterr().out
    assert "space_group: kept 7 of 12" in out
    assert f"spglib {spglib.__version__}, symprec 0.1 Å" in out and "2 of 4 materials (frame: lowest_energy)" in out
    problems = _selector_problems(
        [{"space_group": {"number": 221}}, {"space_group": "Pm3m"}], "subsets.p.selectors", None
    )
    assert len(problems) == 1 and "subsets.p.selectors[1]" in problems[0] and "did you mean 'Pm-3m'" in problems[0]
