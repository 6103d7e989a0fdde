"""The workflow's results layout: where every rule writes, in one place.

Every rule's inputs and outputs (rules/*.smk) and the report's reading of them (:mod:`hessdistill.reporting`) use
these functions.  Called with wildcard names (``structures_path("{subset}")``) they give the rules' patterns,
called with values they give the files::

    results/{subset}/data/structures.h5                              structures_path
    results/{subset}/teachers/{teacher}/labels.h5, hessians.h5       labels_path, hessians_path
    results/{subset}/teachers/{teacher}/label_shards/{shard}.json    label_shard_path (sharded labelling)
    results/{subset}/teachers/{teacher}/vibrations_minima.h5         minima_path
    results/{subset}/teachers/{teacher}/eval/{evaluation}.json       eval_path(subset, teacher, None, evaluation)
    results/{subset}/runs/{teacher}/{run}/model.pt, log.csv, summary.json   run_file
    results/{subset}/runs/{teacher}/{run}/eval/{evaluation}.json     eval_path(subset, teacher, run, evaluation)
    results/{subset}/runs/{teacher}/{run}/eval/flagged.extxyz        flagged_path (the disagreement evaluation)
    results/report/...                                               report_path
    results/logs/{rule}/..., results/benchmarks/{rule}/...           log_path, benchmark_path

:func:`identify` reads (subset, teacher, run, file name) back from a path of this layout.  Standard library only:
the Snakefile imports it on the submitting (login) node.
"""

from __future__ import annotations

import posixpath
from pathlib import PurePath

#: the folder (relative to the workflow's working directory) that holds everything the workflow makes
RESULTS = "results"
#: the disagreement evaluation's flagged MD frames, beside its JSON (hessdistill.evaluation.disagreement)
FLAGGED_FRAMES = "flagged.extxyz"
#: the run name of a teacher evaluated as a pseudo-run (its files are under teachers/, not runs/)
TEACHER_RUN = "teacher"


def _join(*parts) -> str:
    return posixpath.join(RESULTS, *map(str, parts))


def structures_path(subset) -> str:
    """The structure store of ``subset`` (rule prepare_subset)."""
    return _join(subset, "data", "structures.h5")


def teacher_dir(subset, teacher) -> str:
    """The folder of one teacher's files on one subset (labels, Hessians, minima, its evaluations)."""
    return _join(subset, "teachers", teacher)


def labels_path(subset, teacher) -> str:
    """The teacher's energies and forces of every split (rules label_teacher, label_teacher_merge)."""
    return posixpath.join(teacher_dir(subset, teacher), "labels.h5")


def hessians_path(subset, teacher) -> str:
    """The teacher's Hessian rows (rules label_teacher, label_teacher_merge)."""
    return posixpath.join(teacher_dir(subset, teacher), "hessians.h5")


def label_shard_path(subset, teacher, shard) -> str:
    """The summary of one labelling shard (rule label_teacher_shard); the per-structure cache is the folder
    ``label_cache`` beside the ``label_shards`` folder (:data:`hessdistill.jobs.label_shards.CACHE_DIRNAME`)."""
    return posixpath.join(teacher_dir(subset, teacher), "label_shards", f"{shard}.json")


def minima_path(subset, teacher) -> str:
    """The teacher-relaxed structures and the teacher's Hessians there (rule teacher_minima)."""
    return posixpath.join(teacher_dir(subset, teacher), "vibrations_minima.h5")


def run_dir(subset, teacher, run) -> str:
    """The folder of one student run (its model, training log, summary and evaluations)."""
    return _join(subset, "runs", teacher, run)


def run_file(subset, teacher, run, name) -> str:
    """A file of one student run: ``model.pt``, ``log.csv`` or ``summary.json`` (rule train_run)."""
    return posixpath.join(run_dir(subset, teacher, run), name)


def eval_path(subset, teacher, run, evaluation) -> str:
    """One evaluation's JSON: of student ``run``, or of the teacher itself (``run`` None or :data:`TEACHER_RUN`)."""
    base = teacher_dir(subset, teacher) if run in (None, TEACHER_RUN) else run_dir(subset, teacher, run)
    return posixpath.join(base, "eval", f"{evaluation}.json")


def flagged_path(subset, teacher, run) -> str:
    """The MD frames the disagreement evaluation of student ``run`` flagged (:data:`FLAGGED_FRAMES`, extxyz; an empty
    file when none was flagged), beside its ``disagreement.json``."""
    return posixpath.join(run_dir(subset, teacher, run), "eval", FLAGGED_FRAMES)


def report_path(name) -> str:
    """A file of the report (rule report)."""
    return _join("report", name)


def log_path(rule, *parts, suffix=".log") -> str:
    """The log of a job of ``rule``: ``results/logs/<rule>/<part>/.../<last part><suffix>``."""
    return _join("logs", rule, *parts[:-1], f"{parts[-1]}{suffix}")


def benchmark_path(rule, *parts) -> str:
    """The benchmark file of a job of ``rule`` (as :func:`log_path`, ``.tsv``)."""
    return _join("benchmarks", rule, *parts[:-1], f"{parts[-1]}.tsv")


def identify(path) -> tuple[str, str, str, str]:
    """(subset, teacher, run, file name) of a run or teacher file of this layout: ``.../{subset}/runs/{teacher}/
    {run}/[eval/]<name>`` or ``.../{subset}/teachers/{teacher}/eval/<name>`` (run = :data:`TEACHER_RUN`).

    Only the end of the path is read, so results moved or copied elsewhere are still recognised.  Raises
    ValueError for any other path."""
    parts = PurePath(path).parts
    if len(parts) >= 2 and parts[-2] == "eval":
        parts = parts[:-2] + (parts[-1],)
    if len(parts) >= 5 and parts[-4] == "runs":
        return parts[-5], parts[-3], parts[-2], parts[-1]
    if len(parts) >= 4 and parts[-3] == "teachers":
        return parts[-4], parts[-2], TEACHER_RUN, parts[-1]
    raise ValueError(
        f"{path}: not a run or teacher evaluation file (expected .../<subset>/runs/<teacher>/<run>/eval/"
        "<evaluation>.json or .../<subset>/teachers/<teacher>/eval/<evaluation>.json)"
    )
