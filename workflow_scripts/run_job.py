"""The script of every workflow rule: the rule's job, by rule name (hessdistill.workflow.rule_job).

A conda environment made from envs/*.yaml holds the dependencies only: then this checkout's src/ is imported.
Snakemake runs a copy of this file elsewhere, so the checkout is found from ``snakemake.scriptdir`` (the folder of
the original script), not from ``__file__``.
"""

import os
import sys

try:
    import hessdistill  # noqa: F401
except ImportError:  # a conda env from envs/*.yaml (dependencies only): import this checkout's src/
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(snakemake.scriptdir)), "src"))  # noqa: F821
from hessdistill.workflow.rule_job import run_rule_job  # noqa: E402

run_rule_job(snakemake)  # noqa: F821 (the snakemake object)
