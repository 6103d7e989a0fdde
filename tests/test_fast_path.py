"""The fast path: Verlet lists with a skin, exported students (TorchScript / AOTInductor), FastCalculator."""

import numpy as np
import pytest
import torch
from ase import Atoms, units
from ase.build import bulk, molecule
from ase.md.verlet import VelocityVerlet

from hessdistill.core.errors import HessdistillError
from hessdistill.core.graphs import neighbour_list
from hessdistill.core.neighbours import VerletList
from hessdistill.students import build_student
from hessdistill.students.calculator import StudentCalculator
from hessdistill.students.deployed import FastCalculator, Runner
from hessdistill.students.export import export_student, load_exported

ARCHS = {
    "painn": {"arch": "painn", "hidden": 16, "num_layers": 2, "num_rbf": 8, "cutoff": 4.0},
    "painn-direct": {
        "arch": "painn",
        "hidden": 16,
        "num_layers": 2,
        "num_rbf": 8,
        "cutoff": 4.0,
        "direct_forces": True,
    },
    "schnet": {"arch": "schnet", "hidden": 16, "num_filters": 16, "num_interactions": 2, "num_rbf": 8, "cutoff": 4.0},
    "gemnet-dT": {
        "arch": "gemnet",
        "num_blocks": 1,
        "emb_size_atom": 16,
        "emb_size_edge": 16,
        "emb_size_trip": 8,
        "emb_size_rbf": 4,
        "emb_size_cbf": 4,
        "emb_size_bil_trip": 8,
        "cutoff": 4.0,
        "max_neighbors": 12,
        "direct_forces": True,
    },
    "gemnet-T": {
        "arch": "gemnet",
        "num_blocks": 1,
        "emb_size_atom": 16,
        "emb_size_edge": 16,
        "emb_size_trip": 8,
        "emb_size_rbf": 4,
        "emb_size_cbf": 4,
        "emb_size_bil_trip": 8,
        "cutoff": 4.0,
        "max_neighbors": 12,
        "direct_forces": False,
    },
}


def student(name):
    torch.manual_seed(3)
    m = build_student(ARCHS[name]).float()
    m.fit_element_energies([[1, 6, 8], [14, 14]], [-10.0, -9.0])
    return m.eval()


def structures():
    rng = np.random.default_rng(5)
    mol = molecule("CH3CH2OH")
    mol.positions += rng.normal(scale=0.05, size=mol.positions.shape)
    crystal = bulk("Si", "diamond", a=5.43).repeat((2, 2, 1))
    crystal.positions += rng.normal(scale=0.05, size=crystal.positions.shape)
    return [mol, crystal]


def _pairs_set(i, j, shift):
    return {(int(a), int(b), *np.round(s, 6)) for a, b, s in zip(i, j, shift)}


def test_verlet_list_equals_full_list_and_rebuilds_only_past_half_the_skin():
    a = bulk("Si", "diamond", a=5.43).repeat(2)
    vl = VerletList(cutoff=4.0, skin=0.6)
    rng = np.random.default_rng(0)
    pos = a.positions.copy()
    for step in range(30):
        pos = pos + rng.normal(scale=0.03, size=pos.shape)  # a random walk: ~0.05 Å rms per step and atom
        i, j, s = vl.pairs(pos, a.cell.array, a.pbc)
        b = a.copy()
        b.positions = pos
        assert _pairs_set(i, j, s) == _pairs_set(*neighbour_list(b, 4.0)), step
    # the walk moves atoms past 0.3 Å several times, but far fewer than 30 rebuilds
    assert 2 <= vl.builds < 15
    before = vl.builds
    vl.pairs(pos, a.cell.array, a.pbc)
    assert vl.builds == before and not vl.changed
    vl.pairs(pos, a.cell.array * 1.01, a.pbc)  # a new cell always rebuilds
    assert vl.builds == before + 1


def test_verlet_list_molecule_and_wrapping_rebuilds():
    m = molecule("CH4")
    vl = VerletList(cutoff=3.0, skin=0.5)
    i, j, s = vl.pairs(m.positions, m.cell.array, m.pbc)
    assert _pairs_set(i, j, s) == _pairs_set(*neighbour_list(m, 3.0))
    a = bulk("Si", "diamond", a=5.43)
    vl = VerletList(cutoff=3.0, skin=0.5)
    vl.pairs(a.positions, a.cell.array, a.pbc)
    b = a.copy()
    b.positions[0] += a.cell.array[0]  # the same structure, one atom wrapped by a lattice vector
    i, j, s = vl.pairs(b.positions, b.cell.array, b.pbc)
    assert vl.builds == 2
    assert _pairs_set(i, j, s) == _pairs_set(*neighbour_list(b, 3.0))


@pytest.mark.parametrize("name", list(ARCHS))
def test_exported_torchscript_equals_eager(tmp_path, name):
    m = student(name)
    meta = export_student(m, tmp_path / "s.pt")
    assert meta["export_format"] == "torchscript" and meta["arch"] == m.arch
    exported = load_exported(tmp_path / "s.pt")
    for a in structures():
        ref = StudentCalculator(m)
        a.calc = ref
        e_ref, f_ref = a.get_potential_energy(), a.get_forces()
        b = a.copy()
        b.calc = FastCalculator(exported)
        f = b.get_forces()
        assert np.abs(f - f_ref).max() <= 2e-5 * max(np.abs(f_ref).max(), 1e-2)
        assert abs(b.get_potential_energy() - e_ref) <= 1e-5 * max(abs(e_ref), 1.0)
        assert np.abs(f_ref).max() > 1e-6  # a meaningful comparison (untrained direct heads give small forces)


@pytest.mark.parametrize("name", ["painn", "gemnet-T"])
def test_exported_aoti_equals_eager_over_an_md_run(tmp_path, name):
    """The compiled program (fused C++ kernels) through FastCalculator follows the eager model's MD."""
    m = student(name)
    export_student(m, tmp_path / "s.pt2")
    for a in structures():
        trajs = []
        for calc in (StudentCalculator(m), FastCalculator(tmp_path / "s.pt2", skin=0.3)):
            b = a.copy()
            b.calc = calc
            dyn = VelocityVerlet(b, timestep=0.5 * units.fs, logfile=None)
            dyn.run(20)
            trajs.append((b.positions.copy(), b.get_forces()))
        assert np.abs(trajs[0][0] - trajs[1][0]).max() < 1e-4
        assert np.abs(trajs[0][1] - trajs[1][1]).max() <= 1e-4 * max(np.abs(trajs[0][1]).max(), 1e-2)


def test_runner_batches_structures_and_reuses_pairs():
    m = student("painn")
    structs = structures()
    runner = Runner(
        m, [a.numbers for a in structs], [a.cell.array for a in structs], [a.pbc for a in structs], skin=0.5
    )
    e, f = runner([a.positions for a in structs])
    for k, a in enumerate(structs):
        a.calc = StudentCalculator(m)
        assert abs(e[k] - a.get_potential_energy()) < 1e-4 * max(abs(e[k]), 1)
        lo = sum(len(b) for b in structs[:k])
        np.testing.assert_allclose(f[lo : lo + len(a)], a.get_forces(), atol=2e-5)
    builds = runner.rebuilds
    runner([a.positions + 0.01 for a in structs])
    assert runner.rebuilds == builds  # moved 0.017 Å < skin / 2: no new neighbour search


def test_fast_calculator_errors(tmp_path):
    m = student("painn")
    a = bulk("Si", "diamond", a=5.43)
    a.calc = FastCalculator(m)
    with pytest.raises(HessdistillError, match="stress"):
        a.get_stress()
    far = Atoms("H2", positions=[[0, 0, 0], [0, 0, 9.0]])
    far.calc = FastCalculator(m)
    with pytest.raises(HessdistillError, match="no atom has a neighbour"):
        far.get_forces()
    (tmp_path / "x.pt2").write_text("not a program")
    with pytest.raises(HessdistillError, match="x.pt2"):
        load_exported(tmp_path / "x.pt2")
    with pytest.raises(HessdistillError, match=r"\.pt2"):
        export_student(m, tmp_path / "y.pt", fmt="aoti")
    mace_like = build_student({"arch": "schnet", "hidden": 8, "num_filters": 8, "num_interactions": 1, "num_rbf": 4})
    mace_like.arch = "mace"
    with pytest.raises(HessdistillError, match="PaiNN, SchNet and GemNet"):
        export_student(mace_like, tmp_path / "z.pt")


def test_cli_export_writes_a_checked_file(tmp_path, capsys):
    from hessdistill.cli import main

    m = student("schnet")
    torch.save(
        {
            "format": "hessdistill.student",
            "student_config": m.config(),
            "dtype": "float32",
            "state_dict": m.state_dict(),
        },
        tmp_path / "model.pt",
    )
    assert main(["export", str(tmp_path / "model.pt"), "-o", str(tmp_path / "student.pt")]) == 0
    assert "checked against the eager model" in capsys.readouterr().out
    exp = load_exported(tmp_path / "student.pt")
    assert exp.meta["source"].endswith("model.pt") and len(exp.meta["source_sha256"]) == 64
    assert main(["export", str(tmp_path / "missing.pt")]) == 2
    assert "missing.pt" in capsys.readouterr().err


# ----------------------------------------------------------------------------- batched MD
def test_batched_velocity_verlet_equals_ase_per_structure():
    from hessdistill.evaluation.batched_md import BatchedMD

    m = student("painn")
    structs = structures()
    rng = np.random.default_rng(1)
    for a in structs:
        a.set_velocities(rng.normal(scale=0.02, size=(len(a), 3)))
    md = BatchedMD.from_atoms(m, structs, timestep_fs=0.5)
    md.run(25)
    for a, b in zip(structs, md.to_atoms()):
        ref = a.copy()
        ref.calc = FastCalculator(m)
        VelocityVerlet(ref, timestep=0.5 * units.fs, logfile=None).run(25)
        np.testing.assert_allclose(b.positions, ref.positions, atol=1e-6)
        np.testing.assert_allclose(b.get_velocities(), ref.get_velocities(), atol=1e-6)
        assert np.abs(b.positions - a.positions).max() > 1e-3  # they moved
    assert md.stable.all()


def test_batched_langevin_samples_the_target_temperature():
    """Harmonic wells (exact equipartition): the replicas' mean kinetic temperature is the thermostat's."""
    from hessdistill.evaluation.batched_md import BatchedMD

    k = 5.0  # eV/Å^2
    structs = [Atoms("Cu8", positions=np.random.default_rng(s).uniform(0, 6, (8, 3))) for s in range(8)]
    centres = np.concatenate([a.positions for a in structs])

    def harmonic(x):
        d = x - centres
        e = 0.5 * k * (d**2).sum(1)
        return np.bincount(np.repeat(np.arange(8), 8), weights=e), -k * d

    md = BatchedMD(harmonic, structs, timestep_fs=2.0, temperature_K=500, friction_per_fs=0.05, seed=3)
    md.run(200)  # equilibrate
    temps = []
    md.run(2000, every=10, callback=lambda s: temps.append(s.temperatures().mean()))
    assert abs(np.mean(temps) / 500 - 1) < 0.05
    md2 = BatchedMD(harmonic, structs, timestep_fs=2.0, temperature_K=500, friction_per_fs=0.05, seed=3)
    md2.run(10)
    md3 = BatchedMD(harmonic, structs, timestep_fs=2.0, temperature_K=500, friction_per_fs=0.05, seed=3)
    md3.run(10)
    np.testing.assert_array_equal(md2.x, md3.x)  # deterministic for a seed


def test_batched_md_freezes_exploding_replicas():
    from hessdistill.evaluation.batched_md import BatchedMD

    structs = [Atoms("H2", positions=[[0, 0, 0], [0, 0, 1.0]]) for _ in range(3)]

    def fn(x):
        f = np.zeros_like(x)
        f[2:4] = 1e4  # replica 1 explodes
        return np.zeros(3), f

    md = BatchedMD(fn, structs, timestep_fs=1.0)
    md.run(5)
    assert md.stable.tolist() == [True, False, True]
    assert md.failed_at.tolist() == [-1, 0, -1]
    np.testing.assert_array_equal(md.to_atoms()[1].positions, structs[1].positions)
