"""Train one student run.

    python -m hessdistill.jobs.train RUN.yaml --structures S.h5 [--labels L.h5] [--hessians H.h5] --out DIR \
        [--subset NAME] [--extra-train NAME S2.h5 [L2.h5 [H2.h5]]] ...

``RUN.yaml`` holds the options of :class:`hessdistill.training.TrainConfig` (student, method, weights,
rows_per_structure, batch_size, lr, max_epochs, max_time_s, seed, device, dtype, extra_train_subsets, ...).
Each subset that ``extra_train_subsets`` names needs one ``--extra-train`` with its structures and the same
teacher's labels and Hessians; its train split is added to the training set.  Rerunning the same command after a
kill resumes from ``DIR/last.pt``.

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
    config,
    structures,
    out_dir,
    *,
    labels=None,
    hessians=None,
    progress: bool = True,
    on_mismatch: str = "error",
    extra_train=None,
    subset=None,
) -> dict:
    """Train the run with options ``config`` (a TrainConfig or its dict) on the structure store ``structures``
    (with the teacher's ``labels`` and ``hessians`` files where the method needs them) into ``out_dir``; resumes
    from ``out_dir/last.pt``.  Returns the summary.  ``on_mismatch``, ``extra_train`` ({subset name: {"structures",
    "labels", "hessians"}} of the run's ``extra_train_subsets``) and ``subset`` (the name of ``structures``' subset):
    as :func:`hessdistill.training.train`."""
    from ..training import train

    return train(
        config,
        structures,
        out_dir,
        labels=labels,
        hessians=hessians,
        progress=progress,
        on_mismatch=on_mismatch,
        extra_train=extra_train,
        subset=subset,
    )


def extra_train_files(names, structures, labels, hessians) -> dict:
    """{name: {"structures", "labels", "hessians"}} from the names and the aligned lists of files (the workflow's
    ``extra_*`` inputs, in the run's ``extra_train_subsets`` order)."""
    names, structures, labels, hessians = list(names), list(structures), list(labels), list(hessians)
    if not len(names) == len(structures) == len(labels) == len(hessians):
        raise HessdistillError(
            f"extra training subsets {names}: got {len(structures)} structure, {len(labels)} label and "
            f"{len(hessians)} Hessian file(s); expected one of each per subset"
        )
    return {
        n: {"structures": s, "labels": lab, "hessians": h} for n, s, lab, h in zip(names, structures, labels, hessians)
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m hessdistill.jobs.train", description=__doc__.split("\n\n")[0])
    p.add_argument("config", help="run configuration (YAML or JSON)")
    p.add_argument("--structures", required=True)
    p.add_argument("--labels")
    p.add_argument("--hessians")
    p.add_argument("--out", required=True)
    p.add_argument("--subset", help="the name of the subset of --structures (for messages and the summary)")
    p.add_argument(
        "--extra-train",
        nargs="+",
        action="append",
        default=[],
        metavar="NAME FILE",
        help="a subset of the run's extra_train_subsets: NAME STRUCTURES [LABELS [HESSIANS]] (repeat per subset)",
    )
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    from .prepare import load_spec

    try:
        extra = {}
        for item in args.extra_train:
            if not 2 <= len(item) <= 4 or item[0] in extra:
                raise HessdistillError(
                    f"--extra-train {' '.join(item)}: expected NAME STRUCTURES [LABELS [HESSIANS]], once per subset"
                )
            extra[item[0]] = dict(zip(("structures", "labels", "hessians"), item[1:]))
        cfg = load_spec(args.config)
        summary = run(
            cfg,
            args.structures,
            args.out,
            labels=args.labels,
            hessians=args.hessians,
            progress=not args.no_progress,
            extra_train=extra,
            subset=args.subset,
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
    the run's own ``device`` option).  The run's ``extra_train_subsets`` come as the inputs ``extra_structures``,
    ``extra_labels`` and ``extra_hessians`` (one file each per subset, in that order).  Trains into the directory of ``smk.output.model``; a checkpoint of a run
    with other settings (params changed) is discarded, one with the same settings resumed.  Prints the summary
    as JSON (to the job's log) and returns it."""
    cfg = dict(smk.params.run)
    cfg["threads"] = smk.threads
    if device is not None:
        cfg["device"] = device
    out = Path(smk.output.model).parent
    names = cfg.get("extra_train_subsets") or []
    extra = extra_train_files(
        names,
        getattr(smk.input, "extra_structures", []),
        getattr(smk.input, "extra_labels", []),
        getattr(smk.input, "extra_hessians", []),
    )
    summary = run(
        cfg,
        smk.input.structures,
        out,
        labels=smk.input.labels,
        hessians=smk.input.hessians,
        progress=False,
        on_mismatch="restart",
        extra_train=extra,
        subset=getattr(getattr(smk, "wildcards", None), "subset", None),
    )
    print(json.dumps(summary, indent=1, sort_keys=True, default=str))
    return summary


if __name__ == "__main__":
    sys.exit(main())
