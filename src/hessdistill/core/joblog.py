"""Logging of one workflow job: its stdout, stderr and ``logging`` records go to the job's Snakemake ``log:``.

A module of its own (not part of :mod:`hessdistill.workflow.params`) because every job script imports it: it is part
of the code hash of every rule (:mod:`hessdistill.core.codehash`), so it is kept small and stable.
"""

from __future__ import annotations

import logging
import sys


def job_logging(log_path) -> None:
    """Send a workflow job's stdout, stderr and logging to its Snakemake ``log:`` file (line-buffered)."""
    sys.stdout = sys.stderr = open(log_path, "w", buffering=1)
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(levelname)s %(message)s", force=True
    )
