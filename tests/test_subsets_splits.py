"""Chemical-subset selectors (hessdistill.data.subsets) and seeded splits (hessdistill.data.splits)."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import yaml
from ase import Atoms
from ase.build import bulk, molecule
from ase.calculators.singlepoint import SinglePointCalculator
from ase.spacegroup import crystal

from hessdistill.core.errors import HessdistillError
from hessdistill.data import StructureStore
from hessdistill.data.perovskite import is_perovskite, perovskite_check
from hessdistill.data.splits import (
    SplitError,
    carve_test_from_train,
    make_splits,
    split_indices,
    split_report,
    split_sizes,
    write_split_store,
)
from hessdistill.data.subsets import (
    EmptySelectionError,
    SelectorError,
    compile_selectors,
    read_id_list,
    select,
)


# ---------------------------------------------------------------------------------------------- structures
def _label(atoms, energy, fmax=1.0, seed=0):
    rng = np.random.default_rng(seed)
    f = rng.normal(size=(len(atoms), 3))
    f *= fmax / np.linalg.norm(f, axis=1).max()
    atoms.calc = SinglePointCalculator(atoms, energy=float(energy), forces=f)
    return atoms


def _ch3i():
    return Atoms(
        "CH3I", positions=[[0, 0, 0], [0, 1.03, 0.36], [0.89, -0.51, 0.36], [-0.89, -0.51, 0.36], [0, 0, -2.14]]
    )


def _pool():
    """Seven labelled structures: molecules with SPICE-like info and crystals with MPtrj-like info."""
    out = []
    specs = [
        (molecule("H2O"), {"config_type": "DES370K Monomers", "charge": 0, "smiles": "O"}, -14.0, 0.5),
        (molecule("CH4"), {"config_type": "DES370K Monomers", "charge": 0, "smiles": "C"}, -24.0, 3.0),
        (_ch3i(), {"config_type": "DES370K Monomers", "charge": 0, "smiles": "CI"}, -20.0, 1.0),
        (molecule("NH3"), {"subset": "Solvated Amino Acids", "total_charge": 1, "smiles": "N"}, -19.0, 30.0),
        (bulk("Y", "hcp", a=3.65, c=5.73), {"mp_id": "mp-112", "charge": 0}, -12.9, 0.1),
        (bulk("NaCl", "rocksalt", a=5.64, cubic=True), {"mp_id": "mp-22862"}, -6.8, 0.0),
        (
            crystal(["Y", "O"], basis=[(0, 0, 0), (0.25, 0.25, 0.25)], spacegroup=225, cellpar=[5.2] * 3 + [90] * 3),
            {"mp_id": "mp-2652"},
            -40.0,
            2.0,
        ),  # fluorite-type YO2 (made up), 12 atoms
    ]
    for k, (atoms, info, e, fmax) in enumerate(specs):
        atoms.info.update(info)
        out.append(_label(atoms, e, fmax, seed=k))
    return out


def _ids(selected, pool):
    return [next(i for i, b in enumerate(pool) if b is a) for a in selected]


def _run(pool, spec, **kw):
    sel, rep = select(pool, spec, **kw)
    return _ids(sel, pool), rep


def _srtio3(a=3.905):
    return crystal(
        ["Sr", "Ti", "O"], basis=[(0, 0, 0), (0.5, 0.5, 0.5), (0.5, 0.5, 0)], spacegroup=221, cellpar=[a] * 3 + [90] * 3
    )


def _catio3_pnma():
    """Orthorhombic CaTiO3 (a-b+a- tilts), Sasaki et al. 1987, Pbnm coordinates mapped to Pnma (x,y,z) -> (y,z,x)."""
    pbnm = [(-0.0065, 0.0349, 0.25), (0, 0.5, 0), (0.0711, 0.4839, 0.25), (0.7108, 0.2889, 0.0372)]
    basis = [(y, z, x) for x, y, z in pbnm]
    return crystal(["Ca", "Ti", "O", "O"], basis=basis, spacegroup=62, cellpar=[5.4423, 7.6401, 5.3796, 90, 90, 90])


def _ilmenite():
    return crystal(
        ["Fe", "Ti", "O"],
        basis=[(0, 0, 0.3554), (0, 0, 0.1464), (0.3177, 0.0229, 0.2449)],
        spacegroup=148,
        cellpar=[5.088, 5.088, 14.09, 90, 90, 120],
    )


def _banio3_2h():
    """Hexagonal 2H-BaNiO3: ABO3 with face-sharing NiO6 chains."""
    return crystal(
        ["Ba", "Ni", "O"],
        basis=[(1 / 3, 2 / 3, 0.75), (0, 0, 0), (0.1486, 0.2972, 0.25)],
        spacegroup=194,
        cellpar=[5.629, 5.629, 4.811, 90, 90, 120],
    )


def _pocl3():
    return Atoms(
        "POCl3", positions=[[0, 0, 0], [0, 0, 1.45], [1.9, 0, -0.6], [-0.95, 1.65, -0.6], [-0.95, -1.65, -0.6]]
    )


# ---------------------------------------------------------------------------------------------- element selectors
def test_element_selectors():
    pool = _pool()
    assert _run(pool, [{"contains_elements": ["Y"]}])[0] == [4, 6]
    assert _run(pool, [{"contains_elements": ["Y", "O"]}])[0] == [6]
    assert _run(pool, [{"contains_elements": ["Y", "I"], "mode": "any"}])[0] == [2, 4, 6]
    assert _run(pool, [{"contains_elements": {"elements": ["I", "Cl"], "mode": "any"}}])[0] == [2, 5]
    assert _run(pool, [{"contains_elements": "I"}])[0] == [2]
    assert _run(pool, [{"contains_elements": [53]}])[0] == [2]  # atomic numbers work too
    assert _run(pool, [{"only_elements": ["C", "H", "O", "N"]}])[0] == [0, 1, 3]
    assert _run(pool, [{"exclude_elements": ["H"]}])[0] == [4, 5, 6]
    assert _run(pool, [{"exclude_elements": ["Xe"]}])[0] == list(range(7))


def test_element_selector_errors():
    with pytest.raises(SelectorError, match=r"unknown element symbol 'y'.*did you mean 'Y'"):
        compile_selectors([{"contains_elements": ["y"]}])
    with pytest.raises(SelectorError, match="mode must be one of all, any"):
        compile_selectors([{"contains_elements": ["Y"], "mode": "some"}])
    with pytest.raises(SelectorError, match="is empty"):
        compile_selectors([{"only_elements": []}])


# ---------------------------------------------------------------------------------------------- info selectors
def test_info_selectors_and_spice_group():
    pool = _pool()
    assert _run(pool, [{"info_equals": {"key": "config_type", "value": "DES370K Monomers"}, "missing": "drop"}])[0] == [
        0,
        1,
        2,
    ]
    assert _run(pool, [{"info_in": {"key": "smiles", "values": ["O", "CI"]}, "missing": "drop"}])[0] == [0, 2]
    # the SPICE convenience: config_type (MACE-OFF files) or subset
    assert _run(pool, [{"spice_group": "DES370K Monomers", "missing": "drop"}])[0] == [0, 1, 2]
    assert _run(pool, [{"spice_group": ["Solvated Amino Acids"], "missing": "drop"}])[0] == [3]
    assert _run(pool[:4], [{"spice_group": "Solvated Amino Acids"}])[0] == [3]
    # iodine-containing SPICE subset: a group-independent element filter
    assert _run(pool, [{"only_elements": ["H", "C", "N", "O", "I"]}, {"contains_elements": ["I"]}])[0] == [2]
    # an info value 0 is not the boolean False
    a = Atoms("H", info={"flag": 0})
    assert select([a], {"info_equals": {"key": "flag", "value": 0}})[0] == [a]
    assert select([a], {"info_equals": {"key": "flag", "value": False}}, allow_empty=True)[0] == []


def test_info_selector_missing_key_fails_fast():
    pool = _pool()
    with pytest.raises(SelectorError, match=r"(?s)structure 4.*no key 'config_type' or 'subset'.*missing: drop"):
        select(pool, [{"spice_group": "DES370K Monomers"}], source="spice.xyz")
    with pytest.raises(SelectorError, match="info_equals: missing 'value'"):
        compile_selectors([{"info_equals": {"key": "config_type"}}])
    with pytest.raises(SelectorError, match="info_in takes a mapping"):
        compile_selectors([{"info_in": "config_type"}])
    with pytest.raises(SelectorError, match="values must be a list"):
        compile_selectors([{"info_in": {"key": "k", "values": "abc"}}])


def test_id_list_from_file(tmp_path):
    f = tmp_path / "bandgap_gt5.txt"
    f.write_text(
        "# Materials Project v2023.11.1, summary band_gap >= 5 eV (frozen)\n"
        "mp-22862   # NaCl\n\n  mp-2652\n# mp-112 commented out\n"
    )
    ids, digest = read_id_list(f)
    assert ids == {"mp-22862", "mp-2652"}
    assert digest == hashlib.sha256(f.read_bytes()).hexdigest()
    pool = _pool()
    kept, rep = _run(pool[4:], [{"id_list": str(f)}])
    assert kept == [1, 2]
    entry = rep["selectors"][0]
    assert entry["sha256"] == digest and entry["n_ids"] == 2 and entry["key"] == "mp_id"
    # relative file against base_dir, explicit key, pinned hash
    kept, _ = _run(
        pool[4:], [{"id_list": {"file": "bandgap_gt5.txt", "key": "mp_id", "sha256": digest}}], base_dir=tmp_path
    )
    assert kept == [1, 2]
    with pytest.raises(SelectorError, match="sha256"):
        compile_selectors([{"id_list": str(f), "sha256": "0" * 64}])
    with pytest.raises(SelectorError, match="does not exist"):
        compile_selectors([{"id_list": str(tmp_path / "missing.txt")}])
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing\n\n")
    with pytest.raises(SelectorError, match="holds no ids"):
        compile_selectors([{"id_list": str(empty)}])
    with pytest.raises(SelectorError, match="no key 'mp_id'"):
        select(pool, [{"id_list": str(f)}])  # molecules have no mp_id


# ---------------------------------------------------------------------------------------------- size / label selectors
def test_size_label_charge_formula_periodic_selectors():
    pool = _pool()
    n = [len(a) for a in pool]
    assert _run(pool, [{"max_atoms": 3}])[0] == [i for i, k in enumerate(n) if k <= 3]
    assert _run(pool, [{"min_atoms": 5}])[0] == [i for i, k in enumerate(n) if k >= 5]
    assert _run(pool, [{"max_force": 2.5}])[0] == [0, 2, 4, 5, 6]
    e = [a.get_potential_energy() / len(a) for a in pool]
    assert _run(pool, [{"max_energy_per_atom": -5.0}])[0] == [i for i, x in enumerate(e) if x <= -5.0]
    assert _run(pool, [{"neutral": True, "missing": "keep"}])[0] == [0, 1, 2, 4, 5, 6]
    assert _run(pool, [{"neutral": True, "missing": "drop"}])[0] == [0, 1, 2, 4]
    assert _run(pool, [{"neutral": False, "missing": "drop"}])[0] == [3]
    assert _run(pool, [{"formula_in": ["H2O", "CH3I"]}])[0] == [0, 2]
    assert _run(pool, [{"formula_in": "ICH3"}])[0] == [2]  # order-insensitive
    assert _run(pool, [{"formula_in": ["NaCl"]}], allow_empty=True)[0] == []  # the cubic cell holds Na4Cl4
    assert _run(pool, [{"reduced_formula_in": ["NaCl", "YO2"]}])[0] == [5, 6]
    assert _run(pool, [{"periodic": True}])[0] == [4, 5, 6]
    assert _run(pool, [{"periodic": False}])[0] == [0, 1, 2, 3]


def test_max_force_on_dict_form_is_rejected_and_labels_required():
    with pytest.raises(SelectorError, match="max_force must be a number"):
        compile_selectors([{"max_force": {"value": 0.5}}])
    unlabelled = [molecule("H2O")]
    with pytest.raises(SelectorError, match="max_force needs forces"):
        select(unlabelled, [{"max_force": 10.0}])
    with pytest.raises(SelectorError, match="needs an energy"):
        select(unlabelled, [{"max_energy_per_atom": 0.0}])
    with pytest.raises(SelectorError, match="neither 'charge' nor 'total_charge'"):
        select(unlabelled, [{"neutral": True}])


# ---------------------------------------------------------------------------------------------- composition and reports
def test_composition_and_report_counts():
    pool = _pool()
    spec = [
        {"any_of": [{"contains_elements": ["Y"]}, {"contains_elements": ["I"]}]},
        {"not": {"max_atoms": 2}},
        [{"max_force": 10.0}, {"not": {"formula_in": ["Y2"]}}],
    ]
    kept, rep = _run(pool, spec, source="mptrj.h5")
    assert kept == [2, 6]
    assert rep["source"] == "mptrj.h5" and rep["n_input"] == 7 and rep["n_selected"] == 2
    assert [(e["index"], e["selector"], e["seen"], e["kept"]) for e in rep["selectors"]] == [
        (0, "any_of", 7, 3),
        (1, "not", 3, 2),
        (2, "all_of", 2, 2),
    ]
    assert rep["selectors"][1]["spec"] == {"not": {"max_atoms": 2}}
    json.dumps(rep)  # JSON-able
    # no selectors: everything
    assert _run(pool, None)[0] == list(range(7))
    assert _run(pool, [])[1]["selectors"] == []
    # a YAML config holds the same spec
    cfg = yaml.safe_load("""
selectors:
  - contains_elements: [Y]
  - max_atoms: 60
  - max_force: 20.0
""")
    assert _run(pool, cfg["selectors"])[0] == [4, 6]


def test_empty_selection_names_the_selector():
    pool = _pool()
    spec = [{"periodic": True}, {"contains_elements": ["Y"]}, {"min_atoms": 100}, {"max_force": 1.0}]
    with pytest.raises(EmptySelectionError) as info:
        select(pool, spec, source="data/mptrj.extxyz")
    err = info.value
    assert isinstance(err, HessdistillError)
    msg = str(err)
    assert "selectors[2]" in msg and '{"min_atoms": 100}' in msg
    assert "removed the last 2 structure(s)" in msg
    assert "input 7 -> [0] periodic 3 -> [1] contains_elements 2" in msg
    assert "data/mptrj.extxyz" in msg
    assert err.index == 2 and err.seen == 2 and err.spec == {"min_atoms": 100}
    with pytest.raises(EmptySelectionError, match="holds no structures"):
        select([], [{"max_atoms": 3}])


@pytest.mark.parametrize(
    "spec, pattern",
    [
        (
            [{"contains_element": ["Y"]}],
            r"selectors\[0\]: unknown selector 'contains_element' \(did you mean 'contains_elements'\?\)",
        ),
        (
            [{"max_atoms": 60}, {"max_frc": 1.0}],
            r"selectors\[1\]: unknown selector 'max_frc'.*valid selectors: contains_elements",
        ),
        ([{"any_of": [{"max_atom": 3}]}], r"selectors\[0\]\.any_of\[0\]: unknown selector 'max_atom'"),
        ([{"not": {"bogus": 1}}], r"selectors\[0\]\.not: unknown selector 'bogus'"),
        ([{"max_atoms": 60, "min_atoms": 2}], r"one selector per mapping"),
        ([{"max_atoms": "60"}], r"max_atoms must be an integer, got '60'"),
        ([{"max_atoms": True}], r"max_atoms must be an integer"),
        ([{"periodic": "yes"}], r"periodic must be true or false"),
        ([{"contains_elements": ["Y"], "mod": "any"}], r"unknown option\(s\) \['mod'\] \(did you mean 'mode'\?\)"),
        ([{"perovskite": {"cubic": True}}], r"unknown option\(s\) \['cubic'\] \(did you mean 'cubic_only'\?\)"),
        ([{"perovskite": {"symmetry": "magic"}}], r"symmetry must be one of geometric, spglib, auto"),
        ("max_atoms", r"expected a list of selector mappings"),
        ([["not a mapping"]], r"a selector must be a mapping"),
        ([{"formula_in": ["Xx2"]}], r"unknown element symbol 'Xx'"),
    ],
)
def test_bad_specs_fail_fast(spec, pattern):
    with pytest.raises(SelectorError, match=pattern):
        compile_selectors(spec)


# ---------------------------------------------------------------------------------------------- perovskites
def _rattled_supercell():
    a = _srtio3().repeat((2, 2, 2))
    a.rattle(0.05, seed=1)
    return a


def _tetragonal():
    a = _srtio3()
    a.set_cell(a.cell.array * [1, 1, 1.04], scale_atoms=True)
    return a


def _displaced_a_site():
    a = _srtio3()
    a.positions[0] = a.cell.array.sum(axis=0) * 0.2  # Sr pushed off the cavity centre
    return a


def _boxed_pocl3():
    a = _pocl3()
    a.center(vacuum=4.0)
    a.pbc = True
    return a


PEROVSKITES = {  # name: (builder, perovskite, cubic)
    "SrTiO3 cubic": (_srtio3, True, True),
    "SrTiO3 2x2x2": (lambda: _srtio3().repeat((2, 2, 2)), True, True),
    "SrTiO3 2x1x1 atoms shuffled": (lambda: _srtio3().repeat((2, 1, 1))[[4, 9, 0, 7, 2, 5, 8, 1, 3, 6]], True, True),
    "CsPbI3 cubic": (
        lambda: crystal(
            ["Cs", "Pb", "I"],
            basis=[(0, 0, 0), (0.5, 0.5, 0.5), (0.5, 0.5, 0)],
            spacegroup=221,
            cellpar=[6.29] * 3 + [90] * 3,
        ),
        True,
        True,
    ),
    "SrTiO3 rattled 2x2x2": (_rattled_supercell, True, False),
    "SrTiO3 tetragonal strain": (_tetragonal, True, False),
    "CaTiO3 Pnma tilted": (_catio3_pnma, True, False),
    "FeTiO3 ilmenite": (_ilmenite, False, False),
    "BaNiO3 2H face-sharing": (_banio3_2h, False, False),
    "SrTiO3 with displaced A": (_displaced_a_site, False, False),
    "POCl3 molecule": (_pocl3, False, False),
    "POCl3 in a periodic box": (_boxed_pocl3, False, False),
    "NaCl": (lambda: bulk("NaCl", "rocksalt", a=5.64), False, False),
    "SrTiO3 as Sr-Ti-H (H not an anion)": (
        lambda: Atoms(numbers=[38, 22, 1, 1, 1], positions=_srtio3().positions, cell=_srtio3().cell, pbc=True),
        False,
        False,
    ),
}


@pytest.mark.parametrize("name", list(PEROVSKITES))
def test_perovskite_rule(name):
    build, perov, cubic = PEROVSKITES[name]
    atoms = build()
    ok, reason = perovskite_check(atoms)
    assert ok is perov, reason
    assert is_perovskite(atoms, cubic_only=True) is cubic
    pytest.importorskip("spglib")
    assert is_perovskite(atoms, cubic_only=True, symmetry="spglib") is cubic


def test_perovskite_reasons_and_options():
    assert "corner-sharing" in perovskite_check(_ilmenite())[1]
    assert "79" in perovskite_check(_banio3_2h())[1]  # the Ni-O-Ni angle of the face-sharing chain
    assert "not periodic" in perovskite_check(_pocl3())[1]
    assert "tilted" in perovskite_check(_catio3_pnma(), cubic_only=True)[1]
    # a stricter link-angle tolerance rejects the tilted CaTiO3 (Ti-O-Ti about 156°)
    assert not is_perovskite(_catio3_pnma(), link_angle_tol=20.0)
    # H as an extra anion
    sr_ti_h = PEROVSKITES["SrTiO3 as Sr-Ti-H (H not an anion)"][0]()
    assert is_perovskite(sr_ti_h, anions=("H",))


def test_perovskite_selector():
    pool = [_srtio3(), _catio3_pnma(), _ilmenite(), _pocl3(), _rattled_supercell()]
    kept, rep = _run(pool, [{"perovskite": True}])
    assert kept == [0, 1, 4]
    assert rep["selectors"][0]["symmetry"] == "geometric"
    assert _run(pool, [{"perovskite": {"cubic_only": True}}])[0] == [0]
    assert _run(pool, [{"perovskite": False}])[0] == [2, 3]
    assert _run(pool, [{"perovskite": True, "cubic_only": True, "symmetry": "auto"}])[0] == [0]


# ---------------------------------------------------------------------------------------------- splits
def _frames(n_groups=12, seed=0):
    """Frames of several 'materials' (groups of 1-6 frames), each with an mp_id."""
    rng = np.random.default_rng(seed)
    out = []
    for g in range(n_groups):
        for k in range(int(rng.integers(1, 7))):
            a = molecule("H2O")
            a.positions += rng.normal(scale=0.01, size=a.positions.shape)
            a.info["mp_id"] = f"mp-{g}"
            a.info["frame"] = k
            out.append(_label(a, -14.0 + 0.01 * k, 1.0, seed=g * 10 + k))
    return out


def test_split_sizes_largest_remainder():
    assert split_sizes(10, fractions={"train": 0.85, "val": 0.15}) == {"train": 9, "val": 1}  # 8.5/1.5: tie -> first
    assert split_sizes(100, fractions={"train": 0.85, "val": 0.15}) == {"train": 85, "val": 15}
    assert split_sizes(10, fractions={"train": 0.7, "val": 0.15, "test": 0.15}) == {"train": 7, "val": 2, "test": 1}
    assert split_sizes(7, fractions=(1 / 3, 1 / 3, 1 / 3)) == {"train": 3, "val": 2, "test": 2}
    assert split_sizes(10, fractions={"train": "rest", "val": 0.25}) == {"train": 8, "val": 2}  # 7.5/2.5
    assert split_sizes(10, counts={"train": 5, "val": 2, "test": "rest"}) == {"train": 5, "val": 2, "test": 3}
    assert split_sizes(10, counts={"train": 5, "val": 2}) == {"train": 5, "val": 2}
    for n in range(1, 40):
        assert sum(split_sizes(n, fractions={"a": 0.45, "b": 0.35, "c": 0.2}).values()) == n


@pytest.mark.parametrize(
    "kw, pattern",
    [
        ({"fractions": {"train": 0.8, "val": 0.1}}, "sum to 0.9, not 1"),
        ({"fractions": {"train": 0.8, "val": 0.5}}, "sum to 1.3"),
        ({"fractions": {"train": -0.1, "val": 1.1}}, r"must be a number in \[0, 1\]"),
        ({"counts": {"train": 8, "val": 5}}, "ask for 13 structures but only 10"),
        ({"counts": {"train": "rest", "val": "rest"}}, "only one split may be 'rest'"),
        ({"counts": {"train": "all"}}, "the only string allowed is 'rest'"),
        ({"counts": {"train": 2.5}}, "non-negative integer"),
        ({}, "exactly one of fractions= or counts="),
        ({"fractions": {"a": 0.5, "b": 0.5}, "counts": {"a": 1}}, "exactly one of"),
    ],
)
def test_split_size_errors(kw, pattern):
    with pytest.raises(SplitError, match=pattern):
        split_sizes(10, **kw)


def test_make_splits_deterministic_and_complete():
    frames = _frames()
    n = len(frames)
    a = make_splits(frames, fractions={"train": 0.85, "val": 0.15}, seed=3)
    b = make_splits(frames, fractions={"train": 0.85, "val": 0.15}, seed=3)
    c = make_splits(frames, fractions={"train": 0.85, "val": 0.15}, seed=4)
    ids = lambda s: {k: _ids(v, frames) for k, v in s.items()}  # noqa: E731
    assert ids(a) == ids(b)
    assert ids(a) != ids(c)
    assert list(a) == ["train", "val"]
    assert {k: len(v) for k, v in a.items()} == split_sizes(n, fractions={"train": 0.85, "val": 0.15})
    assert sorted(ids(a)["train"] + ids(a)["val"]) == list(range(n))
    assert ids(a)["train"] == sorted(ids(a)["train"])  # input order inside a split
    # counts with rest, and subsampling without it
    s = split_indices(frames, counts={"train": 10, "val": 3, "test": "rest"}, seed=0)
    assert [len(v) for v in s.values()] == [10, 3, n - 13]
    assert sorted(sum(s.values(), [])) == list(range(n))
    s = split_indices(n, counts=(10, 3, 2), seed=0)
    assert [len(v) for v in s.values()] == [10, 3, 2] and len(set(sum(s.values(), []))) == 15
    # empty splits are refused unless allowed
    two_groups = [a for a in frames if a.info["mp_id"] in ("mp-0", "mp-1")]
    with pytest.raises(SplitError, match="split '.*' was asked for .* structure.* but got none"):
        make_splits(two_groups, fractions=(0.4, 0.3, 0.3), seed=0, group_by="mp_id")
    s = make_splits(two_groups, fractions=(0.4, 0.3, 0.3), seed=0, group_by="mp_id", allow_empty=True)
    assert sum(1 for v in s.values() if not v) == 1
    with pytest.raises(SplitError, match="seed must be a non-negative integer"):
        make_splits(frames, fractions=(0.5, 0.5), seed=None)
    with pytest.raises(TypeError):
        make_splits(frames, fractions=(0.5, 0.5))  # seed is required


def test_group_by_keeps_groups_whole():
    frames = _frames(n_groups=30, seed=1)
    n = len(frames)
    for seed in range(5):
        s = make_splits(frames, fractions={"train": 0.7, "val": 0.15, "test": 0.15}, seed=seed, group_by="mp_id")
        owner = {}
        for name, items in s.items():
            for a in items:
                assert owner.setdefault(a.info["mp_id"], name) == name  # no group in two splits
        assert sum(len(v) for v in s.values()) == n
        target = split_sizes(n, fractions={"train": 0.7, "val": 0.15, "test": 0.15})
        for name in s:  # approximate: within one largest group (6 frames)
            assert abs(len(s[name]) - target[name]) <= 6
        rep = split_report(s, seed=seed, group_by="mp_id")
        assert rep["groups_in_several_splits"] == 0 and rep["n_groups"] == 30
        assert sum(e["n_groups"] for e in rep["splits"].values()) == 30
    # counts without rest leave whole groups out
    s = make_splits(frames, counts={"train": 20, "val": 5}, seed=0, group_by="mp_id")
    assert 0 < len(s["val"]) <= 5 + 5 and len(s["train"]) <= 20 + 5
    missing = molecule("H2O")
    with pytest.raises(SplitError, match=r"structure 3.*no group key 'mp_id'"):
        make_splits(frames[:3] + [missing], fractions=(0.5, 0.5), seed=0, group_by="mp_id")


def test_carve_test_from_train():
    frames = _frames(n_groups=20, seed=2)
    tv = make_splits(frames, fractions={"train": 0.85, "val": 0.15}, seed=0)
    out = carve_test_from_train(tv, seed=42)
    assert list(out) == ["train", "val", "test"]
    assert len(out["test"]) == len(tv["val"])
    assert len(out["train"]) == len(tv["train"]) - len(tv["val"])
    assert out["val"] == tv["val"]
    assert sorted(_ids(out["train"] + out["test"], frames)) == sorted(_ids(tv["train"], frames))
    again = carve_test_from_train(tv, seed=42)
    assert _ids(again["test"], frames) == _ids(out["test"], frames)
    other = carve_test_from_train(tv, seed=43)
    assert _ids(other["test"], frames) != _ids(out["test"], frames)
    assert len(tv["train"]) == len(out["train"]) + len(out["test"])  # the input is untouched
    assert len(carve_test_from_train(tv, seed=0, size=3)["test"]) == 3
    grouped = carve_test_from_train(tv, seed=1, group_by="mp_id")
    assert 0 < len(grouped["test"]) <= len(tv["val"])
    assert not ({a.info["mp_id"] for a in grouped["test"]} & {a.info["mp_id"] for a in grouped["train"]})
    with pytest.raises(SplitError, match="already exists"):
        carve_test_from_train(out, seed=0)
    with pytest.raises(SplitError, match="train would be empty"):
        carve_test_from_train(tv, seed=0, size=len(tv["train"]))


def test_split_report_and_byte_identical_store(tmp_path):
    pool = _frames(n_groups=8)
    sel, sel_rep = select(
        pool, [{"periodic": False}, {"info_in": {"key": "frame", "values": [0, 1, 2]}}], source="pool.xyz"
    )
    assert 0 < len(sel) < len(pool)
    spec = dict(fractions={"train": 0.6, "val": 0.2, "test": 0.2})

    def build(path):
        splits = make_splits(sel, seed=7, **spec)
        return write_split_store(
            path, splits, seed=7, selectors_report=sel_rep, source="pool.xyz", attrs={"subset": "molecules"}, **spec
        ), splits

    p1, splits = build(tmp_path / "a" / "store.h5")
    p2, _ = build(tmp_path / "b" / "store.h5")
    assert p1.read_bytes() == p2.read_bytes()
    rep = split_report(splits, seed=7, **spec)
    assert rep["seed"] == 7 and rep["n_structures"] == len(sel)
    assert {k: v["n_structures"] for k, v in rep["splits"].items()} == {k: len(v) for k, v in splits.items()}
    assert rep["n_atoms"] == sum(len(a) for a in sel)
    with StructureStore(p1) as store:
        attrs = store.attrs
        assert attrs["split_seed"] == 7 and attrs["source"] == "pool.xyz" and attrs["subset"] == "molecules"
        assert json.loads(attrs["selectors"]) == [
            {"periodic": False},
            {"info_in": {"key": "frame", "values": [0, 1, 2]}},
        ]
        assert json.loads(attrs["selection_report"])["n_selected"] == len(sel)
        assert json.loads(attrs["split_report"]) == rep
        assert {s: store.n_structures(s) for s in store.splits} == {k: len(v) for k, v in splits.items()}
    # another seed gives another file
    p3 = write_split_store(
        tmp_path / "c.h5",
        make_splits(sel, seed=8, **spec),
        seed=8,
        selectors_report=sel_rep,
        source="pool.xyz",
        attrs={"subset": "molecules"},
        **spec,
    )
    assert p3.read_bytes() != p1.read_bytes()
    with pytest.raises(ValueError, match="split_seed"):
        write_split_store(tmp_path / "d.h5", splits, seed=7, attrs={"split_seed": 1})
