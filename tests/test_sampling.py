"""Teacher-driven sampling around seed structures (hessdistill.data.sampling), the built-in datasets as its presets,
and the ``sample`` source of the prepare job; cheap ASE calculators (EMT, Morse) stand in for the teacher."""

import json
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms, units
from ase.build import bulk
from ase.calculators.calculator import Calculator, all_changes
from ase.calculators.emt import EMT
from ase.calculators.morse import MorsePotential
from ase.calculators.singlepoint import SinglePointCalculator
from ase.md.langevin import Langevin
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution, Stationary
from ase.optimize import FIRE

from hessdistill.core.errors import HessdistillError
from hessdistill.data import builtin
from hessdistill.data.sampling import SamplingSettings, checkpoint_folder, sample, settings_from_options

pytestmark = pytest.mark.filterwarnings("ignore:The implementation of `fixcm=True`:FutureWarning")


class Counted(Calculator):
    """EMT, counting the structures it is asked about; after ``fail_after`` calls it raises (an interrupted run);
    ``transform(atoms, e, f)`` may change the labels (a misbehaving teacher).  A fresh EMT per structure: EMT keeps a
    neighbour list with a skin between calls, so its last bits would depend on what it computed before (a teacher's
    labels depend on the structure alone)."""

    implemented_properties = ["energy", "forces"]

    def __init__(self, fail_after=None, transform=None):
        super().__init__()
        self.calls = 0
        self.fail_after = fail_after
        self.transform = transform

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise RuntimeError("interrupted")
        self.calls += 1
        inner = EMT()
        e, f = inner.get_potential_energy(atoms), inner.get_forces(atoms)
        if self.transform:
            e, f = self.transform(atoms, e, f)
        self.results = {"energy": e, "forces": f}


def cu_seeds():
    cluster = Atoms("Cu3", positions=[[0, 0, 0], [2.5, 0, 0], [1.25, 2.1, 0]])
    return [("cu-bulk", bulk("Cu", "fcc", a=3.6, cubic=True)), ("cu3", cluster)]


def tiny(**kw):
    base = dict(
        n_trajectories=3,
        n_rattle_series=2,
        n_relax_series=1,
        frames_per_trajectory=2,
        sample_every=1,
        equilibration_steps=1,
        temperatures_K=(300.0, 600.0),
        strains=(-0.01, 0.0, 0.01),
        supercells=((1, 1, 1), (2, 1, 1)),
        max_atoms=8,
    )
    base.update(kw)
    return SamplingSettings(**base)


def same_frames(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert np.array_equal(x.numbers, y.numbers) and np.array_equal(x.positions, y.positions)
        assert np.array_equal(x.cell.array, y.cell.array) and np.array_equal(x.pbc, y.pbc)
        assert x.get_potential_energy() == y.get_potential_energy()
        assert np.array_equal(x.get_forces(), y.get_forces())
        assert list(x.info.items()) == list(y.info.items())


def test_periodic_and_non_periodic_seeds_sampled_deterministically():
    s = tiny()
    a, report = sample(Counted(), cu_seeds(), s)
    b, _ = sample(Counted(), cu_seeds(), s)
    same_frames(a, b)
    assert len(a) == (3 + 2 + 1) * 2 and report["frames_made"] == 12 and report["frames_dropped"] == 0
    assert report["parents"] == ["cu-bulk", "cu-bulk-2x1x1", "cu3"]
    for x in a:
        assert set(x.info) == {"parent", "trajectory", "sampling", "temperature_K", "strain", "frame", "supercell"}
        if x.info["parent"] == "cu3":
            assert not x.pbc.any() and len(x) == 3 and x.info["strain"] == 0.0 and x.info["supercell"] == "1x1x1"
        else:
            assert x.pbc.all() and len(x) == {"cu-bulk": 4, "cu-bulk-2x1x1": 8}[x.info["parent"]]
            assert x.info["supercell"] == ("2x1x1" if len(x) == 8 else "1x1x1")
        e = EMT().get_potential_energy(x.copy())  # the labels are the calculator's at the stored geometry
        assert x.get_potential_energy() == pytest.approx(e, abs=1e-10)
    md = [x for x in a if x.info["sampling"] == "md"]
    assert {x.info["trajectory"] for x in md} == {"md0000", "md0001", "md0002"}
    assert {x.info["temperature_K"] for x in md} <= {300.0, 600.0}
    assert np.abs(md[1].positions - md[0].positions).max() > 1e-4  # MD moves
    assert [x.info["sampling"] for x in a] == ["md"] * 6 + ["rattle"] * 4 + ["relax"] * 2
    assert report["teacher_calls"] > 0 and report["run"]["teacher_calls"] == report["teacher_calls"]
    c, _ = sample(Counted(), cu_seeds(), tiny(seed=1))
    assert not all(np.array_equal(x.positions, y.positions) for x, y in zip(a, c) if len(x) == len(y))


def test_supercells_respect_max_atoms_and_periodic_axes():
    slab = bulk("Cu", "fcc", a=3.6, cubic=True)
    slab.pbc = (True, True, False)
    seeds = [("slab", slab), ("cu3", cu_seeds()[1][1])]
    s = tiny(supercells=((1, 1, 1), (2, 1, 1), (1, 1, 2), (2, 2, 1)), max_atoms=16, n_relax_series=0)
    frames, report = sample(Counted(), seeds, s)
    # (1, 1, 2) repeats along the non-periodic axis: skipped; (2, 2, 1) has 16 atoms: kept
    assert report["parents"] == ["slab", "slab-2x1x1", "slab-2x2x1", "cu3"]
    assert {len(x) for x in frames if x.info["parent"] == "slab-2x2x1"} <= {16}
    with pytest.raises(HessdistillError, match=r"no parent structure from the seeds \(slab\).*max_atoms=2"):
        sample(Counted(), seeds[:1], tiny(max_atoms=2))


def test_seed_frames_label_the_seeds_themselves():
    seeds = cu_seeds()
    s = tiny(n_trajectories=0, n_rattle_series=0, n_relax_series=0, seed_frames=True)
    frames, report = sample(Counted(), seeds, s)
    assert len(frames) == 2 and report["series"] == {"seeds": 1}
    for i, (x, (name, seed)) in enumerate(zip(frames, seeds)):
        assert np.array_equal(x.positions, seed.positions) and np.array_equal(x.cell.array, seed.cell.array)
        assert x.info["sampling"] == "seed" and x.info["parent"] == name and x.info["trajectory"] == f"seed{i:04d}"
        assert x.get_potential_energy() == pytest.approx(EMT().get_potential_energy(seed.copy()), abs=1e-12)
    with_md, _ = sample(Counted(), seeds, tiny(seed_frames=True))
    assert [x.info["sampling"] for x in with_md[:2]] == ["seed", "seed"] and len(with_md) == 14
    with pytest.raises(HessdistillError, match="make no frames"):
        sample(Counted(), seeds, tiny(n_trajectories=0, n_rattle_series=0, n_relax_series=0))


def test_resume_computes_only_the_missing_trajectories(tmp_path):
    s = tiny()
    whole, whole_report = sample(Counted(), cu_seeds(), s)
    full_calls = whole_report["teacher_calls"]
    # interrupted half way: the finished series are on disk
    with pytest.raises(RuntimeError, match="interrupted"):
        sample(Counted(fail_after=full_calls // 2), cu_seeds(), s, checkpoint_dir=tmp_path, identity="emt")
    folder = checkpoint_folder(tmp_path, cu_seeds(), s, "emt")
    saved = sorted(p.name for p in folder.glob("*.npz"))
    assert 0 < len(saved) < 6 and not list(folder.glob(".*"))  # no half-written file left
    calc = Counted()
    resumed, report = sample(calc, cu_seeds(), s, checkpoint_dir=tmp_path, identity="emt")
    same_frames(resumed, whole)
    assert report["run"]["series_resumed"] == len(saved)
    assert 0 < calc.calls < full_calls and calc.calls == report["run"]["teacher_calls"]
    assert report["teacher_calls"] == full_calls  # the report counts what the frames cost, resumed or not
    assert {k: v for k, v in report.items() if k != "run"} == {k: v for k, v in whole_report.items() if k != "run"}
    # everything finished: nothing is recomputed
    again = Counted()
    third, _ = sample(again, cu_seeds(), s, checkpoint_dir=tmp_path, identity="emt")
    same_frames(third, whole)
    assert again.calls == 0


def test_different_inputs_never_reuse_checkpoints(tmp_path):
    s = tiny()
    _, report = sample(Counted(), cu_seeds(), s, checkpoint_dir=tmp_path, identity="emt")
    full = report["teacher_calls"]
    moved = cu_seeds()
    moved[1][1].positions[0, 0] += 1e-6
    for seeds, settings, identity in (
        (cu_seeds(), s, "emt-float64"),  # another teacher
        (moved, s, "emt"),  # another seed geometry
        (cu_seeds(), tiny(temperatures_K=(300.0, 601.0)), "emt"),  # other settings
    ):
        calc = Counted()
        sample(calc, seeds, settings, checkpoint_dir=tmp_path, identity=identity)
        assert calc.calls == (full if settings is s else sample(Counted(), seeds, settings)[1]["teacher_calls"])
    assert len([p for p in tmp_path.iterdir() if p.is_dir()]) == 4
    with pytest.raises(HessdistillError, match="needs an identity"):
        sample(Counted(), cu_seeds(), s, checkpoint_dir=tmp_path)


def test_guard_rails_drop_and_count():
    """Huge forces for the 8-atom supercell (the MD runs there stop at their first frame), a seed with two atoms
    closer than the covalent-radius rule (never given to the teacher), non-finite labels: all dropped and counted."""

    def huge_for_8(atoms, e, f):
        return (e, f * 1e4) if len(atoms) == 8 else (e, f)

    close = Atoms("Cu2", positions=[[0, 0, 0], [0.9, 0, 0]])  # 0.9 Å < 0.5 * (1.32 + 1.32) Å
    seeds = cu_seeds() + [("squashed", close)]
    s = tiny(seed_frames=True, n_trajectories=8, n_rattle_series=4)
    calc = Counted(transform=huge_for_8)
    frames, report = sample(calc, seeds, s)
    parents = {x.info["parent"] for x in frames}
    assert "squashed" not in parents and "cu-bulk-2x1x1" not in parents
    assert all(np.linalg.norm(x.get_forces(), axis=1).max() <= 50.0 for x in frames)
    pp = report["per_parent"]
    assert pp["squashed"]["made"] == 0 and set(pp["squashed"]["dropped"]) == {"too_close"}
    big = pp["cu-bulk-2x1x1"]
    # the huge forces blow the MD runs there apart: their first frame is dropped, the run stops there
    stopped_big = [k for k, p in report["stopped"].items() if p == "cu-bulk-2x1x1"]
    assert big["made"] == 0 and stopped_big and all(k.startswith(("md", "relax")) for k in stopped_big)
    assert big["dropped"]["trajectory_stopped"] == len(stopped_big)  # 2 frames each: 1 more dropped per run
    assert sum(big["dropped"].values()) % 2 == 0 and sum(big["dropped"].values()) >= 2 * len(stopped_big)
    # rattled frames are independent: those of the 8-atom parent are dropped for their forces, the others kept
    rattled, r_report = sample(
        Counted(transform=huge_for_8), cu_seeds(), tiny(n_trajectories=0, n_relax_series=0, n_rattle_series=6)
    )
    r_big = r_report["per_parent"]["cu-bulk-2x1x1"]
    assert (
        r_big["made"] == 0
        and r_big["dropped"] == {"max_force": r_report["frames_dropped"]}
        and r_big["dropped"]["max_force"] >= 2
    )
    assert len(rattled) == 12 - r_report["frames_dropped"] and not r_report["stopped"]
    assert report["frames_made"] == len(frames)
    assert report["frames_made"] + report["frames_dropped"] == 3 + 2 * (8 + 4 + 1)  # 3 seeds, 13 series of 2
    assert sum(report["dropped"].values()) == report["frames_dropped"]
    assert report["dropped"]["too_close"] == sum(p["dropped"].get("too_close", 0) for p in pp.values())

    # periodic images count: an atom 0.4 Å from another's image across the cell face, and a 1 Å lattice vector
    across = Atoms("Cu2", positions=[[0.1, 1, 1], [3.3, 1, 1]], cell=[3.6, 3.6, 3.6], pbc=True)
    tiny_cell = Atoms("Cu", cell=[1.0, 3.6, 3.6], pbc=True)
    kept, r = sample(Counted(), cu_seeds()[1:] + [("across", across), ("tiny", tiny_cell)], tiny(seed_frames=True))
    assert r["parents"] == ["cu3", "across", "across-2x1x1", "tiny", "tiny-2x1x1"]
    for name in r["parents"][1:]:  # in the 2x1x1 supercells too; never given to the teacher
        assert r["per_parent"][name]["made"] == 0 and set(r["per_parent"][name]["dropped"]) == {"too_close"}
    assert (
        r["per_parent"]["across"]["dropped"]["too_close"] >= 1 and r["per_parent"]["tiny"]["dropped"]["too_close"] >= 1
    )
    assert {x.info["parent"] for x in kept} == {"cu3"} and len(kept) == r["per_parent"]["cu3"]["made"]

    def nan(atoms, e, f):
        return float("nan"), f

    with pytest.raises(HessdistillError, match=r"every one of the .* dropped.*non_finite.*seeds: cu-bulk, cu3"):
        sample(Counted(transform=nan), cu_seeds(), tiny())
    with pytest.raises(HessdistillError, match=r"seeds: squashed"):
        sample(Counted(), [("squashed", close)], tiny(seed_frames=True))
    # a lower force limit drops more; a zero distance factor still keeps the store's 0.5 Å floor
    _, strict = sample(Counted(), cu_seeds(), tiny(max_force_eV_A=0.5))
    assert strict["dropped"]["max_force"] > 0


def test_settings_from_options_names_the_bad_setting():
    s = settings_from_options(supercells=[[1, 1, 1], [2, 2, 2]], temperatures_K=[100], seed_frames=True)
    assert s.supercells == ((1, 1, 1), (2, 2, 2)) and s.temperatures_K == (100,)
    with pytest.raises(HessdistillError, match=r"unknown sampling setting\(s\) \['temperature'\]"):
        settings_from_options(temperature=[300])
    with pytest.raises(HessdistillError, match="'supercells'"):
        settings_from_options(supercells=[[0, 1, 1]])
    with pytest.raises(HessdistillError, match="'frames_per_trajectory'"):
        settings_from_options(frames_per_trajectory=0)
    with pytest.raises(HessdistillError, match="'seed_frames'"):
        settings_from_options(seed_frames="yes")


# ====================================================================== the built-in presets
def _reference_generate(calc, s):
    """The built-in generator as it was before it became a preset of hessdistill.data.sampling (kept here so that
    the presets' output stays bitwise the same)."""
    parents = builtin._parents(s)
    master = np.random.default_rng(s.seed)
    out = []

    def labelled(atoms, info):
        a = Atoms(atoms.numbers, positions=atoms.positions.copy(), cell=atoms.cell.array.copy(), pbc=atoms.pbc.copy())
        a.info.update(info)
        e, f = atoms.get_potential_energy(), atoms.get_forces()
        a.calc = SinglePointCalculator(a, energy=float(e), forces=np.array(f, dtype=np.float64))
        return a

    def strained(atoms, rng):
        if not atoms.pbc.any():
            return atoms.copy(), 0.0
        eps = float(rng.choice(s.strains))
        a = atoms.copy()
        if rng.random() < 0.5:
            m = np.eye(3) * (1 + eps)
        else:
            m = np.eye(3)
            axis = int(rng.integers(3))
            m[axis, axis] += eps
        a.set_cell(a.cell.array @ m, scale_atoms=True)
        return a, eps

    def info(pname, traj, kind, temp, eps, frame):
        return {
            "family": s.family,
            "parent": pname,
            "trajectory": traj,
            "sampling": kind,
            "temperature_K": temp,
            "strain": eps,
            "frame": frame,
        }

    for t in range(s.n_trajectories):
        rng = np.random.default_rng([s.seed, 1, t])
        pname, parent = parents[int(master.integers(len(parents)))]
        temp = float(rng.choice(s.temperatures_K))
        atoms, eps = strained(parent, rng)
        atoms.positions += rng.normal(scale=0.02, size=atoms.positions.shape)
        atoms.calc = calc
        MaxwellBoltzmannDistribution(atoms, temperature_K=temp, rng=rng)
        Stationary(atoms)
        dyn = Langevin(
            atoms,
            timestep=s.timestep_fs * units.fs,
            temperature_K=temp,
            friction=s.friction_per_fs / units.fs,
            rng=rng,
            fixcm=True,
        )
        dyn.run(s.equilibration_steps)
        for frame in range(s.frames_per_trajectory):
            dyn.run(s.sample_every)
            out.append(labelled(atoms, info(pname, f"md{t:04d}", "md", temp, eps, frame)))
    for r in range(s.n_rattle_series):
        rng = np.random.default_rng([s.seed, 2, r])
        pname, parent = parents[int(master.integers(len(parents)))]
        base, eps = strained(parent, rng)
        for frame in range(s.frames_per_trajectory):
            a = base.copy()
            if a.pbc.any():
                a.set_cell(a.cell.array @ (np.eye(3) + rng.normal(scale=s.shear_sigma, size=(3, 3))), scale_atoms=True)
            a.positions += rng.normal(scale=s.rattle_sigma, size=a.positions.shape)
            a.calc = calc
            out.append(labelled(a, info(pname, f"rattle{r:04d}", "rattle", 0.0, eps, frame)))
    for r in range(s.n_relax_series):
        rng = np.random.default_rng([s.seed, 3, r])
        pname, parent = parents[int(master.integers(len(parents)))]
        atoms, eps = strained(parent, rng)
        atoms.positions += rng.normal(scale=s.relax_rattle_sigma, size=atoms.positions.shape)
        atoms.calc = calc
        opt = FIRE(atoms, logfile=None)
        for frame in range(s.frames_per_trajectory):
            out.append(labelled(atoms, info(pname, f"relax{r:04d}", "relax", 0.0, eps, frame)))
            opt.run(fmax=1e-4, steps=s.relax_every)
    return out


@pytest.mark.parametrize(
    "settings, calc",
    [
        (
            builtin.GeneratorSettings(
                compositions=("SrTiO3", "KNbO3"),
                supercells=((1, 1, 1), (2, 1, 1)),
                n_trajectories=3,
                n_rattle_series=2,
                n_relax_series=2,
                frames_per_trajectory=3,
                sample_every=1,
                equilibration_steps=1,
            ),
            lambda: MorsePotential(epsilon=0.3, r0=2.2, rho0=4.0, rcut1=4.0, rcut2=5.0),
        ),
        (
            builtin.GeneratorSettings(
                family="molecules",
                compositions=("H2O", "CH4", "NH3"),
                n_trajectories=3,
                n_rattle_series=2,
                n_relax_series=1,
                frames_per_trajectory=3,
                sample_every=2,
                equilibration_steps=2,
                seed=5,
            ),
            lambda: MorsePotential(epsilon=0.2, r0=1.3, rho0=3.0, rcut1=3.0, rcut2=4.0),
        ),
    ],
    ids=["perovskites", "molecules"],
)
def test_builtin_presets_are_bitwise_the_old_generator(settings, calc):
    new, report = builtin.generate_with_report(calc(), settings)
    same_frames(new, _reference_generate(calc(), settings))
    assert report["frames_dropped"] == 0 and "supercell" not in new[0].info


# ====================================================================== the prepare job's `sample` source
def _write_seeds(path: Path):
    import ase.io

    cu, cluster = cu_seeds()[0][1], cu_seeds()[1][1]
    cluster.info["name"] = "tri"
    ase.io.write(path, [cu, cluster], format="extxyz")


def test_prepare_sample_source_writes_a_teacher_labelled_store(tmp_path):
    from hessdistill.data.store import StructureStore
    from hessdistill.jobs.prepare import prepare_subset, sampling_dir

    _write_seeds(tmp_path / "seeds.extxyz")
    options = {
        "teacher": "ase:ase.calculators.emt:EMT",
        "dtype": "float64",
        "n_trajectories": 6,
        "n_rattle_series": 2,
        "frames_per_trajectory": 2,
        "sample_every": 1,
        "equilibration_steps": 1,
        "seed_frames": True,
        "supercells": [[1, 1, 1], [2, 1, 1]],
    }
    spec = {
        "source": {"name": "sample", "path": "seeds.extxyz", "options": options},
        "split": {"fractions": {"train": 0.5, "val": 0.25, "test": 0.25}, "seed": 0},
    }
    out = tmp_path / "s.h5"
    report = prepare_subset(spec, out, base_dir=tmp_path)
    assert sum(report["splits"].values()) == 2 + 8 * 2
    assert report["sampling"]["frames_made"] == 18 and report["sampling"]["frames_dropped"] == 0
    assert not sampling_dir(out).exists()  # the checkpoints are removed once the store is written
    with StructureStore(out) as st:
        assert st.attrs["labels"].startswith("teacher:ase:ase.calculators.emt:EMT")
        assert json.loads(st.attrs["sampling_settings"])["n_trajectories"] == 6
        sampling = json.loads(st.attrs["sampling_report"])
        assert sampling["frames_made"] == 18 and "run" not in sampling
        assert set(sampling["per_parent"]) == {"seed0-Cu4", "seed0-Cu4-2x1x1", "tri"}
        assert json.loads(st.attrs["sampling_teacher"])["teacher_dtype"] == "float64"
        seen = {}
        for split in st.splits:
            for i in range(st.n_structures(split)):
                x = st.atoms(split, i)
                assert seen.setdefault(x.info["trajectory"], split) == split  # grouped by trajectory
                if x.info["sampling"] == "seed":
                    assert x.info["parent"] in ("seed0-Cu4", "tri")
    again = tmp_path / "again.h5"
    prepare_subset(spec, again, base_dir=tmp_path)
    assert again.read_bytes() == out.read_bytes()  # same specification, same store
    with StructureStore(out) as st:
        assert json.loads(st.attrs["split_report"])["group_by"] == "trajectory"
    per_frame = json.loads(json.dumps(spec))
    per_frame["split"]["group_by"] = None  # said explicitly: split per frame
    prepare_subset(per_frame, tmp_path / "per_frame.h5", base_dir=tmp_path)
    with StructureStore(tmp_path / "per_frame.h5") as st:
        assert json.loads(st.attrs["split_report"])["group_by"] is None

    bad = json.loads(json.dumps(spec))
    bad["source"]["options"]["n_trajectorys"] = 2
    with pytest.raises(
        HessdistillError, match=r"subset.source.options: unknown sampling option\(s\) \['n_trajectorys'\]"
    ):
        prepare_subset(bad, tmp_path / "x.h5", base_dir=tmp_path)
    bad = json.loads(json.dumps(spec))
    bad["source"]["path"] = "missing.extxyz"
    with pytest.raises(HessdistillError, match=r"subset.source: file .*missing.extxyz.* does not exist"):
        prepare_subset(bad, tmp_path / "x.h5", base_dir=tmp_path)
    bad = json.loads(json.dumps(spec))
    bad["source"]["options"]["supercells"] = [[1, 1]]
    with pytest.raises(HessdistillError, match=r"subset.source.options: sampling setting 'supercells'"):
        prepare_subset(bad, tmp_path / "x.h5", base_dir=tmp_path)
    (tmp_path / "broken.extxyz").write_text('2\nLattice="1 0 0 0 1 0 0 0 0" pbc="T T T"\nCu 0 0 0\nCu 0.5 0 0\n')
    bad["source"] = {"name": "sample", "path": "broken.extxyz", "options": {"teacher": "ase:ase.calculators.emt:EMT"}}
    with pytest.raises(HessdistillError, match="broken.extxyz"):
        prepare_subset(bad, tmp_path / "x.h5", base_dir=tmp_path)


def test_prepare_resumes_an_interrupted_sampling(tmp_path, monkeypatch):
    """A prepare job killed half way leaves its finished trajectories in <out>.sampling/; the rerun computes only
    the rest and writes the same store as a run in one go; then the folder is removed."""
    from sampling_calculators import CrashingEMT

    from hessdistill.jobs.prepare import prepare_subset, sampling_dir

    _write_seeds(tmp_path / "seeds.extxyz")
    options = {
        "teacher": "ase:sampling_calculators:CrashingEMT",
        "dtype": "float64",
        "n_trajectories": 4,
        "n_rattle_series": 2,
        "frames_per_trajectory": 2,
        "sample_every": 1,
        "equilibration_steps": 1,
    }
    spec = {
        "source": {"name": "sample", "path": "seeds.extxyz", "options": options},
        "split": {"fractions": {"train": 0.5, "val": 0.5}, "seed": 1},
    }
    monkeypatch.setattr(CrashingEMT, "calls", 0)
    prepare_subset(spec, tmp_path / "whole.h5", base_dir=tmp_path)
    full = CrashingEMT.calls
    out = tmp_path / "resumed.h5"
    monkeypatch.setattr(CrashingEMT, "calls", 0)
    monkeypatch.setattr(CrashingEMT, "fail_after", full // 2)
    with pytest.raises(RuntimeError, match="killed"):
        prepare_subset(spec, out, base_dir=tmp_path)
    assert not out.exists() and len(list(sampling_dir(out).glob("*/*.npz"))) >= 1
    monkeypatch.setattr(CrashingEMT, "calls", 0)
    monkeypatch.setattr(CrashingEMT, "fail_after", None)
    prepare_subset(spec, out, base_dir=tmp_path)
    assert 0 < CrashingEMT.calls < full - full // 2 + 5  # the rest (+ the series that was cut), not all again
    assert out.read_bytes() == (tmp_path / "whole.h5").read_bytes()
    assert not sampling_dir(out).exists()


def test_prepare_labels_seed_frames_with_chgnet(tmp_path):
    """seed_frames with no sampling: a file of structures (one periodic, one molecule) gets CHGNet labels."""
    pytest.importorskip("chgnet")
    import ase.io
    from ase.build import molecule

    from hessdistill.data.store import StructureStore
    from hessdistill.jobs.prepare import prepare_subset
    from hessdistill.teachers import load_teacher

    sto = builtin._perovskite("Sr", "Ti", 3.905)
    sto.info["name"] = "SrTiO3"
    water = molecule("H2O")
    water.center(vacuum=4.0)
    ase.io.write(tmp_path / "flagged.extxyz", [sto, water], format="extxyz")
    options = {"teacher": "chgnet", "n_trajectories": 0, "n_rattle_series": 0, "seed_frames": True}
    spec = {
        "source": {"name": "sample", "path": "flagged.extxyz", "options": options},
        "split": {"counts": {"train": "rest", "test": 1}, "seed": 0},
    }
    prepare_subset(spec, tmp_path / "s.h5", base_dir=tmp_path)
    teacher = load_teacher("chgnet", dtype="float32", device="cpu")
    with StructureStore(tmp_path / "s.h5") as st:
        assert st.attrs["labels"].startswith("teacher:chgnet")
        frames = [st.atoms(split, i) for split in st.splits for i in range(st.n_structures(split))]
    assert sorted(x.info["parent"] for x in frames) == ["SrTiO3", "seed1-H2O"]
    for x in frames:
        assert x.info["sampling"] == "seed"
        e, f = teacher.energy_forces(x)
        assert x.get_potential_energy() == pytest.approx(e, abs=1e-5 * len(x))
        np.testing.assert_allclose(x.get_forces(), f, atol=1e-5)


def test_prepare_command_line_with_a_sample_source(tmp_path, capsys):
    import yaml

    from hessdistill.jobs.prepare import main

    _write_seeds(tmp_path / "seeds.extxyz")
    spec = {
        "source": {
            "name": "sample",
            "path": "seeds.extxyz",
            "options": {"teacher": "ase:ase.calculators.emt:EMT", "n_trajectories": 2, "n_rattle_series": 2},
        },
        "split": {"fractions": {"train": 0.5, "val": 0.5}, "seed": 0},
    }
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    assert main([str(tmp_path / "spec.yaml"), "--out", str(tmp_path / "s.h5")]) == 0
    assert "sampled 40 frames with" in capsys.readouterr().out
    spec["source"]["options"]["temperature"] = 300
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    assert main([str(tmp_path / "spec.yaml"), "--out", str(tmp_path / "t.h5")]) == 2
    err = capsys.readouterr().err
    assert "subset.source.options: unknown sampling option(s) ['temperature']" in err and "temperatures_K" in err
