"""Every console script of pyproject.toml ([project.scripts]) resolves to a function that answers --help.

Data-driven from pyproject.toml: an entry point whose module or function is missing fails here (nothing is
skipped), and a new entry point is covered without a change to this file."""

import importlib
from pathlib import Path

import pytest

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]


def test_every_rule_has_a_console_script():
    from hessdistill.workflow.rule_job import RULE_JOBS

    modules = {f"hessdistill.jobs.{job.module}" for job in RULE_JOBS.values()}
    assert modules <= {target.split(":")[0] for target in SCRIPTS.values()}
    assert {"hessdistill", "hessdistill-label"} <= set(SCRIPTS)


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_console_script_help(name, capsys):
    module, _, function = SCRIPTS[name].partition(":")
    main = getattr(importlib.import_module(module), function)
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "usage:" in out and "--help" in out
