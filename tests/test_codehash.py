"""Code hashes behind the workflow's rerun decisions (hessdistill.core.codehash): real code changes count, comments,
docstrings, formatting and modification times do not; each job family's hash covers exactly its imports."""

import os
import shutil
from pathlib import Path

import pytest

from hessdistill.core.codehash import code_hash, module_closure

ROOT = Path(__file__).resolve().parents[1]
RUN_JOB = ROOT / "workflow_scripts" / "run_job.py"


def family_hashes(ch=None) -> dict[str, str]:
    """{rule: its `code` hash as rules/common.smk computes it}: the one script and the rule's job module."""
    from hessdistill.core import codehash
    from hessdistill.workflow.rule_job import RULE_JOBS, job_module

    ch = ch or codehash
    return {rule: ch.code_hash([RUN_JOB, job_module(rule)]) for rule in RULE_JOBS}


def closure(rule) -> set[str]:
    from hessdistill.workflow.rule_job import job_module

    return set(module_closure([RUN_JOB, job_module(rule)]))


def test_closures_follow_the_imports_of_each_job():
    label = closure("label_teacher")
    # the teacher registry imports its adapters by name: they are part of the labelling code
    assert {
        "hessdistill.jobs.label",
        "hessdistill.core.hessian",
        "hessdistill.teachers.chgnet",
        "hessdistill.teachers.sevenn",
        "hessdistill.teachers.mace",
        "hessdistill.workflow.rule_job",
    } <= label
    assert not any(
        m.startswith(("hessdistill.students", "hessdistill.training", "hessdistill.evaluation")) for m in label
    )
    assert "hessdistill.reporting" not in label
    report = closure("report")
    assert {"hessdistill.reporting", "hessdistill.jobs.report"} <= report
    assert not any(m.startswith("hessdistill.teachers") for m in report)
    assert {"hessdistill.jobs.label", "hessdistill.jobs.label_shards"} <= closure("label_teacher_merge")


def test_the_one_script_names_no_job_module():
    """run_job.py and rule_job.py find the job module at run time: no job module is in their closure, else every
    family's hash would follow every job."""
    mods = module_closure([RUN_JOB])
    assert "hessdistill.workflow.rule_job" in mods
    assert not [m for m in mods if m.startswith("hessdistill.jobs.")]


def test_only_changes_to_what_the_code_does_change_the_hash(tmp_path):
    script = tmp_path / "job.py"
    script.write_text('"""A job."""\nfrom hessdistill.core.errors import HessdistillError\n\nx = 1  # one\n')
    h = code_hash([script])
    script.write_text(
        '"""A job, documented differently."""\nfrom hessdistill.core.errors import HessdistillError\n'
        "# a new comment\nx = (\n    1\n)\n"
    )
    assert code_hash([script]) == h
    os.utime(script, (0, 0))
    assert code_hash([script]) == h
    script.write_text('"""A job."""\nfrom hessdistill.core.errors import HessdistillError\n\nx = 2\n')
    assert code_hash([script]) != h
    assert len(h) == 16 and int(h, 16) >= 0


def _package_copy(tmp_path, monkeypatch):
    """A copy of the hessdistill package that code_hash reads instead of the real one."""
    import hessdistill.core.codehash as ch

    pkg = tmp_path / "hessdistill"
    shutil.copytree(Path(ch.__file__).parents[1], pkg, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(ch, "_ROOT", pkg)
    return ch, pkg


def _change(path: Path) -> None:
    path.write_text(path.read_text() + "\n\ndef _extra():\n    return 1\n")


def test_a_library_change_reaches_the_hash_of_every_job_that_imports_it(tmp_path, monkeypatch):
    """A copy of the package with one function changed: the labelling job's hash changes, the report's does not."""
    ch, pkg = _package_copy(tmp_path, monkeypatch)
    before = family_hashes(ch)
    _change(pkg / "core" / "hessian.py")
    after = family_hashes(ch)
    assert after["label_teacher"] != before["label_teacher"]
    assert after["report"] == before["report"]


@pytest.mark.parametrize(
    "module,rules",
    [
        ("label", {"label_teacher", "label_teacher_shard", "label_teacher_merge"}),
        ("label_merge", {"label_teacher_merge"}),
        ("report", {"report"}),
    ],
)
def test_a_change_in_one_job_module_changes_only_its_familys_hash(tmp_path, monkeypatch, module, rules):
    """One script runs every rule, yet each family's code is its own job module: a change in jobs/<module>.py
    changes the hash of the rules that run it (or import it) and of no other."""
    ch, pkg = _package_copy(tmp_path, monkeypatch)
    before = family_hashes(ch)
    _change(pkg / "jobs" / f"{module}.py")
    after = family_hashes(ch)
    assert {r for r in before if after[r] != before[r]} == rules


def test_a_change_in_the_one_script_changes_every_familys_hash(tmp_path, monkeypatch):
    """rule_job.py (logging, device, dispatch) is every rule's code."""
    ch, pkg = _package_copy(tmp_path, monkeypatch)
    before = family_hashes(ch)
    _change(pkg / "workflow" / "rule_job.py")
    after = family_hashes(ch)
    assert all(after[r] != before[r] for r in before)


@pytest.mark.parametrize("entry", ["hessdistill.training", "hessdistill.jobs.label"])
def test_module_entries_resolve(entry):
    mods = module_closure([entry])
    assert entry in mods and "hessdistill" in mods
