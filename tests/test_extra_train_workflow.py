"""The workflow side of ``runs.<run>.extra_train_subsets``: the config checks, the matrix (a subset used only as
extra training data is neither trained on nor evaluated), the train_run inputs and params, and dry runs: adding a
subset and a run that trains on it plans only that subset's preparation and labels, that run's training and
evaluations and the report."""

import copy

import pytest
from test_config_check import base, problems_of

from hessdistill.workflow.params import combos, extra_only_subsets, extra_train_subsets, matrix_subsets

FLAGGED = {
    "source": {
        "name": "builtin",
        "options": {
            "family": "perovskites",
            "teacher": "chgnet",
            "dtype": "float32",
            "compositions": ["SrTiO3"],
            "supercells": [[1, 1, 1]],
            "n_trajectories": 1,
            "frames_per_trajectory": 2,
            "n_rattle_series": 0,
            "equilibration_steps": 2,
            "sample_every": 1,
            "seed": 7,
        },
    },
    "split": {"counts": {"train": "rest", "val": 0, "test": 0}, "seed": 0},
}


def augmented(config=None, run="tiny-hessian-flagged") -> dict:
    """ci-tiny plus the subset `sto-flagged` (train only) and a run that trains on tiny-sto + sto-flagged."""
    cfg = copy.deepcopy(config or base())
    cfg["subsets"]["sto-flagged"] = copy.deepcopy(FLAGGED)
    cfg["runs"][run] = copy.deepcopy(cfg["runs"]["tiny-hessian"]) | {
        "subsets": ["tiny-sto"],
        "extra_train_subsets": ["sto-flagged"],
    }
    return cfg


# ---------------------------------------------------------------- params: the matrix
def test_a_subset_used_only_as_extra_training_data_is_not_in_the_matrix():
    cfg = augmented()
    assert extra_only_subsets(cfg) == {"sto-flagged"}
    assert matrix_subsets(cfg) == ["tiny-sto"]
    assert sorted(combos(cfg)) == [
        ("tiny-sto", "chgnet", "tiny-hessian"),
        ("tiny-sto", "chgnet", "tiny-hessian-flagged"),
        ("tiny-sto", "chgnet", "tiny-undistilled"),
    ]
    assert extra_train_subsets(cfg, "tiny-sto", "tiny-hessian-flagged") == ["sto-flagged"]
    assert extra_train_subsets(cfg, "tiny-sto", "tiny-hessian") == []
    # a run that names it in `subsets` trains on it: it is in the matrix again
    cfg["runs"]["tiny-undistilled"]["subsets"] = ["tiny-sto", "sto-flagged"]
    assert extra_only_subsets(cfg) == set() and "sto-flagged" in matrix_subsets(cfg)
    # subset_overrides may set the list for one subset
    cfg = base()
    cfg["subsets"]["sto-flagged"] = FLAGGED
    cfg["runs"]["tiny-hessian"]["subset_overrides"] = {"tiny-sto": {"extra_train_subsets": ["sto-flagged"]}}
    assert extra_only_subsets(cfg) == {"sto-flagged"}
    assert extra_train_subsets(cfg, "tiny-sto", "tiny-hessian") == ["sto-flagged"]


# ---------------------------------------------------------------- config checks
def test_the_augmented_config_passes():
    assert problems_of(augmented()) == ""


def test_an_unknown_subset_is_named_with_the_key_and_the_subsets():
    cfg = augmented()
    cfg["runs"]["tiny-hessian-flagged"]["extra_train_subsets"] = ["sto-flaged"]
    msg = problems_of(cfg)
    assert "config key 'runs.tiny-hessian-flagged.extra_train_subsets[0]'" in msg
    assert "'sto-flaged'" in msg and "did you mean 'sto-flagged'" in msg
    assert "use one of: tiny-sto, sto-flagged" in msg


def test_the_runs_own_subset_and_duplicates_are_refused():
    cfg = augmented()
    cfg["runs"]["tiny-hessian-flagged"]["extra_train_subsets"] = ["sto-flagged", "tiny-sto"]
    msg = problems_of(cfg)
    assert "'runs.tiny-hessian-flagged.extra_train_subsets[1]'" in msg
    assert "'tiny-sto' is a subset this run is trained on" in msg
    cfg["runs"]["tiny-hessian-flagged"]["extra_train_subsets"] = ["sto-flagged", "sto-flagged"]
    assert "'sto-flagged' is listed twice" in problems_of(cfg)
    cfg = augmented()  # a per-subset list: checked against that subset
    cfg["runs"]["tiny-hessian-flagged"]["subset_overrides"] = {"tiny-sto": {"extra_train_subsets": ["tiny-sto"]}}
    msg = problems_of(cfg)
    assert "'runs.tiny-hessian-flagged.subset_overrides.tiny-sto.extra_train_subsets[0]'" in msg


def test_the_extra_subset_needs_a_train_split_and_hessian_methods_train_hessians():
    cfg = augmented()
    cfg["subsets"]["sto-flagged"]["split"] = {"fractions": {"val": 0.5, "test": 0.5}, "seed": 0}
    msg = problems_of(cfg)
    assert "'runs.tiny-hessian-flagged.extra_train_subsets[0]'" in msg and "has no train split" in msg
    assert "subsets.sto-flagged.split" in msg
    cfg = augmented()
    cfg["teachers"]["chgnet"]["hessian_splits"] = ["test"]
    msg = problems_of(cfg)
    assert "config key 'runs.tiny-hessian-flagged.extra_train_subsets'" in msg
    assert "teachers.chgnet.hessian_splits" in msg and "add train to teachers.chgnet.hessian_splits" in msg
    # an undistilled run reads no Hessians
    cfg["runs"]["tiny-hessian-flagged"] = copy.deepcopy(cfg["runs"]["tiny-undistilled"]) | {
        "subsets": ["tiny-sto"],
        "extra_train_subsets": ["sto-flagged"],
    }
    assert "hessian_splits" not in problems_of(cfg)


def test_a_run_left_with_no_subset_is_refused():
    cfg = base()
    cfg["runs"]["tiny-hessian"]["extra_train_subsets"] = ["tiny-sto"]
    msg = problems_of(cfg)
    assert "'runs.tiny-hessian.extra_train_subsets'" in msg and "is trained on no subset" in msg


def test_a_malformed_list_is_a_schema_error_naming_the_key():
    cfg = augmented()
    cfg["runs"]["tiny-hessian-flagged"]["extra_train_subsets"] = "sto-flagged"
    msg = problems_of(cfg)
    assert "runs.tiny-hessian-flagged.extra_train_subsets" in msg and "expected a list" in msg


# ---------------------------------------------------------------- dry runs
snakemake_helpers = pytest.importorskip("test_workflow")


def _jobs_of_the_new_subset_and_run(run="tiny-hessian-flagged"):
    return (
        {
            "prepare_subset: results/sto-flagged/data/structures.h5",
            "label_teacher: results/sto-flagged/teachers/chgnet/labels.h5",
        }
        | snakemake_helpers.run_jobs(run)
        | snakemake_helpers.REPORT
    )


def test_a_dry_run_from_scratch_labels_the_new_subset_but_trains_and_evaluates_nothing_on_it(tmp_path):
    jobs = snakemake_helpers.dry_run(tmp_path, augmented(snakemake_helpers.base_config()))
    assert "prepare_subset: results/sto-flagged/data/structures.h5" in jobs
    assert "label_teacher: results/sto-flagged/teachers/chgnet/labels.h5" in jobs
    assert not [j for j in jobs if "sto-flagged" in j and not j.startswith(("prepare_subset", "label_teacher"))]
    assert "train_run: results/tiny-sto/runs/chgnet/tiny-hessian-flagged/model.pt" in jobs


def test_the_train_job_gets_the_extra_subsets_files(tmp_path):
    """snakemake --summary-like check: the planned job's input lists the extra subset's three files."""
    cfg = augmented(snakemake_helpers.base_config())
    res = snakemake_helpers.snakemake(tmp_path, cfg, "-n", "results/tiny-sto/runs/chgnet/tiny-hessian-flagged/model.pt")
    assert res.returncode == 0, res.stdout + res.stderr
    out = res.stdout + res.stderr
    block = out[out.index("rule train_run:") :]
    block = block[: block.index("output:")]
    for path in (
        "results/sto-flagged/data/structures.h5",
        "results/sto-flagged/teachers/chgnet/labels.h5",
        "results/sto-flagged/teachers/chgnet/hessians.h5",
        "results/tiny-sto/teachers/chgnet/hessians.h5",
    ):
        assert path in block, block


@pytest.mark.slow
def test_adding_a_flagged_subset_and_a_run_on_it_plans_only_their_jobs(ci_tiny_completed):
    """On the finished ci-tiny results: the new subset's preparation and labels, the new run's training and
    evaluations and the report; nothing of the existing runs, labels or teacher evaluations.  Then changing the
    list of a run reruns only that run (and its evaluations and the report)."""
    expected = _jobs_of_the_new_subset_and_run()
    assert snakemake_helpers.dry_run(ci_tiny_completed, augmented(snakemake_helpers.base_config())) == expected
    cfg = snakemake_helpers.base_config()
    cfg["subsets"]["sto-flagged"] = copy.deepcopy(FLAGGED)
    cfg["runs"]["tiny-hessian"]["extra_train_subsets"] = ["sto-flagged"]
    cfg["runs"]["tiny-hessian"]["subsets"] = ["tiny-sto"]
    expected = (
        {
            "prepare_subset: results/sto-flagged/data/structures.h5",
            "label_teacher: results/sto-flagged/teachers/chgnet/labels.h5",
        }
        | snakemake_helpers.run_jobs("tiny-hessian")
        | snakemake_helpers.REPORT
    )
    assert snakemake_helpers.dry_run(ci_tiny_completed, cfg) == expected


@pytest.mark.slow
def test_the_augmented_run_trains_on_both_subsets_and_leaves_the_original_files_alone(ci_tiny_completed, tmp_path):
    """The real thing on a copy of the finished ci-tiny results: the new subset is prepared and labelled, the new
    run trains on tiny-sto's train split plus all of sto-flagged, and no file of tiny-sto's data, labels, Hessians
    or existing runs is rewritten."""
    import json
    import shutil

    from hessdistill.data.store import StructureStore

    work = tmp_path / "copy"
    shutil.copytree(ci_tiny_completed, work, symlinks=True)
    before = {
        p: p.stat().st_mtime_ns
        for p in (work / "results" / "tiny-sto").rglob("*")
        if p.is_file() and "eval" not in p.parts
    }
    res = snakemake_helpers.snakemake(work, augmented(snakemake_helpers.base_config()), "--show-failed-logs")
    assert res.returncode == 0, (res.stdout + res.stderr)[-8000:]
    with StructureStore(work / "results/tiny-sto/data/structures.h5") as st:
        n_base = st.n_structures("train")
    with StructureStore(work / "results/sto-flagged/data/structures.h5") as st:
        n_extra = st.n_structures("train")
        assert n_extra > 0 and st.n_structures("val") == st.n_structures("test") == 0
    run = work / "results/tiny-sto/runs/chgnet/tiny-hessian-flagged"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["train_structures"] == {"tiny-sto": n_base, "sto-flagged": n_extra}
    log = (work / "results/logs/train_run/tiny-sto/chgnet/tiny-hessian-flagged.log").read_text()
    assert f"training set: {n_base + n_extra} structures: {n_base} from 'tiny-sto', {n_extra} from 'sto-flagged'" in log
    assert {p: p.stat().st_mtime_ns for p in before} == before
    assert (
        not (work / "results/sto-flagged/runs").exists()
        and not (work / "results/sto-flagged/teachers/chgnet/eval").exists()
    )
