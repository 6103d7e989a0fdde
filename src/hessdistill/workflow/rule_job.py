"""Run the job of a workflow rule: what ``workflow_scripts/run_job.py``, the one script of every rule, calls.

:func:`run_rule_job` takes Snakemake's ``snakemake`` object of the running job and

1. sends the job's stdout, stderr and logging to its ``log:`` file (:func:`hessdistill.core.joblog.job_logging`);
2. computes the job's device (:func:`rule_device`: :func:`hessdistill.workflow.params.job_device` for the rule's
   job kind; not a param, so moving a job to a GPU reruns nothing);
3. imports the rule's job module (:data:`RULE_JOBS`, under the :mod:`hessdistill.jobs` package), sets torch's
   intra-op threads to the job's ``threads`` where the rule asks for it, and calls the module's
   ``snakemake_job(snakemake, device=device)``;
4. prints the summary that function returns as JSON (into the log).

The contract of a job module named in :data:`RULE_JOBS`: a function ``snakemake_job(smk, device=None) -> dict``
that reads the rule's ``input``, ``output``, ``params``, ``wildcards``, ``threads`` and ``config`` from ``smk``,
writes the rule's outputs and returns a JSON-able summary (``device``: the device computed here, None for rules
that have none).

Code tracking (:mod:`hessdistill.core.codehash`, rules/common.smk): each rule family's code hash is that of the
script and of :func:`job_module` of its rule, so this module names no job module in a string constant (the
names are joined at run time); otherwise every family would depend on every job.  Standard library only at
import: torch and the job modules are imported when a job runs.
"""

from __future__ import annotations

import importlib
import json
from typing import NamedTuple

from ..core.joblog import job_logging
from .params import job_device


class RuleJob(NamedTuple):
    """What a rule runs: ``module`` (a module of the jobs package, without the package), the job ``kind`` of
    :func:`~hessdistill.workflow.params.job_device` (None: no device; :data:`EVALUATION`: the evaluation
    wildcard) and whether torch's intra-op threads are set to the job's threads before the call."""

    module: str
    kind: str | None = None
    torch_threads: bool = False


#: the job kind of evaluation rules: the ``evaluation`` wildcard (test, md, speed, ...)
EVALUATION = "<evaluation>"

#: rule name -> its job (every rule of rules/*.smk)
RULE_JOBS = {
    "download_source": RuleJob("download"),
    "prepare_subset": RuleJob("prepare", torch_threads=True),
    "label_teacher": RuleJob("label", "label", torch_threads=True),
    "label_teacher_shard": RuleJob("label_shards", "label", torch_threads=True),
    "label_teacher_merge": RuleJob("label_merge"),
    "train_run": RuleJob("train", "train"),  # the training sets its threads itself (its config's threads)
    "teacher_minima": RuleJob("minima", "vibrations", torch_threads=True),
    "evaluate_run": RuleJob("evaluate", EVALUATION, torch_threads=True),
    "evaluate_run_md_speed": RuleJob("evaluate", EVALUATION, torch_threads=True),
    "evaluate_run_disagreement": RuleJob("evaluate", "disagreement", torch_threads=True),
    "evaluate_teacher": RuleJob("evaluate", EVALUATION, torch_threads=True),
    "evaluate_teacher_md_speed": RuleJob("evaluate", EVALUATION, torch_threads=True),
    "report": RuleJob("report"),
}

#: the jobs package, computed (not a string constant: see the module docstring)
JOBS_PACKAGE = __name__.rsplit(".", 2)[0] + ".jobs"


def job_module(rule: str) -> str:
    """The full name of the job module of ``rule`` (``<package>.jobs.<module>``)."""
    if rule not in RULE_JOBS:
        raise KeyError(
            f"rule {rule!r} has no job in hessdistill.workflow.rule_job.RULE_JOBS (known: {sorted(RULE_JOBS)})"
        )
    return f"{JOBS_PACKAGE}.{RULE_JOBS[rule].module}"


def rule_device(smk) -> str | None:
    """The device of the running job: None for rules without one; else job_device of the rule's kind on the
    job's wildcards (for evaluations the kind is the ``evaluation`` wildcard, and a speed evaluation's device is
    its param ``evaluation.device``: its timings are the device's)."""
    kind = RULE_JOBS[smk.rule].kind
    if kind is None:
        return None
    w = dict(smk.wildcards.items())
    if kind == EVALUATION:
        kind = w["evaluation"]
        own = (getattr(smk.params, "evaluation", None) or {}).get("device")
        if own:
            return own
    return job_device(smk.config, kind, subset=w.get("subset"), teacher=w.get("teacher"), run=w.get("run"))


def run_rule_job(smk) -> dict:
    """Run the job of the rule ``smk.rule`` (see the module docstring) and return its summary."""
    job_logging(smk.log[0])
    job = RULE_JOBS[smk.rule]
    device = rule_device(smk)
    module = importlib.import_module(job_module(smk.rule))
    if job.torch_threads:
        import torch

        torch.set_num_threads(smk.threads)
    summary = module.snakemake_job(smk, device=device)
    print(json.dumps(summary, indent=1, sort_keys=True, default=str))
    return summary
