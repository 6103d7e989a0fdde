"""Every `snakemake` command in README.md's bash code blocks runs as written (as a dry run).

Each command line of a fenced ``bash`` block that starts with ``snakemake`` (backslash-continued lines joined,
trailing ``# comments`` dropped) is run from the repository root with this environment's snakemake, plus
``-n --directory <tmp> --snakefile <repo>/Snakefile``, so that it plans the whole workflow without running a
job or touching the checkout's results.  Slurm's commands are replaced by stubs that log their calls and fail,
so a dry run through ``--profile slurm`` is also checked not to submit or poll anything.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = Path(sys.executable).parent / "snakemake"
SLURM_COMMANDS = ("sbatch", "squeue", "sacct", "scontrol", "sinfo", "srun", "scancel")
#: options whose commands need the outputs of a finished run, which a dry run in an empty directory lacks
NEEDS_FINISHED_RUN = ("--report",)  # the HTML report is built from the results and logs of a completed run


def readme_commands(text: str) -> list[str]:
    """The ``snakemake`` command lines of the fenced bash blocks of ``text``, continuations joined, comments cut."""
    commands = []
    for block in re.findall(r"^```bash[ \t]*\n(.*?)^```", text, flags=re.M | re.S):
        line = ""
        for raw in block.splitlines():
            line += raw
            if raw.rstrip().endswith("\\"):
                line = line.rstrip()[:-1] + " "
                continue
            argv = shlex.split(line, comments=True)
            if argv and argv[0] == "snakemake":
                commands.append(shlex.join(argv))
            line = ""
    return commands


COMMANDS = readme_commands((REPO / "README.md").read_text(encoding="utf-8"))


def test_readme_commands_are_found():
    assert COMMANDS, "no snakemake command found in README.md's bash blocks: check readme_commands()"
    assert any(argv == "snakemake -c all" for argv in COMMANDS), COMMANDS


def _slurm_stubs(bin_dir: Path, log: Path) -> None:
    bin_dir.mkdir()
    for name in SLURM_COMMANDS:
        stub = bin_dir / name
        stub.write_text(f'#!/bin/sh\necho "{name} $*" >> {shlex.quote(str(log))}\nexit 1\n')
        stub.chmod(0o755)


@pytest.mark.parametrize("command", COMMANDS)
def test_readme_command_dry_runs(command, tmp_path):
    argv = shlex.split(command)
    if any(opt in argv for opt in NEEDS_FINISHED_RUN):
        pytest.skip("needs the outputs of a finished run (--report)")
    log = tmp_path / "slurm-calls.log"
    _slurm_stubs(tmp_path / "bin", log)
    workdir = tmp_path / "work"
    workdir.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "SNAKEMAKE_PROFILE"}
    env["PATH"] = os.pathsep.join([str(tmp_path / "bin"), str(SNAKEMAKE.parent), env.get("PATH", "")])
    proc = subprocess.run(
        [str(SNAKEMAKE), *argv[1:], "-n", "--directory", str(workdir), "--snakefile", str(REPO / "Snakefile")],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"`{command}` failed (exit {proc.returncode}):\n{output[-4000:]}"
    assert "This was a dry-run" in output, output[-4000:]
    # snakemake-executor-plugin-slurm reads `scontrol show config` (MinJobAge) while building its settings'
    # defaults, in every snakemake invocation; a dry run must not submit, poll or cancel jobs.
    calls = log.read_text().splitlines() if log.exists() else []
    assert all(call == "scontrol show config" for call in calls), calls
