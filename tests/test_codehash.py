"""Code hashes behind the workflow's rerun decisions (hessdistill.core.codehash): real code changes count, comments,
docstrings, formatting and modification times do not; each job family's hash covers exactly its imports."""

import os
import shutil
from pathlib import Path

import pytest

from hessdistill.core.codehash import code_hash, module_closure

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "workflow_scripts"


def test_closures_follow_the_imports_of_each_job():
    label = set(module_closure([SCRIPTS / "label_teacher.py"]))
    # the teacher registry imports its adapters by name: they are part of the labelling code
    assert {"hessdistill.jobs.label", "hessdistill.core.hessian", "hessdistill.teachers.chgnet", "hessdistill.teachers.sevenn",
            "hessdistill.teachers.mace"} <= label
    assert not any(m.startswith(("hessdistill.students", "hessdistill.training", "hessdistill.evaluation")) for m in label)
    assert "hessdistill.reporting" not in label
    train = set(module_closure([SCRIPTS / "train_run.py"]))
    assert {"hessdistill.training.loop", "hessdistill.training.losses", "hessdistill.students.painn",
            "hessdistill.students.gemnet"} <= train
    assert not any(m.startswith("hessdistill.teachers") for m in train)
    report = set(module_closure([SCRIPTS / "report.py"]))
    assert "hessdistill.reporting" in report and not any(m.startswith("hessdistill.teachers") for m in report)
    # a logger name that happens to equal a module name is not an import
    assert "hessdistill.jobs.train" not in train


def test_only_changes_to_what_the_code_does_change_the_hash(tmp_path):
    script = tmp_path / "job.py"
    script.write_text('"""A job."""\nfrom hessdistill.core.errors import HessdistillError\n\nx = 1  # one\n')
    h = code_hash([script])
    script.write_text('"""A job, documented differently."""\nfrom hessdistill.core.errors import HessdistillError\n'
                      '# a new comment\nx = (\n    1\n)\n')
    assert code_hash([script]) == h
    os.utime(script, (0, 0))
    assert code_hash([script]) == h
    script.write_text('"""A job."""\nfrom hessdistill.core.errors import HessdistillError\n\nx = 2\n')
    assert code_hash([script]) != h
    assert len(h) == 16 and int(h, 16) >= 0


def test_a_library_change_reaches_the_hash_of_every_job_that_imports_it(tmp_path, monkeypatch):
    """A copy of the package with one function changed: the labelling job's hash changes, the report's does not."""
    import hessdistill.core.codehash as ch

    pkg = tmp_path / "hessdistill"
    shutil.copytree(Path(ch.__file__).parents[1], pkg, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(ch, "_ROOT", pkg)
    before = {s: ch.code_hash([SCRIPTS / s]) for s in ("label_teacher.py", "report.py")}
    hessian = pkg / "core" / "hessian.py"
    hessian.write_text(hessian.read_text() + "\n\ndef _extra():\n    return 1\n")
    after = {s: ch.code_hash([SCRIPTS / s]) for s in ("label_teacher.py", "report.py")}
    assert after["label_teacher.py"] != before["label_teacher.py"]
    assert after["report.py"] == before["report.py"]


@pytest.mark.parametrize("entry", ["hessdistill.training", "hessdistill.jobs.label"])
def test_module_entries_resolve(entry):
    mods = module_closure([entry])
    assert entry in mods and "hessdistill" in mods
