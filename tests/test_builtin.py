"""Built-in offline datasets (hessdistill.data.builtin) generated with a shipped-weights teacher, and the job that
loads the teacher and writes the store (hessdistill.jobs.generate)."""

import json

import numpy as np
import pytest

pytest.importorskip("chgnet")

from hessdistill.core.errors import HessdistillError  # noqa: E402
from hessdistill.data.builtin import MOLECULES, GeneratorSettings, estimate_calls, generate  # noqa: E402
from hessdistill.data.store import StructureStore  # noqa: E402
from hessdistill.jobs.generate import main, run  # noqa: E402
from hessdistill.teachers import load_teacher  # noqa: E402
from hessdistill.teachers.calculator import TeacherCalculator  # noqa: E402


@pytest.fixture(scope="module")
def teacher():
    return load_teacher("chgnet", dtype="float32", device="cpu")


def tiny(**kw):
    base = dict(
        compositions=("SrTiO3", "KNbO3"),
        supercells=((1, 1, 1), (2, 1, 1)),
        n_trajectories=2,
        n_rattle_series=1,
        frames_per_trajectory=3,
        sample_every=1,
        equilibration_steps=1,
    )
    base.update(kw)
    return GeneratorSettings(**base)


def test_perovskites_are_labelled_by_the_teacher_and_deterministic(teacher):
    s = tiny()
    a = generate(TeacherCalculator(teacher), s)
    b = generate(TeacherCalculator(teacher), s)
    assert len(a) == (s.n_trajectories + s.n_rattle_series) * s.frames_per_trajectory
    for x, y in zip(a, b):
        assert np.array_equal(x.positions, y.positions) and np.array_equal(x.cell.array, y.cell.array)
        assert x.get_potential_energy() == y.get_potential_energy()
    md = [x for x in a if x.info["sampling"] == "md"]
    assert len({x.info["trajectory"] for x in md}) == 2
    # MD frames move: consecutive frames differ, and their forces are not ~0
    assert np.abs(md[1].positions - md[0].positions).max() > 1e-3
    for x in a[::4]:
        assert set(x.get_chemical_symbols()) in ({"Sr", "Ti", "O"}, {"K", "Nb", "O"})
        assert x.pbc.all() and len(x) in (5, 10)
        e, f = teacher.energy_forces(x)
        assert x.get_potential_energy() == pytest.approx(e, abs=1e-4 * len(x))
        np.testing.assert_allclose(x.get_forces(), f, atol=1e-4)
    assert max(np.abs(x.get_forces()).max() for x in a) > 0.1
    c = generate(TeacherCalculator(teacher), tiny(seed=1))
    assert not np.array_equal(c[0].positions, a[0].positions)


def test_relaxation_series_descend_towards_the_teachers_minimum(teacher):
    """n_relax_series: frames along a teacher FIRE relaxation, energies falling and forces shrinking, each series
    its own trajectory group; deterministic; counted by estimate_calls."""
    from hessdistill.data.builtin import estimate_calls

    s = tiny(n_trajectories=0, n_rattle_series=0, n_relax_series=2, frames_per_trajectory=4, relax_every=3)
    a = generate(TeacherCalculator(teacher), s)
    assert len(a) == 8 and {x.info["sampling"] for x in a} == {"relax"}
    assert {x.info["trajectory"] for x in a} == {"relax0000", "relax0001"}
    assert estimate_calls(s) == 2 * (1 + 3 * 4)
    for r in ("relax0000", "relax0001"):
        series = [x for x in a if x.info["trajectory"] == r]
        e = [x.get_potential_energy() for x in series]
        fmax = [np.abs(x.get_forces()).max() for x in series]
        assert e[-1] < e[0] and fmax[-1] < 0.5 * fmax[0]
        assert np.array_equal(series[0].cell.array, series[-1].cell.array)  # fixed cell
    b = generate(TeacherCalculator(teacher), s)
    assert all(np.array_equal(x.positions, y.positions) for x, y in zip(a, b))


def test_molecules_family(teacher):
    s = GeneratorSettings(
        family="molecules",
        compositions=("H2O", "CH4"),
        n_trajectories=2,
        n_rattle_series=1,
        frames_per_trajectory=2,
        sample_every=1,
        equilibration_steps=1,
    )
    out = generate(TeacherCalculator(teacher), s)
    assert len(out) == 6
    assert all(not x.pbc.any() for x in out)
    assert {x.info["parent"] for x in out} <= {"H2O", "CH4"}
    assert "CH3CH2OH" in MOLECULES and all(len(n) > 0 for n in MOLECULES)


def test_bad_settings(teacher):
    with pytest.raises(HessdistillError, match="unknown built-in dataset family"):
        generate(TeacherCalculator(teacher), GeneratorSettings(family="zeolites"))
    with pytest.raises(HessdistillError, match="no perovskites parent"):
        generate(TeacherCalculator(teacher), GeneratorSettings(compositions=("NaCl",)))


def test_store_is_split_by_trajectory(tmp_path, teacher):
    s = tiny(n_trajectories=4, n_rattle_series=2, frames_per_trajectory=2)
    path = run(tmp_path / "b.h5", teacher, s, fractions={"train": 0.5, "val": 0.25, "test": 0.25})
    with StructureStore(path) as st:
        assert st.attrs["labels"] == "teacher:chgnet:0.3.0"
        assert json.loads(st.attrs["generator"])["n_trajectories"] == 4
        seen = {}
        total = 0
        for split in st.splits:
            for i in range(st.n_structures(split)):
                traj = st.atoms(split, i).info["trajectory"]
                assert seen.setdefault(traj, split) == split, f"trajectory {traj} in two splits"
                total += 1
        assert total == 12
    assert estimate_calls(s) == 4 * (1 + 1 + 2) + 2 * 2


def test_command_line_writes_the_store(tmp_path, capsys):
    """python -m hessdistill.jobs.generate: the teacher loaded by name, settings overridden by JSON."""
    settings = json.dumps(
        {
            "compositions": ["SrTiO3"],
            "supercells": [[1, 1, 1]],
            "n_trajectories": 6,
            "n_rattle_series": 4,
            "frames_per_trajectory": 1,
            "sample_every": 1,
            "equilibration_steps": 1,
        }
    )
    out = tmp_path / "cli.h5"
    assert (
        main(
            [
                "--family",
                "perovskites",
                "--teacher",
                "chgnet",
                "--device",
                "cpu",
                "--settings",
                settings,
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert "wrote" in capsys.readouterr().out
    with StructureStore(out) as st:
        assert st.attrs["labels"].startswith("teacher:chgnet")
        assert sum(st.n_structures(split) for split in st.splits) == 10
    assert main(["--settings", '{"bogus": 1}', "--out", str(tmp_path / "x.h5")]) == 2
    assert "unknown generator setting(s) ['bogus']" in capsys.readouterr().err
