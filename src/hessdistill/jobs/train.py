"""Train one student run.

    python -m hessdistill.jobs.train RUN.yaml --structures S.h5 [--labels L.h5] [--hessians H.h5] --out DIR

``RUN.yaml`` holds the options of :class:`hessdistill.training.TrainConfig` (student, method, weights,
rows_per_structure, batch_size, lr, max_epochs, max_time_s, seed, device, dtype, ...).  Rerunning the same
command after a kill resumes from ``DIR/last.pt``.

From Python: :func:`run` (a run's options, inputs and output directory), :func:`main` (the command line) and
:func:`snakemake_job` (the workflow's ``train_run`` rule).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from ..core.errors import HessdistillError


def run(
    config, structures, out_dir, *, labels=None, hessians=None, progress: bool = True, on_mismatch: str = "error"
) -> dict:
    """Train the run with options ``config`` (a TrainConfig or its dict) on the structure store ``structures``
    (with the teacher's ``labels`` and ``hessians`` files where the method needs them) into ``out_dir``; resumes
    from ``out_dir/last.pt``.  Returns the summary.  ``on_mismatch``: as :func:`hessdistill.training.train`."""
    from ..training import train

    return train(
        config, structures, out_dir, labels=labels, hessians=hessians, progress=progress, on_mismatch=on_mismatch
    )


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m hessdistill.jobs.train", description=__doc__.split("\n\n")[0])
    p.add_argument("config", help="run configuration (YAML or JSON)")
    p.add_argument("--structures", required=True)
    p.add_argument("--labels")
    p.add_argument("--hessians")
    p.add_argument("--out", required=True)
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    from .prepare import load_spec

    try:
        cfg = load_spec(args.config)
        summary = run(
            cfg, args.structures, args.out, labels=args.labels, hessians=args.hessians, progress=not args.no_progress
        )
    except HessdistillError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({k: summary[k] for k in ("epochs", "best_val_force_mae_meV_A", "n_params", "train_time_s")}))
    return 0


def snakemake_job(smk, device=None) -> dict:
    """The workflow's ``train_run`` job for the ``snakemake`` object ``smk``: the run's options
    (``smk.params.run``) with the runtime settings, which are neither params nor part of the resume key: the rule's
    thread count and ``device`` (the caller's choice, e.g. :func:`hessdistill.workflow.params.job_device`; None:
    the run's own ``device`` option).  Trains into the directory of ``smk.output.model``; a checkpoint of a run
    with other settings (params changed) is discarded, one with the same settings resumed.  Prints the summary
    as JSON (to the job's log) and returns it."""
    cfg = dict(smk.params.run)
    cfg["threads"] = smk.threads
    if device is not None:
        cfg["device"] = device
    out = Path(smk.output.model).parent
    summary = run(
        cfg,
        smk.input.structures,
        out,
        labels=smk.input.labels,
        hessians=smk.input.hessians,
        progress=False,
        on_mismatch="restart",
    )
    print(json.dumps(summary, indent=1, sort_keys=True, default=str))
    return summary


if __name__ == "__main__":
    sys.exit(main())
