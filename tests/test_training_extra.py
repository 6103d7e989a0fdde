"""Training on a run's subset plus the train splits of extra subsets (``extra_train_subsets``): the training set,
the element-energy fit, the summary and log, the resume key, and the refusals (other reference labels, other
teacher, no Hessians of the train split, elements the student cannot embed, missing files)."""

import json
import logging

import numpy as np
import pytest
import torch
from ase.build import molecule
from ase.calculators.singlepoint import SinglePointCalculator

from hessdistill.core.errors import HessdistillError
from hessdistill.students.registry import STUDENTS

STUDENTS.setdefault("toy", ("toy_models", "ToyStudent"))

N_BASE, N_VAL, N_EXTRA = 8, 4, 3


def _molecules(teacher, names, n, rng):
    out = []
    for i in range(n):
        a = molecule(names[i % len(names)])
        a.positions += rng.normal(scale=0.08, size=a.positions.shape)
        e, f = teacher.energy_forces(a)
        a.calc = SinglePointCalculator(a, energy=e, forces=f)
        out.append(a)
    return out


def _store(d, name, splits, labels, teacher, hessian_splits=("train",)):
    """A structure store, its teacher labels and Hessians (full rows) of ``hessian_splits``."""
    from hessdistill.data.store import write_structures
    from hessdistill.jobs.label import run_labelling

    st = write_structures(d / f"{name}.h5", splits, labels=labels)
    lab, hes = d / f"{name}-labels.h5", d / f"{name}-hessians.h5"
    run_labelling(st, teacher, lab, hessians_out=hes, hessian_splits=list(hessian_splits), progress=False)
    return {"structures": st, "labels": lab, "hessians": hes}


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    """The run's subset (train + val, H/C molecules), a train-only extra subset of the same teacher (with an N
    molecule: an element the run's own split lacks), one whose reference labels are DFT, one labelled without
    Hessians of its train split, and one labelled by another teacher."""
    from hessdistill.teachers import load_teacher

    d = tmp_path_factory.mktemp("extra")
    morse = load_teacher("torch:toy_models:morse", dtype="float64")
    rng = np.random.default_rng(0)
    base = _store(
        d,
        "base",
        {"train": _molecules(morse, ["CH4", "C2H6"], N_BASE, rng), "val": _molecules(morse, ["CH4"], N_VAL, rng)},
        "teacher:morse",
        morse,
    )
    extra_mols = _molecules(morse, ["NH3", "CH4", "C2H4"], N_EXTRA, rng)
    empty = {"val": [], "test": []}
    extra = _store(d, "flagged", {"train": extra_mols, **empty}, "teacher:morse", morse, ("train", "test"))
    dft = _store(d, "dft", {"train": extra_mols, **empty}, "dft", morse)
    no_hessians = _store(d, "nohess", {"train": extra_mols, **empty}, "teacher:morse", morse, ("test",))
    other = load_teacher("torch:toy_models:morse", dtype="float32")
    other_teacher = _store(d, "other", {"train": extra_mols, **empty}, "teacher:morse", other)
    return {"base": base, "flagged": extra, "dft": dft, "nohess": no_hessians, "other": other_teacher}


def cfg(**kw):
    out = dict(
        student={"arch": "toy", "cutoff": 4.0},
        method="hessian",
        rows_per_structure=2,
        batch_size=4,
        max_epochs=2,
        lr=3e-3,
        dtype="float64",
        device="cpu",
        seed=2,
    )
    out.update(kw)
    return out


def train(stores, out, extra=("flagged",), **kw):
    from hessdistill.training import train as _train

    b = stores["base"]
    return _train(
        cfg(extra_train_subsets=list(extra), **kw),
        b["structures"],
        out,
        labels=b["labels"],
        hessians=b["hessians"],
        progress=False,
        extra_train={name: stores[name] for name in extra},
        subset="base",
    )


def test_the_training_set_is_the_runs_train_split_then_each_extra_subsets(stores, tmp_path, caplog):
    from hessdistill.training.config import TrainConfig, method_weights
    from hessdistill.training.loop import setup

    with caplog.at_level(logging.INFO, logger="hessdistill.jobs.train"):
        summary = train(stores, tmp_path / "run")
    assert summary["train_structures"] == {"base": N_BASE, "flagged": N_EXTRA}
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["train_structures"] == {
        "base": N_BASE,
        "flagged": N_EXTRA,
    }
    assert f"training set: {N_BASE + N_EXTRA} structures: {N_BASE} from 'base', {N_EXTRA} from 'flagged'" in caplog.text

    b = stores["base"]
    run = setup(
        TrainConfig.from_dict(cfg(extra_train_subsets=["flagged"])),
        b["structures"],
        labels=b["labels"],
        hessians=b["hessians"],
        extra_train={"flagged": stores["flagged"]},
        subset="base",
    )
    ds = run.train_ds
    assert len(ds) == N_BASE + N_EXTRA and len(ds.hessians) == N_BASE + N_EXTRA
    assert ds.describe(N_BASE + 1) == "structure 1 of split 'train' of subset 'flagged'"
    # the extra structures, teacher forces and Hessian rows are the flagged store's, in order
    from hessdistill.data.labels import HessianStore, LabelStore

    with LabelStore(stores["flagged"]["labels"]) as ls, HessianStore(stores["flagged"]["hessians"]) as hs:
        for k in range(N_EXTRA):
            assert np.array_equal(ds.teacher_forces[N_BASE + k], ls.energy_forces("train", k)[1])
            assert np.array_equal(ds.hessians[N_BASE + k][1], hs.rows("train", k)[1])
            assert ds[N_BASE + k].idx.item() == N_BASE + k
    # the element energies are fitted on every training structure: nitrogen (only in the extra subset) gets one
    e_n = float(run.model.element_energy[7])
    assert e_n != 0.0
    alone = setup(
        TrainConfig.from_dict(cfg()), b["structures"], labels=b["labels"], hessians=b["hessians"], subset="base"
    )
    assert float(alone.model.element_energy[7]) == 0.0 and len(alone.train_ds) == N_BASE
    assert alone.provenance["inputs"]["train"] != run.provenance["inputs"]["train"]
    # the sampler draws rows of the extra structures too
    run.sampler.set_position(0, 0)
    batch = run.sampler([ds[N_BASE + k] for k in range(N_EXTRA)])
    assert torch.all(batch.hess_cot.sum(dim=(1, 2)) == N_EXTRA)
    assert method_weights(run.cfg).hessian > 0


def test_a_checkpoint_resumes_only_with_the_same_extra_subsets(stores, tmp_path, caplog):
    train(stores, tmp_path / "run", max_epochs=1)
    with caplog.at_level(logging.INFO, logger="hessdistill.jobs.train"):
        s = train(stores, tmp_path / "run", max_epochs=2)
    assert s["resumed_from_epoch"] == 1
    from hessdistill.training import train as _train

    b = stores["base"]
    with pytest.raises(HessdistillError, match="extra_train_subsets"):  # the settings differ: no resumption
        _train(
            cfg(max_epochs=3),
            b["structures"],
            tmp_path / "run",
            labels=b["labels"],
            hessians=b["hessians"],
            progress=False,
        )
    assert (tmp_path / "run" / "last.pt").exists()  # refused before anything was deleted


def test_different_reference_labels_are_refused_naming_both_subsets(stores, tmp_path):
    with pytest.raises(HessdistillError) as err:
        train(stores, tmp_path / "run", extra=("dft",))
    msg = str(err.value)
    assert "'dft'" in msg and "subset 'base'" in msg and "'teacher:morse'" in msg and "'labels'" in msg
    assert "extra_train_subsets" in msg and "energy_source: teacher" in msg and "dft.h5" in msg
    assert not (tmp_path / "run" / "model.pt").exists()
    # on the teacher's own labels the reference does not enter: the same subsets train
    s = train(stores, tmp_path / "teacher-labels", extra=("dft",), energy_source="teacher", max_epochs=1)
    assert s["train_structures"] == {"base": N_BASE, "dft": N_EXTRA}


def test_other_teacher_missing_hessians_unknown_elements_and_missing_files_are_refused(stores, tmp_path):
    with pytest.raises(HessdistillError, match=r"other-labels\.h5.*'other' was labelled by teacher .*float32"):
        train(stores, tmp_path / "a", extra=("other",))
    with pytest.raises(HessdistillError, match=r"'nohess' has no teacher Hessian rows of its train split") as err:
        train(stores, tmp_path / "b", extra=("nohess",))
    assert "hessian_splits" in str(err.value)
    # without the Hessian term the Hessians are not read: the same subset trains
    s = train(stores, tmp_path / "c", extra=("nohess",), method="undistilled", max_epochs=1)
    assert s["train_structures"]["nohess"] == N_EXTRA
    painn = {"arch": "painn", "hidden": 8, "num_layers": 1, "num_rbf": 4, "cutoff": 4.0, "num_elements": 7}
    with pytest.raises(HessdistillError, match=r"'flagged' has elements the student cannot embed.*N") as err:
        train(stores, tmp_path / "d", student=painn)
    assert "remove 'flagged' from extra_train_subsets" in str(err.value)
    from hessdistill.training import train as _train

    b = stores["base"]
    with pytest.raises(HessdistillError, match=r"extra_train_subsets are \['flagged'\], but files were given for \[\]"):
        _train(cfg(extra_train_subsets=["flagged"]), b["structures"], tmp_path / "e", hessians=b["hessians"])
    with pytest.raises(HessdistillError, match="no teacher labels file"):
        _train(
            cfg(extra_train_subsets=["flagged"]),
            b["structures"],
            tmp_path / "f",
            labels=b["labels"],
            hessians=b["hessians"],
            extra_train={"flagged": {"structures": stores["flagged"]["structures"]}},
        )
    with pytest.raises(HessdistillError, match="more than once"):
        train(stores, tmp_path / "g", extra=("flagged", "flagged"))


def test_a_subset_without_training_structures_is_refused(stores, tmp_path):
    from hessdistill.data.store import write_structures

    a = molecule("CH4")
    a.calc = SinglePointCalculator(a, energy=0.0, forces=np.zeros((5, 3)))
    empty = write_structures(tmp_path / "empty.h5", {"val": [a]}, labels="teacher:morse")
    from hessdistill.training import train as _train

    b = stores["base"]
    with pytest.raises(HessdistillError, match=r"'empty' has no training structures \(splits: val \(1\)\)"):
        _train(
            cfg(extra_train_subsets=["empty"], method="undistilled"),
            b["structures"],
            tmp_path / "run",
            labels=b["labels"],
            extra_train={"empty": {"structures": empty, "labels": b["labels"]}},
        )


def test_the_command_line_and_the_snakemake_job_pass_the_extra_subsets(stores, tmp_path, capsys):
    from types import SimpleNamespace

    import yaml

    from hessdistill.jobs.train import main, snakemake_job

    b, f = stores["base"], stores["flagged"]
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(cfg(max_epochs=1, extra_train_subsets=["flagged"])))
    argv = [str(tmp_path / "run.yaml"), "--structures", str(b["structures"]), "--labels", str(b["labels"])]
    argv += ["--hessians", str(b["hessians"]), "--out", str(tmp_path / "cli"), "--no-progress", "--subset", "base"]
    assert main(argv + ["--extra-train", "flagged", str(f["structures"]), str(f["labels"]), str(f["hessians"])]) == 0
    assert json.loads((tmp_path / "cli" / "summary.json").read_text())["train_structures"] == {
        "base": N_BASE,
        "flagged": N_EXTRA,
    }
    assert main(argv) == 2  # extra_train_subsets without its files
    assert "files were given for []" in capsys.readouterr().err
    smk = SimpleNamespace(
        params=SimpleNamespace(run=cfg(max_epochs=1, extra_train_subsets=["flagged"])),
        threads=1,
        wildcards=SimpleNamespace(subset="base"),
        input=SimpleNamespace(
            structures=str(b["structures"]),
            labels=str(b["labels"]),
            hessians=str(b["hessians"]),
            extra_structures=[str(f["structures"])],
            extra_labels=[str(f["labels"])],
            extra_hessians=[str(f["hessians"])],
        ),
        output=SimpleNamespace(model=str(tmp_path / "smk" / "model.pt")),
    )
    assert snakemake_job(smk, device="cpu")["train_structures"] == {"base": N_BASE, "flagged": N_EXTRA}
