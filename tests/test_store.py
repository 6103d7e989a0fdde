"""The HDF5 structure store (hessdistill.data.store), extxyz reading (hessdistill.data.formats) and structure
validation (hessdistill.core.structures)."""

from __future__ import annotations

import pickle
import time

import h5py
import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk, molecule
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator

from hessdistill.core.errors import StoreError, StructureError
from hessdistill.core.structures import validate_atoms
from hessdistill.data import (
    FORMAT,
    UNITS,
    StructureStore,
    content_hash,
    read_extxyz,
    read_structures,
    structures_from_file,
    write_extxyz,
    write_structures,
)


# ---------------------------------------------------------------------------------------------- fixtures
def _label(atoms, rng, *, stress=False, via="calc"):
    """Attach random (but fixed-seed) labels: through a SinglePointCalculator or info/arrays."""
    energy = float(rng.normal() * 10)
    forces = rng.normal(size=(len(atoms), 3))
    results = {"energy": energy, "forces": forces}
    if stress:
        s = rng.normal(size=(3, 3)) * 1e-3
        results["stress"] = s + s.T  # symmetric, given as 3x3
    if via == "calc":
        atoms.calc = SinglePointCalculator(atoms, **results)
    else:
        atoms.info["energy"] = energy
        atoms.arrays["forces"] = forces
        if stress:
            atoms.info["stress"] = results["stress"]
    return atoms


def _molecule(name, rng, **kw):
    a = molecule(name)
    a.positions += rng.normal(scale=0.05, size=a.positions.shape)  # non-round floats
    a.info.update(
        {
            "config_type": "molecule",
            "smiles": name,
            "frame": int(rng.integers(100)),
            "temperature": 300.5,
            "relaxed": False,
        }
    )
    return _label(a, rng, **kw)


def _crystal(symbol, rng, *, crystalstructure=None, a=None, **kw):
    atoms = bulk(symbol, crystalstructure, a=a, cubic=True) if crystalstructure else bulk(symbol, cubic=True)
    atoms.positions += rng.normal(scale=0.02, size=atoms.positions.shape)
    atoms.cell = atoms.cell.array * (1 + rng.normal(scale=1e-3, size=(3, 3)))
    atoms.info.update({"config_type": "bulk", "mp_id": f"mp-{int(rng.integers(1, 9999))}", "frame": 3})
    return _label(atoms, rng, **kw)


@pytest.fixture
def splits():
    rng = np.random.default_rng(0)
    train = [
        _molecule("H2O", rng),
        _crystal("Si", rng),
        _molecule("CH4", rng, via="info"),
        _crystal("NaCl", rng, crystalstructure="rocksalt", a=5.64),
    ]
    train[1].info["structure_id"] = "mp-149:17"
    val = [_crystal("Cu", rng, stress=True), _crystal("Al", rng, stress=True, via="info")]
    test = [_molecule("NH3", rng), _molecule("C6H6", rng)]
    test[0].info["charge"] = 0
    test[1].info["charge"] = -1
    return {"train": train, "val": val, "test": test}


def _bits(x):
    return np.ascontiguousarray(np.asarray(x, dtype=np.float64)).tobytes()


# ---------------------------------------------------------------------------------------------- round trip
def test_round_trip_is_bit_exact(tmp_path, splits):
    path = write_structures(tmp_path / "s.h5", splits, attrs={"source": "unit test", "seed": 7})
    for split, originals in splits.items():
        back = read_structures(path, split)
        assert len(back) == len(originals)
        for i, (a, b) in enumerate(zip(originals, back)):
            assert np.array_equal(a.numbers, b.numbers)
            assert _bits(a.positions) == _bits(b.positions)
            assert _bits(a.cell.array) == _bits(b.cell.array)
            assert np.array_equal(a.pbc, b.pbc)
            e = a.calc.results["energy"] if a.calc is not None else a.info["energy"]
            f = a.calc.results["forces"] if a.calc is not None else a.arrays["forces"]
            assert _bits(e) == _bits(b.get_potential_energy())
            assert _bits(f) == _bits(b.get_forces())
            if split == "val":
                s = a.calc.results["stress"] if a.calc is not None else a.info["stress"]
                assert _bits(s) == _bits(b.get_stress(voigt=False))
            else:
                assert "stress" not in b.calc.results
            expected_info = {k: v for k, v in a.info.items() if k not in ("energy", "stress")}
            expected_info.setdefault("structure_id", f"{split}:{i}")
            assert b.info == expected_info
            for k, v in expected_info.items():
                assert type(b.info[k]) is type(v), k
    assert read_structures(path, "train")[1].info["structure_id"] == "mp-149:17"
    assert [a.info["charge"] for a in read_structures(path, "test")] == [0, -1]


def test_store_reader_api(tmp_path, splits):
    path = write_structures(tmp_path / "s.h5", splits)
    with StructureStore(path) as store:
        assert store.splits == ["train", "val", "test"]  # creation order is kept
        assert store.n_structures("train") == 4 and len(store["val"]) == 2
        assert "test" in store and "nope" not in store
        arr = store.arrays("train")
        assert arr["numbers"].dtype == np.int64 and arr["positions"].shape == (arr["offsets"][-1], 3)
        assert np.array_equal(np.diff(arr["offsets"]), arr["n_atoms"])
        assert arr["cell"].shape == (4, 3, 3) and arr["pbc"].shape == (4, 3)
        assert "stress" not in arr and "stress" in store.arrays("val") and "charge" in store.arrays("test")
        assert list(arr["structure_id"]) == ["train:0", "mp-149:17", "train:2", "train:3"]
        one = store.atoms("train", 3)
        assert one.info["structure_id"] == "train:3"
        assert _bits(one.positions) == _bits(store["train"][-1].positions)
        assert [a.info["structure_id"] for a in store["train"]] == list(arr["structure_id"])
        assert store.has_labels("train")
        with pytest.raises(IndexError):
            store.atoms("train", 4)
    clone = pickle.loads(pickle.dumps(store))  # picklable for DataLoader workers; reopens lazily
    assert clone.n_structures("test") == 2 and clone.atoms("test", 1).info["charge"] == -1
    clone.close()
    with pytest.raises(StoreError, match="several splits") as err:
        read_structures(path)
    assert "train" in str(err.value) and "s.h5" in str(err.value)


def test_plain_list_and_unlabelled(tmp_path):
    mols = [molecule("H2O"), molecule("CO2")]
    path = write_structures(tmp_path / "u.h5", mols, require_labels=False, labels="dft")
    with StructureStore(path) as store:
        assert store.splits == ["all"]
        assert store.attrs["labels"] == "none"  # nothing labelled, whatever the caller said
        assert not store.has_labels()
    back = read_structures(path)
    assert back[0].calc is None and back[1].info["structure_id"] == "all:1"
    with pytest.raises(StoreError, match="no energy/forces"):
        structures_from_file(path)
    assert len(structures_from_file(path, require_labels=False)) == 2


def test_labels_from_a_real_calculator(tmp_path):
    atoms = bulk("Cu", cubic=True)
    atoms.rattle(0.05, seed=1)
    atoms.calc = EMT()
    e, f = atoms.get_potential_energy(), atoms.get_forces()
    back = read_structures(write_structures(tmp_path / "emt.h5", [atoms], labels="emt"))[0]
    assert back.get_potential_energy() == e and np.array_equal(back.get_forces(), f)


def test_attributes_and_units(tmp_path, splits):
    path = write_structures(
        tmp_path / "s.h5",
        splits,
        labels="teacher:emt:1",
        attrs={"source": "demo", "seed": 3, "subset": {"elements": ["H", "O"]}, "frac": 0.5},
    )
    with h5py.File(path, "r") as f:
        assert f.attrs["format"] == FORMAT and f.attrs["format_version"] == 1
        for key, unit in UNITS.items():
            assert f.attrs[key] == unit
        assert f.attrs["energy_unit"] == "eV" and f.attrs["length_unit"] == "Angstrom"
        assert f.attrs["force_unit"] == "eV/Angstrom" and f.attrs["stress_unit"] == "eV/Angstrom^3"
        assert f["train"].attrs["n_structures"] == 4
        assert len(f["train"].attrs["content_hash"]) == 64
    attrs = StructureStore(path).attrs
    assert attrs["labels"] == "teacher:emt:1" and attrs["source"] == "demo" and attrs["seed"] == 3
    assert attrs["frac"] == 0.5 and attrs["subset"] == '{"elements":["H","O"]}'
    with pytest.raises(TypeError, match="attribute 'bad'"):
        write_structures(tmp_path / "x.h5", splits, attrs={"bad": object()})
    with pytest.raises(ValueError, match="reserved"):
        write_structures(tmp_path / "x.h5", splits, attrs={"energy_unit": "kcal/mol"})


# ---------------------------------------------------------------------------------------------- determinism, hash
def test_identical_input_gives_identical_bytes(tmp_path, splits):
    a = write_structures(tmp_path / "a.h5", splits, attrs={"seed": 1, "source": "x"})
    time.sleep(1.1)  # any timestamp in the file would now differ
    b = write_structures(tmp_path / "b.h5", splits, attrs={"source": "x", "seed": 1})
    assert a.read_bytes() == b.read_bytes()


def test_content_hash_stable_and_sensitive(tmp_path, splits):
    p1 = write_structures(tmp_path / "1.h5", splits)
    p2 = write_structures(tmp_path / "2.h5", {"train": splits["train"]})
    s1, s2 = StructureStore(p1), StructureStore(p2)
    h = s1.content_hash("train")
    assert h == s2.content_hash("train") == content_hash(s1.arrays("train"))
    assert s1.verify() == {"train": h, "val": s1.content_hash("val"), "test": s1.content_hash("test")}
    assert len({s1.content_hash(s) for s in s1.splits}) == 3

    atoms = splits["train"][0]
    atoms.positions[0, 0] = np.nextafter(atoms.positions[0, 0], np.inf)  # one ulp
    atoms.calc = SinglePointCalculator(atoms, energy=atoms.calc.results["energy"], forces=atoms.calc.results["forces"])
    p3 = write_structures(tmp_path / "3.h5", {"train": splits["train"]})
    assert StructureStore(p3).content_hash("train") != h

    arr = s1.arrays("train")
    arr["energy"] = arr["energy"].copy()
    arr["energy"][2] = np.nextafter(arr["energy"][2], -np.inf)
    assert content_hash(arr) != h


def test_hash_mismatch_is_detected(tmp_path, splits):
    path = write_structures(tmp_path / "s.h5", splits)
    with h5py.File(path, "r+") as f:
        f["val/energy"][0] += 1.0
    with pytest.raises(StoreError, match="content hash mismatch") as err:
        StructureStore(path).verify()
    assert "s.h5" in str(err.value) and "val" in str(err.value)


# ---------------------------------------------------------------------------------------------- atomic write
def test_failed_write_keeps_previous_file_and_leaves_no_temp(tmp_path, splits, monkeypatch):
    path = write_structures(tmp_path / "s.h5", splits)
    before = path.read_bytes()
    real = h5py.Group.create_dataset

    def failing(self, name, *args, **kwargs):
        if name == "forces" and self.name == "/val":
            raise RuntimeError("disk full (simulated)")
        return real(self, name, *args, **kwargs)

    monkeypatch.setattr(h5py.Group, "create_dataset", failing)
    with pytest.raises(RuntimeError, match="simulated"):
        write_structures(path, {"val": splits["val"], "train": splits["train"]})
    with pytest.raises(RuntimeError, match="simulated"):
        write_structures(tmp_path / "new.h5", splits)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.h5"]


def test_invalid_input_never_touches_the_file(tmp_path, splits):
    path = write_structures(tmp_path / "s.h5", splits)
    before = path.read_bytes()
    bad = [a.copy() for a in splits["val"]]  # copies lose their labels
    with pytest.raises(StructureError):
        write_structures(path, {"val": bad})
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.h5"]


# ---------------------------------------------------------------------------------------------- malformed structures
def _assert_names(err, *parts):
    msg = str(err.value)
    for part in parts:
        assert part in msg, (part, msg)
    assert "fix:" in msg, msg


def _labelled(atoms):
    return _label(atoms, np.random.default_rng(5))


def test_missing_forces(tmp_path):
    structs = [_labelled(molecule("H2O")), _labelled(molecule("CH4")), molecule("NH3")]
    structs[2].info["energy"] = -3.0
    with pytest.raises(StructureError, match="energy but no forces") as err:
        write_structures(tmp_path / "mf.h5", {"train": structs})
    _assert_names(err, "mf.h5", "structure 2", "train")
    assert not (tmp_path / "mf.h5").exists()


def test_missing_labels_and_partial_labels(tmp_path):
    structs = [_labelled(molecule("H2O")), molecule("CH4")]
    with pytest.raises(StructureError, match="no energy and no forces") as err:
        write_structures(tmp_path / "ml.h5", structs)
    _assert_names(err, "ml.h5", "structure 1")
    with pytest.raises(StructureError, match="all structures of a split or for none") as err:
        write_structures(tmp_path / "ml.h5", structs, require_labels=False)
    _assert_names(err, "ml.h5", "structure 1")


@pytest.mark.parametrize("what", ["positions", "energy", "forces", "stress"])
def test_nan_is_rejected(tmp_path, what):
    structs = [_labelled(bulk("Cu", cubic=True)) for _ in range(3)]
    target = structs[1]
    res = dict(target.calc.results)
    res["stress"] = np.zeros(6)
    if what == "positions":
        target.positions[1, 2] = np.nan
    elif what == "energy":
        res["energy"] = np.nan
    elif what == "forces":
        res["forces"] = res["forces"].copy()
        res["forces"][0, 0] = np.inf
    else:
        res["stress"][3] = np.nan
    target.calc = SinglePointCalculator(target, **res)
    with pytest.raises(StructureError, match="NaN or inf") as err:
        write_structures(tmp_path / "nan.h5", structs)
    _assert_names(err, "nan.h5", "structure 1", what)


def test_wrong_forces_shape(tmp_path):
    structs = [_labelled(molecule("H2O")), _labelled(molecule("CH4"))]
    structs[1].calc = SinglePointCalculator(structs[1], energy=1.0, forces=np.zeros((4, 3)))
    with pytest.raises(StructureError, match=r"shape \(4, 3\), expected \(5, 3\)") as err:
        write_structures(tmp_path / "shape.h5", structs)
    _assert_names(err, "shape.h5", "structure 1", "forces")


def test_validate_atoms_cases(tmp_path):
    f = tmp_path / "in.xyz"
    good = _labelled(molecule("H2O"))
    validate_atoms(good, index=0, path=f)
    validate_atoms(molecule("H2O"), index=0, require_labels=False)
    with pytest.raises(StructureError, match="no atoms") as err:
        validate_atoms(Atoms(), index=4, path=f)
    _assert_names(err, "in.xyz", "structure 4")
    x = Atoms("X2", positions=[[0, 0, 0], [0, 0, 1]])
    with pytest.raises(StructureError, match="unknown element") as err:
        validate_atoms(x, index=5, path=f, require_labels=False)
    _assert_names(err, "in.xyz", "structure 5")
    big = Atoms(numbers=[1, 119], positions=[[0, 0, 0], [0, 0, 1]])
    with pytest.raises(StructureError, match=r"\[119\]"):
        validate_atoms(big, index=0, require_labels=False)
    slab = bulk("Cu", cubic=True)
    slab.cell[2] = 0.0
    with pytest.raises(StructureError, match="cell vector 2 is zero") as err:
        validate_atoms(slab, index=6, path=f, require_labels=False)
    _assert_names(err, "in.xyz", "structure 6")
    flat = bulk("Cu", cubic=True)
    flat.cell[2] = flat.cell[0] + flat.cell[1]
    with pytest.raises(StructureError, match="degenerate"):
        validate_atoms(flat, index=0, require_labels=False)
    slab.pbc = [True, True, False]  # a 2D-periodic slab with a zero third vector is fine
    validate_atoms(slab, index=0, require_labels=False)
    stale = _labelled(molecule("H2O"))
    stale.positions[0, 0] += 0.1
    with pytest.raises(StructureError, match="other positions"):
        validate_atoms(stale, index=0)


def test_duplicate_structure_ids(tmp_path):
    structs = [_labelled(molecule("H2O")), _labelled(molecule("CH4"))]
    for a in structs:
        a.info["structure_id"] = "spice:O:0"
    with pytest.raises(StructureError, match="also used by structure 0") as err:
        write_structures(tmp_path / "dup.h5", structs)
    _assert_names(err, "dup.h5", "structure 1")


def test_overlapping_atoms_in_a_molecule(tmp_path):
    dup = molecule("CH4")
    dup += dup[2:3]  # atom 5 duplicates atom 2
    structs = [_labelled(molecule("H2O")), _labelled(dup)]
    with pytest.raises(StructureError, match=r"atoms 2 and 5 are 0\.000 Å apart") as err:
        write_structures(tmp_path / "ov.h5", {"train": structs})
    _assert_names(
        err,
        "ov.h5",
        "structure 1 of split 'train'",
        "MIN_DISTANCE_A = 0.5 Å",
        "remove the structure with a selector",
        "fix the geometry",
    )
    assert err.value.structure == "1 of split 'train'"
    assert not (tmp_path / "ov.h5").exists()
    validate_atoms(structs[1], index=1)  # readers pass it on, so that a selector can drop it before the write
    close = molecule("H2O")
    close.positions[2] = close.positions[0] + [0.3, 0.2, 0.0]
    with pytest.raises(StructureError, match=r"atoms 0 and 2 are 0\.361 Å apart"):
        write_structures(tmp_path / "ov.h5", [_labelled(close)])
    dup.info["structure_id"] = "spice:CH4:7"
    with pytest.raises(StructureError, match=r"structure_id 'spice:CH4:7'") as err:
        write_structures(tmp_path / "ov.h5", [_labelled(dup)])
    _assert_names(err, '{"not": {"info_in": {"key": "structure_id", "values": ["spice:CH4:7"]}}}')


@pytest.mark.parametrize("repeat", [(1, 1, 1), (5, 5, 3)])  # 4 atoms: all pairs in numpy; 300 atoms: vesin
def test_overlapping_periodic_images(tmp_path, repeat):
    crystal = bulk("Cu", cubic=True).repeat(repeat)
    crystal.positions[1] = crystal.positions[0] + crystal.cell[0] - [0.2, 0.0, 0.0]  # 0.2 Å from atom 0's image
    structs = [_labelled(bulk("Cu", cubic=True)), _labelled(crystal)]
    with pytest.raises(StructureError, match=r"atom 0 and a periodic image of atom 1 are 0\.200 Å apart") as err:
        write_structures(tmp_path / "pbc.h5", {"val": structs})
    _assert_names(err, "pbc.h5", "structure 1 of split 'val'", "remove the structure with a selector")
    slab = crystal.copy()
    slab.pbc = [False, True, True]  # the image is across a non-periodic direction: no overlap
    write_structures(tmp_path / "slab.h5", [_labelled(slab)])
    thin = Atoms("Cu", cell=[0.3, 4.0, 4.0], pbc=True)
    with pytest.raises(StructureError, match=r"atom 0 and its own periodic image are 0\.300 Å apart"):
        write_structures(tmp_path / "thin.h5", [_labelled(thin)])


# ---------------------------------------------------------------------------------------------- malformed stores
def test_truncated_hdf5(tmp_path, splits):
    path = write_structures(tmp_path / "trunc.h5", splits)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(StoreError, match="truncated or corrupt") as err:
        read_structures(path, "train")
    _assert_names(err, "trunc.h5")


def test_missing_dataset(tmp_path, splits):
    path = write_structures(tmp_path / "md.h5", splits)
    with h5py.File(path, "r+") as f:
        del f["val/positions"]
    with pytest.raises(StoreError, match="required dataset 'positions' is missing") as err:
        StructureStore(path)
    _assert_names(err, "md.h5", "val")
    with h5py.File(path, "r+") as f:
        del f["val"]
        del f["train/forces"]
    with pytest.raises(StoreError, match="has 'energy' but no 'forces'") as err:
        read_structures(path, "test")
    _assert_names(err, "md.h5", "train")


def test_inconsistent_offsets(tmp_path, splits):
    path = write_structures(tmp_path / "off.h5", splits)
    with h5py.File(path, "r+") as f:
        f["train/offsets"][2] += 1
    with pytest.raises(StoreError, match="inconsistent offsets") as err:
        StructureStore(path)
    _assert_names(err, "off.h5", "train", "structure 1")


def test_not_hdf5_missing_or_foreign(tmp_path, splits):
    txt = tmp_path / "notes.h5"
    txt.write_text("this is not HDF5\n" * 100)
    with pytest.raises(StoreError, match="not an HDF5 file") as err:
        StructureStore(txt)
    _assert_names(err, "notes.h5")
    with pytest.raises(StoreError, match="does not exist") as err:
        read_structures(tmp_path / "absent.h5")
    _assert_names(err, "absent.h5")
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as f:
        f.create_dataset("x", data=np.zeros(3))
    with pytest.raises(StoreError, match="no 'format' attribute") as err:
        StructureStore(foreign)
    _assert_names(err, "foreign.h5")
    with h5py.File(foreign, "a") as f:
        f.attrs["format"] = "hessdistill.hessians"
    with pytest.raises(StoreError, match="not a 'hessdistill.structures'"):
        StructureStore(foreign)


# ---------------------------------------------------------------------------------------------- extxyz and dispatch
def test_extxyz_default_keys_round_trip(tmp_path, splits):
    structs = splits["val"]
    path = write_extxyz(tmp_path / "v.extxyz", structs)
    back = read_extxyz(path)
    assert len(back) == 2
    for a, b in zip(structs, back):
        np.testing.assert_allclose(b.positions, a.positions, atol=1e-7)
        e = a.calc.results["energy"] if a.calc is not None else a.info["energy"]
        f = a.calc.results["forces"] if a.calc is not None else a.arrays["forces"]
        assert b.get_potential_energy() == pytest.approx(e, abs=1e-9)
        np.testing.assert_allclose(b.get_forces(), f, atol=1e-7)
        assert b.get_stress(voigt=False).shape == (3, 3)
        assert b.info["mp_id"] == a.info["mp_id"]
    assert structures_from_file(path)[1].info["config_type"] == "bulk"


def test_extxyz_custom_keys(tmp_path, splits):
    structs = splits["val"]
    keys = {"energy_key": "REF_energy", "forces_key": "REF_forces", "stress_key": "REF_stress"}
    path = write_extxyz(tmp_path / "ref.xyz", structs, **keys)
    text = path.read_text()
    assert "REF_energy=" in text and "REF_forces" in text
    back = read_extxyz(path, **keys)
    e0 = structs[0].calc.results["energy"]
    assert back[0].get_potential_energy() == pytest.approx(e0, abs=1e-9)
    assert back[0].get_forces().shape == (len(structs[0]), 3)
    assert back[0].get_stress(voigt=False) == pytest.approx(structs[0].calc.results["stress"], abs=1e-9)
    assert "REF_energy" not in back[0].info and "REF_forces" not in back[0].arrays
    with pytest.raises(StructureError, match="no energy and no forces") as err:
        read_extxyz(path)  # the default keys find nothing
    _assert_names(err, "ref.xyz", "structure 0")
    assert structures_from_file(path, **keys)[1].get_potential_energy() == back[1].get_potential_energy()
    only_last = read_extxyz(path, index="-1", **keys)
    assert len(only_last) == 1 and only_last[0].get_potential_energy() == back[1].get_potential_energy()
    # hand-written file with other names, the style of many public data sets
    hand = tmp_path / "hand.xyz"
    hand.write_text(
        '2\nProperties=species:S:1:pos:R:3:dft_forces:R:3 dft_energy=-31.5 config_type=dimer pbc="F F F"\n'
        "H 0 0 0 0 0 0.5\nH 0 0 0.74 0 0 -0.5\n"
    )
    hand.write_text(hand.read_text().replace("config_type", "total_charge=1 config_type"))
    (h2,) = read_extxyz(hand, energy_key="dft_energy", forces_key="dft_forces", charge_key="total_charge")
    assert h2.get_potential_energy() == -31.5 and h2.get_forces()[0, 2] == 0.5 and h2.info["config_type"] == "dimer"
    assert h2.info["charge"] == 1 and "total_charge" not in h2.info
    back_h5 = read_structures(write_structures(tmp_path / "hand.h5", [h2]))[0]
    assert back_h5.get_potential_energy() == -31.5 and back_h5.info["config_type"] == "dimer"
    assert back_h5.info["charge"] == 1


def test_extxyz_unknown_symbol_names_file_and_frame(tmp_path):
    frame = '2\nProperties=species:S:1:pos:R:3:forces:R:3 energy=-1.5 pbc="F F F"\n{a} 0 0 0 0 0 0\nH 0 0 0.7 0 0 0\n'
    path = tmp_path / "bad.xyz"
    path.write_text(frame.format(a="H") + frame.format(a="H") + frame.format(a="Xy"))
    with pytest.raises(StructureError, match="unknown element symbol 'Xy'") as err:
        read_extxyz(path)
    _assert_names(err, "bad.xyz", "structure 2")
    nan = tmp_path / "nan.xyz"
    nan.write_text(frame.format(a="H") + frame.format(a="H").replace("0.7 0 0 0", "nan 0 0 0"))
    with pytest.raises(StructureError, match="positions contain NaN") as err:
        structures_from_file(nan)
    _assert_names(err, "nan.xyz", "structure 1")
    garbage = tmp_path / "garbage.xyz"
    garbage.write_text("not an xyz file\n")
    with pytest.raises(StructureError, match="not a valid extended XYZ") as err:
        read_extxyz(garbage)
    _assert_names(err, "garbage.xyz")
    empty = tmp_path / "empty.xyz"
    empty.write_text("")
    with pytest.raises(StructureError, match="no structures") as err:
        read_extxyz(empty)
    _assert_names(err, "empty.xyz")


def test_structures_from_file_dispatch(tmp_path, splits):
    import ase.io

    h5 = write_structures(tmp_path / "s.h5", splits)
    assert len(structures_from_file(h5, split="val")) == 2
    traj = tmp_path / "t.traj"
    ase.io.write(traj, splits["train"][:2])
    got = structures_from_file(traj)
    assert len(got) == 2 and got[0].get_potential_energy() == splits["train"][0].get_potential_energy()
    ase.io.write(tmp_path / "u.traj", [molecule("H2O")])
    with pytest.raises(StructureError, match="no energy") as err:
        structures_from_file(tmp_path / "u.traj")
    _assert_names(err, "u.traj", "structure 0")
    with pytest.raises(StructureError, match="unsupported file type") as err:
        structures_from_file(tmp_path / "x.cif")
    _assert_names(err, "x.cif")
    with pytest.raises(TypeError, match="unexpected keyword"):
        structures_from_file(h5, energy_key="E")
