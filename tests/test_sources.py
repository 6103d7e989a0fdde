"""Readers of the published datasets (hessdistill.data.sources) on tiny files in the published formats."""

from __future__ import annotations

import gzip
import hashlib
import json
import re

import h5py
import numpy as np
import pytest
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator

from hessdistill.core.digest import file_digest
from hessdistill.core.errors import StructureError
from hessdistill.data import read_structures, write_structures
from hessdistill.data import sources as src
from hessdistill.data.sources import (
    SOURCES,
    ChecksumError,
    expected_checksum,
    iter_mptrj,
    read_generic,
    read_maceoff_xyz,
    read_md22,
    read_mptrj,
    read_source,
    read_spice_hdf5,
    smiles_formal_charge,
    spice_config_type,
    vasp_stress_to_ase,
    verify_checksum,
)
from hessdistill.data.sources import mptrj as mptrj_reader

# reference values written out, not taken from ase.units, so a wrong constant in the code would show
HARTREE = 27.211386  # eV
BOHR = 0.529177  # Å
KCAL_MOL = 0.0433641  # eV
GPA = 1 / 160.21766  # eV/Å³


def _roundtrip(tmp_path, atoms_list, name="store.h5"):
    path = write_structures(tmp_path / name, {"train": atoms_list})
    back = read_structures(path, "train")
    assert len(back) == len(atoms_list)
    for a, b in zip(atoms_list, back):
        assert b.info["structure_id"] == a.info["structure_id"]
        np.testing.assert_array_equal(a.numbers, b.numbers)
        np.testing.assert_allclose(b.positions, a.positions, rtol=0, atol=1e-12)
        assert b.get_potential_energy() == pytest.approx(a.get_potential_energy(), abs=1e-9)
        np.testing.assert_allclose(b.get_forces(), a.get_forces(), atol=1e-12)
    return back


def _truncate(path, fraction=0.5):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])


# ============================================================================================ helpers
def test_unit_constants():
    assert src.HARTREE_EV == pytest.approx(HARTREE, rel=1e-7)
    assert src.BOHR_ANGSTROM == pytest.approx(BOHR, rel=1e-6)
    assert src.KCAL_MOL_EV == pytest.approx(KCAL_MOL, rel=1e-6)


def test_vasp_stress_sign_and_units():
    # +10 kBar in VASP = 1 GPa of compression = -1 GPa in ASE's (tensile-positive) convention
    s = vasp_stress_to_ase(np.diag([10.0, 10.0, 10.0]))
    np.testing.assert_allclose(np.diag(s), -GPA, rtol=1e-6)
    assert s[0, 0] == pytest.approx(-0.0062415, rel=1e-4)
    # a stretched cell (negative VASP stress) has positive ASE stress; off-diagonals scale the same way
    s = vasp_stress_to_ase([[-5.0, 2.0, 0], [2.0, 0, 0], [0, 0, 0]])
    assert s[0, 0] == pytest.approx(0.5 * GPA, rel=1e-6)
    assert s[0, 1] == pytest.approx(-0.2 * GPA, rel=1e-6)


@pytest.mark.parametrize(
    "smiles, charge",
    [
        ("[H:3][C:1](=[O:2])[H:4]", 0),
        ("[H:4][C:1](=[O:2])[O-:3]", -1),
        ("[N+:1]([H:2])([H:3])([H:4])[H:5]", 1),
        ("[NH4+]", 1),
        ("[Ca+2]", 2),
        ("[O--]", -2),
        ("[Na+].[Cl-]", 0),
        ("CCO", 0),
        ("[C@@H:3]", 0),
    ],
)
def test_smiles_formal_charge(smiles, charge):
    assert smiles_formal_charge(smiles) == charge


@pytest.mark.parametrize(
    "subset, short",
    [
        ("SPICE DES Monomers Single Points Dataset v1.1", "DES370K Monomers"),
        ("SPICE DES370K Single Points Dataset v1.0", "DES370K Dimers"),
        ("SPICE DES370K Single Points Dataset Supplement v1.1", "DES370K Dimers"),
        ("SPICE Solvated Amino Acids Single Points Dataset v1.1", "Solvated Amino Acids"),
        ("SPICE PubChem Set 7 Single Points Dataset v1.0", "PubChem"),
        ("SPICE PubChem Boron Silicon v1.0", "PubChem"),
        ("SPICE Solvated PubChem Set 1 v1.0", "Solvated PubChem"),
        ("SPICE Dipeptides Single Points Dataset v1.3", "Dipeptides"),
        ("SPICE Ion Pairs Single Points Dataset v1.2", "Ion Pairs"),
        ("SPICE Water Clusters v1.0", "Water Clusters"),
        ("SPICE Amino Acid Ligand v1.0", "Amino Acid Ligand Pairs"),
    ],
)
def test_spice_config_type(subset, short):
    assert spice_config_type(subset) == short


# ============================================================================================ SPICE 2 HDF5
FORMALDEHYDE = dict(
    name="[h:3][c:1](=[o:2])[h:4]",
    subset="SPICE DES Monomers Single Points Dataset v1.1",
    smiles="[H:3][C:1](=[O:2])[H:4]",
    z=[1, 6, 8, 1],
    charges=[0.1, 0.3, -0.5, 0.1],
)
FORMATE = dict(
    name="formate",
    subset="SPICE PubChem Set 1 Single Points Dataset v1.3",
    smiles="[H:4][C:1](=[O:2])[O-:3]",
    z=[6, 8, 8, 1],
    charges=[0.5, -0.7, -0.7, -0.1],
)


def _spice_group(f, spec, m, rng, *, mbis=True):
    """One molecule group exactly as SPICE's downloader.py writes it."""
    n = len(spec["z"])
    g = f.create_group(spec["name"])
    g.create_dataset("subset", data=[spec["subset"]], dtype=h5py.string_dtype())
    g.create_dataset("smiles", data=[spec["smiles"]], dtype=h5py.string_dtype())
    g.create_dataset("atomic_numbers", data=np.array(spec["z"]), dtype=np.int16)
    conf = rng.normal(scale=2.0, size=(m, n, 3))
    g.create_dataset("conformations", data=conf, dtype=np.float32).attrs["units"] = "bohr"
    energy = -114.5 + rng.normal(scale=0.01, size=m)
    g.create_dataset("formation_energy", data=energy + 113.9, dtype=np.float64).attrs["units"] = "hartree"
    g.create_dataset("dft_total_energy", data=energy, dtype=np.float64).attrs["units"] = "hartree"
    grad = rng.normal(scale=0.02, size=(m, n, 3))
    g.create_dataset("dft_total_gradient", data=grad, dtype=np.float32).attrs["units"] = "hartree/bohr"
    if mbis:
        q = np.tile(np.array(spec["charges"])[None, :, None], (m, 1, 1))
        g.create_dataset("mbis_charges", data=q, dtype=np.float32).attrs["units"] = "elementary_charge"
    g.create_dataset("mbis_dipoles", data=np.zeros((m, n, 3)), dtype=np.float32)
    return g


@pytest.fixture
def spice_file(tmp_path):
    rng = np.random.default_rng(1)
    path = tmp_path / "SPICE-2.0.1.hdf5"
    with h5py.File(path, "w") as f:
        _spice_group(f, FORMALDEHYDE, 2, rng)
        _spice_group(f, FORMATE, 3, rng)
    return path


def test_spice_units_labels_and_metadata(spice_file, tmp_path):
    atoms = read_spice_hdf5(spice_file)
    assert len(atoms) == 5
    with h5py.File(spice_file) as f:
        g = f["formate"]
        conf, e, grad = g["conformations"][()], g["dft_total_energy"][()], g["dft_total_gradient"][()]
        form = g["formation_energy"][()]
    a = atoms[2 + 1]  # formaldehyde has 2 conformations (groups come in name order); formate conformation 1
    assert a.info["molecule"] == "formate" and a.info["conformation"] == 1
    np.testing.assert_allclose(a.positions, conf[1].astype(np.float64) * BOHR, rtol=1e-6)
    assert a.get_potential_energy() == pytest.approx(e[1] * HARTREE, rel=1e-8)
    # forces = -gradient, hartree/bohr -> eV/Å
    np.testing.assert_allclose(a.get_forces(), -grad[1].astype(np.float64) * HARTREE / BOHR, rtol=1e-6)
    assert a.info["formation_energy"] == pytest.approx(form[1] * HARTREE, rel=1e-8)
    assert not a.pbc.any()
    assert a.info["smiles"] == FORMATE["smiles"]
    assert a.info["subset"] == FORMATE["subset"] and a.info["config_type"] == "PubChem"
    assert a.info["charge"] == -1 and a.info["charge_source"] == "smiles"
    assert atoms[0].info["config_type"] == "DES370K Monomers" and atoms[0].info["charge"] == 0
    ids = [x.info["structure_id"] for x in atoms]
    assert len(set(ids)) == len(ids) and ids[3] == "spice2:formate:1"
    back = _roundtrip(tmp_path, atoms)
    assert back[3].info["charge"] == -1 and back[3].info["config_type"] == "PubChem"


def test_spice_filters_and_mbis_charge(spice_file):
    neutral = read_spice_hdf5(spice_file, neutral_only=True)
    assert [a.info["molecule"] for a in neutral] == [FORMALDEHYDE["name"]] * 2
    mbis = read_spice_hdf5(spice_file, charge_from="mbis")
    assert [a.info["charge"] for a in mbis] == [0, 0, -1, -1, -1]
    assert {a.info["charge_source"] for a in mbis} == {"mbis"}
    by_short = read_spice_hdf5(spice_file, subsets=["DES370K Monomers"])
    by_raw = read_spice_hdf5(spice_file, subsets=[FORMATE["subset"]])
    assert len(by_short) == 2 and len(by_raw) == 3
    assert len(read_spice_hdf5(spice_file, molecules=["formate"])) == 3
    assert len(read_source("spice2", spice_file, neutral_only=True)) == 2


def test_spice_missing_dataset(tmp_path):
    path = tmp_path / "bad.hdf5"
    with h5py.File(path, "w") as f:
        g = _spice_group(f, FORMATE, 2, np.random.default_rng(0))
        del g["dft_total_gradient"]
    with pytest.raises(StructureError, match=r"group 'formate'.*dft_total_gradient") as exc:
        read_spice_hdf5(path)
    assert str(path) in str(exc.value) and "fix:" in str(exc.value)


def test_spice_missing_mbis_only_matters_for_mbis_charges(tmp_path):
    path = tmp_path / "nombis.hdf5"
    with h5py.File(path, "w") as f:
        _spice_group(f, FORMATE, 2, np.random.default_rng(0), mbis=False)
    assert len(read_spice_hdf5(path)) == 2
    with pytest.raises(StructureError, match="mbis_charges"):
        read_spice_hdf5(path, charge_from="mbis")


def test_spice_nan_names_group_and_conformation(tmp_path):
    path = tmp_path / "nan.hdf5"
    with h5py.File(path, "w") as f:
        g = _spice_group(f, FORMATE, 3, np.random.default_rng(0))
        e = g["dft_total_energy"][()]
        e[1] = np.nan
        g["dft_total_energy"][...] = e
    with pytest.raises(StructureError, match=r"group 'formate' conformation 1.*dft_total_energy.*NaN"):
        read_spice_hdf5(path)
    with pytest.warns(UserWarning, match="dropping 1"):
        kept = read_spice_hdf5(path, skip_nonfinite=True)
    assert [a.info["conformation"] for a in kept] == [0, 2]


def test_spice_wrong_shape(tmp_path):
    path = tmp_path / "shape.hdf5"
    with h5py.File(path, "w") as f:
        g = _spice_group(f, FORMATE, 2, np.random.default_rng(0))
        del g["dft_total_gradient"]
        g.create_dataset("dft_total_gradient", data=np.zeros((2, 3, 3)), dtype=np.float32)
    with pytest.raises(
        StructureError,
        match=r"group 'formate'.*'dft_total_gradient' has shape \(2, 3, 3\), "
        r"expected \(2, 4, 3\)",
    ):
        read_spice_hdf5(path)


def test_spice_truncated_and_wrong_files(spice_file, tmp_path):
    _truncate(spice_file, 0.5)
    with pytest.raises(StructureError, match="truncated or corrupt") as exc:
        read_spice_hdf5(spice_file)
    assert str(spice_file) in str(exc.value)
    text = tmp_path / "not.hdf5"
    text.write_text("hello")
    with pytest.raises(StructureError, match="not an HDF5 file"):
        read_spice_hdf5(text)
    with pytest.raises(StructureError, match="does not exist"):
        read_spice_hdf5(tmp_path / "missing.hdf5")
    store = write_structures(tmp_path / "store.h5", [_labelled_water()])
    with pytest.raises(StructureError, match="structure store, not a SPICE release"):
        read_spice_hdf5(store)


def _labelled_water():
    a = Atoms("OH2", positions=[[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]])
    a.calc = SinglePointCalculator(a, energy=-1.0, forces=np.zeros((3, 3)))
    return a


# ============================================================================================ MACE-OFF extxyz
MACEOFF_XYZ = """\
4
Properties=species:S:1:pos:R:3:REF_forces:R:3 config_type="DES370K Monomers" REF_energy=-3112.8234571 total_charge=0 smiles="[H:3][C:1](=[O:2])[H:4]" pbc="F F F"
H        0.00000000       0.94000000       0.58000000       0.01200000      -0.30400000       0.00100000
C        0.00000000       0.00000000       0.00000000      -0.02500000       0.11000000       0.00000000
O        0.00000000       0.00000000      -1.21000000       0.00100000       0.00200000      -0.40000000
H        0.00000000      -0.94000000       0.58000000       0.01200000       0.19200000       0.39900000
3
Properties=species:S:1:pos:R:3:REF_forces:R:3 config_type="Solvated Amino Acids" REF_energy=-2078.1561 total_charge=0 smiles="[H:2][O:1][H:3]" pbc="F F F"
O        0.00000000       0.00000000       0.11900000       0.00000000       0.00000000       0.51000000
H        0.00000000       0.76300000      -0.47700000       0.00000000       0.33000000      -0.25500000
H        0.00000000      -0.76300000      -0.47700000       0.00000000      -0.33000000      -0.25500000
3
Properties=species:S:1:pos:R:3:REF_forces:R:3 config_type="PubChem" REF_energy=-2066.5 total_charge=-1 smiles="[O-:1][H:2].[H:3]" pbc="F F F"
O        0.00000000       0.00000000       0.00000000       0.10000000       0.00000000       0.00000000
H        0.97000000       0.00000000       0.00000000      -0.10000000       0.00000000       0.00000000
H        3.00000000       0.00000000       0.00000000       0.00000000       0.00000000       0.00000000
"""


@pytest.fixture
def maceoff_file(tmp_path):
    path = tmp_path / "train_large_neut_no_bad_clean.xyz"
    path.write_text(MACEOFF_XYZ)
    return path


def test_maceoff_labels_and_metadata(maceoff_file, tmp_path):
    atoms = read_maceoff_xyz(maceoff_file)
    assert len(atoms) == 3
    a = atoms[0]
    assert a.get_potential_energy() == -3112.8234571  # eV already: no conversion
    np.testing.assert_allclose(a.get_forces()[0], [0.012, -0.304, 0.001])
    assert a.info["config_type"] == "DES370K Monomers"
    assert a.info["smiles"] == "[H:3][C:1](=[O:2])[H:4]"
    assert a.info["charge"] == 0 and a.info["charge_source"] == "total_charge"
    assert "REF_energy" not in a.info and "REF_forces" not in a.arrays
    assert [x.info["frame"] for x in atoms] == [0, 1, 2]
    assert atoms[1].info["structure_id"] == "mace-off:train_large_neut_no_bad_clean:1"
    assert len({x.info["structure_id"] for x in atoms}) == 3
    assert atoms[2].info["charge"] == -1
    _roundtrip(tmp_path, atoms)


def test_maceoff_filters(maceoff_file):
    assert [a.info["frame"] for a in read_maceoff_xyz(maceoff_file, neutral_only=True)] == [0, 1]
    sel = read_maceoff_xyz(maceoff_file, config_types=["Solvated Amino Acids"])
    assert [a.info["frame"] for a in sel] == [1]
    assert len(read_source("mace-off", maceoff_file)) == 3


def test_maceoff_charge_fallbacks(tmp_path):
    text = MACEOFF_XYZ.replace(" total_charge=0", "").replace(" total_charge=-1", "")
    path = tmp_path / "nocharge.xyz"
    path.write_text(text)
    atoms = read_maceoff_xyz(path)
    assert [a.info["charge"] for a in atoms] == [0, 0, -1]
    assert {a.info["charge_source"] for a in atoms} == {"smiles"}
    path.write_text(re.sub(r' smiles="[^"]*"', "", text))
    atoms = read_maceoff_xyz(path)
    assert [a.info["charge"] for a in atoms] == [0, 0, 0] and atoms[0].info["charge_source"] == "default"
    assert all("charge" not in a.info for a in read_maceoff_xyz(path, default_charge=None))


def test_maceoff_missing_energy_key(tmp_path):
    path = tmp_path / "noenergy.xyz"
    path.write_text(MACEOFF_XYZ.replace("REF_energy=-2078.1561 ", ""))
    with pytest.raises(StructureError, match=r"structure 1: frame has no 'REF_energy'") as exc:
        read_maceoff_xyz(path)
    assert str(path) in str(exc.value) and "energy_key" in str(exc.value)


def test_maceoff_nan_and_truncated(tmp_path):
    path = tmp_path / "nan.xyz"
    path.write_text(MACEOFF_XYZ.replace("0.51000000", "nan"))
    with pytest.raises(StructureError, match=r"structure 1: forces contains NaN"):
        read_maceoff_xyz(path)
    path = tmp_path / "trunc.xyz"
    path.write_text("\n".join(MACEOFF_XYZ.splitlines()[:9]) + "\n")  # frame 1 loses atoms
    with pytest.raises(StructureError, match=r"structure 1"):
        read_maceoff_xyz(path)


# ============================================================================================ MPtrj JSON
def _pmg_structure(lattice, species, frac):
    """A pymatgen Structure.as_dict(), written out by hand."""
    lattice = np.asarray(lattice, dtype=float)
    lengths = np.linalg.norm(lattice, axis=1)
    sites = []
    for symbol, abc in zip(species, frac):
        sites.append(
            {
                "species": [{"element": symbol, "occu": 1}],
                "abc": list(abc),
                "properties": {"magmom": 0.0},
                "label": symbol,
                "xyz": list(np.asarray(abc) @ lattice),
            }
        )
    return {
        "@module": "pymatgen.core.structure",
        "@class": "Structure",
        "charge": 0,
        "properties": {},
        "lattice": {
            "matrix": lattice.tolist(),
            "pbc": [True, True, True],
            "a": lengths[0],
            "b": lengths[1],
            "c": lengths[2],
            "alpha": 90.0,
            "beta": 90.0,
            "gamma": 90.0,
            "volume": float(abs(np.linalg.det(lattice))),
        },
        "sites": sites,
    }


def _mptrj_frame(structure, n, *, e_unc, e_cor, stress, mp_id, rng, magmom=True, bandgap=0.0):
    return {
        "structure": structure,
        "uncorrected_total_energy": e_unc,
        "corrected_total_energy": e_cor,
        "energy_per_atom": e_cor / n,
        "ef_per_atom": -1.234,
        "e_per_atom_relaxed": e_cor / n - 0.01,
        "ef_per_atom_relaxed": -1.244,
        "force": rng.normal(scale=0.1, size=(n, 3)).round(6).tolist(),
        "stress": stress,
        "magmom": [0.5] * n if magmom else None,
        "bandgap": bandgap,
        "mp_id": mp_id,
    }


@pytest.fixture
def mptrj_data():
    rng = np.random.default_rng(3)
    cscl = _pmg_structure(np.eye(3) * 4.1, ["Cs", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    y2o3 = _pmg_structure(
        [[3.5, 0.1, 0], [0, 3.6, 0], [0.2, 0, 3.7]],
        ["Y", "Y", "O", "O", "O"],
        [[0, 0, 0], [0.5, 0.5, 0.5], [0.25, 0.25, 0.25], [0.75, 0.25, 0.5], [0.1, 0.6, 0.9]],
    )
    return {
        "mp-573697": {
            "mp-573697-0-0": _mptrj_frame(
                cscl,
                2,
                e_unc=-7.25,
                e_cor=-7.5,
                mp_id="mp-573697",
                rng=rng,
                stress=[[10.0, 0.0, 0.0], [0.0, 10.0, 0.0], [0.0, 0.0, 10.0]],
            ),
            "mp-573697-0-1": _mptrj_frame(
                cscl,
                2,
                e_unc=-7.26,
                e_cor=-7.51,
                mp_id="mp-573697",
                rng=rng,
                stress=[[-2.0, 0.5, 0.0], [0.5, -2.0, 0.0], [0.0, 0.0, -2.0]],
                magmom=False,
                bandgap=5.3,
            ),
        },
        "mp-2652": {
            "mp-1234-1-3": _mptrj_frame(
                y2o3,
                5,
                e_unc=-40.0,
                e_cor=-41.4,
                mp_id="mp-2652",
                rng=rng,
                stress=[[1.0, 0.2, 0.3], [0.2, 2.0, 0.4], [0.3, 0.4, 3.0]],
                bandgap=4.1,
            ),
        },
    }


@pytest.fixture
def mptrj_file(tmp_path, mptrj_data):
    path = tmp_path / "MPtrj_2022.9_full.json"
    path.write_text(json.dumps(mptrj_data))
    return path


def test_mptrj_labels_units_and_metadata(mptrj_file, mptrj_data, tmp_path):
    atoms = read_mptrj(mptrj_file)
    assert [a.info["frame_id"] for a in atoms] == ["mp-573697-0-0", "mp-573697-0-1", "mp-1234-1-3"]
    a = atoms[0]
    assert a.get_chemical_symbols() == ["Cs", "Cl"]
    assert a.pbc.all()
    np.testing.assert_allclose(a.cell.array, np.eye(3) * 4.1)
    np.testing.assert_allclose(a.positions[1], [2.05, 2.05, 2.05])
    assert a.get_potential_energy() == -7.5  # corrected by default
    np.testing.assert_allclose(a.get_forces(), mptrj_data["mp-573697"]["mp-573697-0-0"]["force"])
    # +10 kBar (VASP, compressive) -> -1 GPa in ASE's convention, Voigt order xx yy zz yz xz xy
    np.testing.assert_allclose(a.get_stress(), [-GPA] * 3 + [0, 0, 0], rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(a.calc.results["magmoms"], [0.5, 0.5])
    assert "magmoms" not in atoms[1].calc.results
    s = atoms[2].get_stress(voigt=False)
    np.testing.assert_allclose(s, -0.1 * GPA * np.array([[1, 0.2, 0.3], [0.2, 2, 0.4], [0.3, 0.4, 3]]), rtol=1e-6)
    info = atoms[2].info
    assert info["mp_id"] == "mp-2652" and info["frame_id"] == "mp-1234-1-3"
    assert info["structure_id"] == "mptrj:mp-2652:mp-1234-1-3"
    assert info["corrected_total_energy"] == -41.4 and info["uncorrected_total_energy"] == -40.0
    assert info["bandgap"] == 4.1 and info["energy_label"] == "corrected_total_energy"
    assert info["energy_per_atom"] == pytest.approx(-41.4 / 5)
    frac = np.array([0.1, 0.6, 0.9]) @ np.array([[3.5, 0.1, 0], [0, 3.6, 0], [0.2, 0, 3.7]])
    np.testing.assert_allclose(atoms[2].positions[4], frac)
    assert len({x.info["structure_id"] for x in atoms}) == 3
    back = _roundtrip(tmp_path, atoms)
    np.testing.assert_allclose(back[2].get_stress(), atoms[2].get_stress(), atol=1e-15)
    assert back[1].info["bandgap"] == 5.3


def test_mptrj_energy_choice_and_filter(mptrj_file):
    unc = read_mptrj(mptrj_file, energy="uncorrected")
    assert [a.get_potential_energy() for a in unc] == [-7.25, -7.26, -40.0]
    assert unc[0].info["corrected_total_energy"] == -7.5
    assert unc[0].info["energy_label"] == "uncorrected_total_energy"
    sel = read_mptrj(mptrj_file, mp_ids=["mp-2652"])
    assert [a.info["mp_id"] for a in sel] == ["mp-2652"]
    with pytest.warns(UserWarning, match="not in the file"):
        assert read_mptrj(mptrj_file, mp_ids=["mp-1"]) == []
    no_stress = read_mptrj(mptrj_file, include_stress=False)
    assert "stress" not in no_stress[0].calc.results
    with pytest.raises(ValueError, match="corrected"):
        read_mptrj(mptrj_file, energy="total")
    assert len(read_source("mptrj", mptrj_file, mp_ids=["mp-573697"])) == 2


@pytest.mark.parametrize("chunk", [1, 7, 64, 1 << 22])
def test_mptrj_streaming_is_chunk_independent(mptrj_file, mptrj_data, chunk, tmp_path):
    ref = read_mptrj(mptrj_file)
    # pretty-printed text stresses the tokenizer across chunk borders
    pretty = tmp_path / "pretty.json"
    pretty.write_text(json.dumps(mptrj_data, indent=2))
    for path in (mptrj_file, pretty):
        got = list(iter_mptrj(path, chunk_chars=chunk))
        assert [a.info["structure_id"] for a in got] == [a.info["structure_id"] for a in ref]
        for a, b in zip(got, ref):
            np.testing.assert_array_equal(a.positions, b.positions)
            np.testing.assert_array_equal(a.get_forces(), b.get_forces())


def test_mptrj_gzip(mptrj_file, tmp_path):
    gz = tmp_path / "MPtrj_2022.9_full.json.gz"
    gz.write_bytes(gzip.compress(mptrj_file.read_bytes()))
    assert len(read_mptrj(gz)) == 3


def test_mptrj_matches_pymatgen(mptrj_data):
    pytest.importorskip("pymatgen")
    from pymatgen.core import Structure
    from pymatgen.io.ase import AseAtomsAdaptor

    d = mptrj_data["mp-2652"]["mp-1234-1-3"]["structure"]
    numbers, positions, cell, pbc = mptrj_reader._parse_pymatgen_structure(d, path="x", where="y")
    ref = AseAtomsAdaptor.get_atoms(Structure.from_dict(d))
    np.testing.assert_array_equal(numbers, ref.numbers)
    np.testing.assert_allclose(positions, ref.positions, atol=1e-12)
    np.testing.assert_allclose(cell, ref.cell.array, atol=1e-12)
    # and our hand-written dict has the layout pymatgen itself writes
    assert set(Structure.from_dict(d).as_dict()) <= set(d) | {"properties"}


def test_mptrj_missing_key(tmp_path, mptrj_data):
    del mptrj_data["mp-2652"]["mp-1234-1-3"]["force"]
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(mptrj_data))
    with pytest.raises(StructureError, match=r"mp_id 'mp-2652' frame 'mp-1234-1-3': frame lacks key\(s\) \['force'\]"):
        read_mptrj(path)


def test_mptrj_nan_and_shapes(tmp_path, mptrj_data):
    path = tmp_path / "bad.json"
    frame = mptrj_data["mp-573697"]["mp-573697-0-1"]
    frame["corrected_total_energy"] = float("nan")  # json.dumps writes the NaN token
    path.write_text(json.dumps(mptrj_data))
    with pytest.raises(StructureError, match=r"frame 'mp-573697-0-1': corrected_total_energy is nan"):
        read_mptrj(path)
    assert len(read_mptrj(path, energy="uncorrected")) == 3
    frame["corrected_total_energy"] = -7.0
    frame["force"] = frame["force"][:1]
    path.write_text(json.dumps(mptrj_data))
    with pytest.raises(StructureError, match=r"force has shape \(1, 3\), expected \(2, 3\)"):
        read_mptrj(path)
    frame["force"] = [[0.0, 0.0, 0.0]] * 2
    frame["stress"] = [[0.0, 0.0, float("nan")]] * 3
    path.write_text(json.dumps(mptrj_data))
    with pytest.raises(StructureError, match="stress contains NaN"):
        read_mptrj(path)
    frame["stress"] = [[0.0] * 3] * 3
    frame["structure"]["sites"][0]["species"] = [{"element": "Cs", "occu": 0.5}, {"element": "K", "occu": 0.5}]
    path.write_text(json.dumps(mptrj_data))
    with pytest.raises(StructureError, match="site 0 has 2 species"):
        read_mptrj(path)
    frame["structure"]["sites"][0]["species"] = [{"element": "Xx", "occu": 1}]
    path.write_text(json.dumps(mptrj_data))
    with pytest.raises(StructureError, match="unknown element 'Xx'"):
        read_mptrj(path)


def test_mptrj_truncated_and_malformed(mptrj_file, tmp_path):
    text = mptrj_file.read_text()
    cut = text.index('"mp-2652"') + 200  # inside the second material
    trunc = tmp_path / "trunc.json"
    trunc.write_text(text[:cut])
    with pytest.raises(StructureError, match=r"mp_id 'mp-2652'.*truncated") as exc:
        read_mptrj(trunc)
    assert str(trunc) in str(exc.value) and "re-download" in str(exc.value)
    # the frames before the damage were already yielded by the stream
    it = iter_mptrj(trunc, chunk_chars=16)
    assert next(it).info["mp_id"] == "mp-573697"
    trunc.write_text(text[:-1])  # only the final brace is missing
    with pytest.raises(StructureError, match=r"after mp_id 'mp-2652' without the closing"):
        read_mptrj(trunc)
    bad = tmp_path / "bad.json"
    bad.write_text(text.replace('"mp-2652": {', '"mp-2652": {]', 1))
    with pytest.raises(StructureError, match=r"invalid JSON in the frames of mp_id 'mp-2652'"):
        read_mptrj(bad)
    bad.write_text("[1, 2]")
    with pytest.raises(StructureError, match="does not hold a JSON object"):
        read_mptrj(bad)
    bad.write_text("")
    with pytest.raises(StructureError, match="is empty"):
        read_mptrj(bad)
    bad.write_text('{"mp-1": [1, 2]}')
    with pytest.raises(StructureError, match=r"mp_id 'mp-1'.*expected an object"):
        read_mptrj(bad)


# ============================================================================================ MD22 npz
def _md22_arrays(rng, m=4, n=5, e_shape="column"):
    z = np.array([6, 6, 1, 1, 8], dtype=np.uint8)[:n]
    R = rng.normal(scale=2.0, size=(m, n, 3))
    E = -1.0e5 + rng.normal(size=m)
    F = rng.normal(scale=20.0, size=(m, n, 3))
    return {
        "type": np.array("d"),
        "code_version": np.array("1.0.0"),
        "name": np.array("buckyball-catcher"),
        "theory": np.array("PBE+MBD"),
        "z": z,
        "R": R,
        "E": E[:, None] if e_shape == "column" else E,
        "F": F,
        "md5": np.array("0123456789abcdef0123456789abcdef"),
        "r_unit": np.array("Ang"),
        "e_unit": np.array("kcal/mol"),
    }


@pytest.fixture
def md22_file(tmp_path):
    path = tmp_path / "md22_buckyball-catcher.npz"
    np.savez_compressed(path, **_md22_arrays(np.random.default_rng(5)))
    return path


def test_md22_units_and_metadata(md22_file, tmp_path):
    atoms = read_md22(md22_file)
    data = np.load(md22_file)
    assert len(atoms) == 4
    a = atoms[2]
    np.testing.assert_array_equal(a.numbers, data["z"])
    np.testing.assert_allclose(a.positions, data["R"][2])
    assert a.get_potential_energy() == pytest.approx(data["E"][2, 0] * KCAL_MOL, rel=1e-6)
    np.testing.assert_allclose(a.get_forces(), data["F"][2] * KCAL_MOL, rtol=1e-6)
    assert a.info["molecule"] == "buckyball-catcher" and a.info["config_type"] == "buckyball-catcher"
    assert a.info["theory"] == "PBE+MBD" and a.info["frame"] == 2
    assert a.info["structure_id"] == "md22:buckyball-catcher:2"
    assert not a.pbc.any()
    _roundtrip(tmp_path, atoms)
    assert len(read_source("md22", md22_file)) == 4


def test_md22_flat_energy_no_metadata_and_units(tmp_path):
    arrays = _md22_arrays(np.random.default_rng(6), e_shape="flat")
    for key in ("name", "theory", "r_unit", "e_unit", "type", "code_version", "md5"):
        arrays.pop(key)
    path = tmp_path / "md22_double-walled_nanotube.npz"
    np.savez(path, **arrays)
    atoms = read_md22(path)
    assert atoms[0].info["molecule"] == "double-walled_nanotube" and "theory" not in atoms[0].info
    assert atoms[1].get_potential_energy() == pytest.approx(arrays["E"][1] * KCAL_MOL, rel=1e-6)
    arrays.update(e_unit=np.array("eV"), r_unit=np.array("bohr"))
    np.savez(path, **arrays)
    a = read_md22(path)[1]
    assert a.get_potential_energy() == pytest.approx(arrays["E"][1])
    np.testing.assert_allclose(a.positions, arrays["R"][1] * BOHR, rtol=1e-6)
    np.testing.assert_allclose(a.get_forces(), arrays["F"][1] / BOHR, rtol=1e-6)
    assert read_md22(path, molecule="dwnt")[0].info["structure_id"] == "md22:dwnt:0"


def test_md22_missing_key_nan_shape_truncated(tmp_path):
    rng = np.random.default_rng(7)
    path = tmp_path / "md22_x.npz"
    arrays = _md22_arrays(rng)
    np.savez(path, **{k: v for k, v in arrays.items() if k != "F"})
    with pytest.raises(StructureError, match=r"lacks array\(s\) \['F'\]") as exc:
        read_md22(path)
    assert str(path) in str(exc.value)
    arrays["F"][3, 1, 0] = np.nan
    np.savez(path, **arrays)
    with pytest.raises(StructureError, match=r"structure frame 3: array 'F' contains NaN"):
        read_md22(path)
    arrays = _md22_arrays(rng)
    arrays["F"] = arrays["F"][:, :4]
    np.savez(path, **arrays)
    with pytest.raises(StructureError, match=r"'F' has shape \(4, 4, 3\), expected \(4, 5, 3\)"):
        read_md22(path)
    arrays = _md22_arrays(rng)
    arrays["E"] = arrays["E"][:3]
    np.savez(path, **arrays)
    with pytest.raises(StructureError, match=r"'E' has shape \(3, 1\)"):
        read_md22(path)
    np.savez(path, **_md22_arrays(rng))
    _truncate(path, 0.6)
    with pytest.raises(StructureError, match="truncated or corrupt"):
        read_md22(path)


# ============================================================================================ generic
def test_generic_ase_db_with_custom_keys(tmp_path):
    import ase.db

    path = tmp_path / "mine.db"
    rng = np.random.default_rng(8)
    with ase.db.connect(path) as db:
        for i in range(2):
            a = Atoms("H2O", positions=rng.normal(size=(3, 3)))
            db.write(
                a, dft_energy=-10.0 - i, subset="water", total_charge=0, data={"dft_forces": rng.normal(size=(3, 3))}
            )
    atoms = read_generic(path, energy_key="dft_energy", forces_key="dft_forces", charge_key="total_charge")
    assert [a.get_potential_energy() for a in atoms] == [-10.0, -11.0]
    assert atoms[0].get_forces().shape == (3, 3)
    assert atoms[1].info["subset"] == "water" and atoms[1].info["charge"] == 0
    assert "dft_energy" not in atoms[0].info
    assert [a.info["structure_id"] for a in atoms] == ["mine:1", "mine:2"]
    _roundtrip(tmp_path, atoms)
    with pytest.raises(StructureError, match="row id 1: structure has no energy"):
        read_generic(path)
    assert len(read_generic(path, require_labels=False)) == 2
    bad = tmp_path / "bad.db"
    bad.write_bytes(b"this is not sqlite" * 10)
    with pytest.raises(StructureError, match="cannot be read as an ASE database"):
        read_generic(bad)


def test_generic_extxyz_and_traj(maceoff_file, tmp_path):
    atoms = read_generic(maceoff_file, energy_key="REF_energy", forces_key="REF_forces", charge_key="total_charge")
    assert len(atoms) == 3 and atoms[0].info["structure_id"] == "train_large_neut_no_bad_clean:0"
    assert atoms[2].info["charge"] == -1
    import ase.io

    traj = tmp_path / "run.traj"
    ase.io.write(traj, [_labelled_water(), _labelled_water()])
    got = read_source("generic", traj)
    assert [a.info["structure_id"] for a in got] == ["run:0", "run:1"]
    with pytest.raises(TypeError, match="apply to .xyz"):
        read_generic(traj, energy_key="REF_energy")
    store = write_structures(tmp_path / "s.h5", {"train": [_labelled_water()]})
    assert read_generic(store)[0].info["structure_id"] == "train:0"


# ============================================================================================ table and checksums
def test_sources_table_is_complete_and_honest():
    for name, entry in SOURCES.items():
        for key in ("title", "reader", "landing_page", "files", "license", "citation", "notes"):
            assert key in entry, (name, key)
        assert entry["reader"] in src.READERS
        for f in entry["files"]:
            assert f["name"] and f["urls"] and all(u.startswith("http") for u in f["urls"])
            for algorithm, length in (("md5", 32), ("sha256", 64)):
                value = f[algorithm]
                assert value is None or (len(value) == length and re.fullmatch(r"[0-9a-f]+", value)), (name, f)
            assert f["checksum_source"], (name, f["name"])  # where the value came from, or why it is missing
    assert SOURCES["mptrj"]["files"][0]["name"] == "MPtrj_2022.9_full.json"
    assert {f["name"] for f in SOURCES["mace-off"]["files"]} == {
        "train_large_neut_no_bad_clean.xyz",
        "test_large_neut_all.xyz",
    }
    assert expected_checksum("spice2", "SPICE-2.0.1.hdf5")[0] == "md5"
    assert expected_checksum("md22", "md22_buckyball-catcher.npz") is None
    with pytest.raises(KeyError):
        expected_checksum("md22", "nope.npz")


def test_verify_checksum(tmp_path):
    path = tmp_path / "data.bin"
    path.write_bytes(b"hessian distillation\n")
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    md5 = hashlib.md5(path.read_bytes()).hexdigest()
    assert verify_checksum(path, sha) == sha
    assert verify_checksum(path, md5.upper(), "md5") == md5
    assert verify_checksum(path, f"md5:{md5}") == md5
    assert file_digest(path, "md5") == md5
    with pytest.raises(ChecksumError, match=r"data\.bin.*sha256 checksum mismatch") as exc:
        verify_checksum(path, "0" * 64)
    assert "download it again" in str(exc.value)
    with pytest.raises(ValueError, match="not a sha256 digest"):
        verify_checksum(path, md5)
    with pytest.raises(ValueError, match="hex digest string"):
        verify_checksum(path, None)
    with pytest.raises(ValueError, match="unknown checksum algorithm"):
        verify_checksum(path, md5, "crc32")
    with pytest.raises(StructureError, match="does not exist"):
        verify_checksum(tmp_path / "nope", sha)


def test_read_source_dispatch_errors(md22_file):
    with pytest.raises(ValueError, match="unknown source 'qm9'"):
        read_source("qm9", md22_file)
    with pytest.raises(TypeError, match="read_source\\('md22'\\)"):
        read_source("md22", md22_file, energy="corrected")
    assert len(read_source("MD22", md22_file)) == 4


def test_maceoff_neutral_only_needs_a_charge(tmp_path):
    path = tmp_path / "bare.xyz"
    path.write_text(
        re.sub(r' smiles="[^"]*"', "", MACEOFF_XYZ.replace(" total_charge=0", "").replace(" total_charge=-1", ""))
    )
    with pytest.raises(StructureError, match="neutral_only needs the total charge"):
        read_maceoff_xyz(path, default_charge=None, neutral_only=True)


def test_mptrj_null_stress(tmp_path, mptrj_data):
    mptrj_data["mp-2652"]["mp-1234-1-3"]["stress"] = None
    path = tmp_path / "nostress.json"
    path.write_text(json.dumps(mptrj_data))
    with pytest.raises(StructureError, match=r"frame 'mp-1234-1-3': frame has stress = null") as exc:
        read_mptrj(path)
    assert "include_stress=False" in str(exc.value)
    assert len(read_mptrj(path, include_stress=False)) == 3
