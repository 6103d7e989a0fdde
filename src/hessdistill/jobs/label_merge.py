"""Merge of a sharded teacher labelling: the shards' cache -> labels.h5 + hessians.h5.

    hessdistill-label-teacher-merge STRUCTURES.h5 SHARD.json [SHARD.json ...] --labels-out labels.h5 \\
        [--hessians-out hessians.h5]

The files :func:`hessdistill.jobs.label.run_labelling` writes for the same settings, plus the attribute
``label_shards`` (:func:`hessdistill.jobs.label_shards.merge_label_shards`).  CPU only, no teacher.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from ..core.errors import HessdistillError
from .label_shards import merge_label_shards


def run(structures, shard_summaries, labels_out, hessians_out=None) -> dict:
    """Merge the shards of ``shard_summaries`` (their JSON files, or dicts) into ``labels_out`` (and
    ``hessians_out``): :func:`hessdistill.jobs.label_shards.merge_label_shards`.  Returns its summary."""
    return merge_label_shards(structures, shard_summaries, labels_out, hessians_out=hessians_out)


def snakemake_job(smk, device=None) -> dict:
    """Rule label_teacher_merge: ``input.shards`` (every shard's summary) of ``input.structures`` ->
    ``output.labels`` and ``output.hessians``.  ``device`` is unused (no teacher)."""
    return run(smk.input.structures, list(smk.input.shards), smk.output.labels, hessians_out=smk.output.hessians)


def main(argv=None) -> int:
    """``hessdistill-label-teacher-merge``: the merge of a sharded labelling (the rule label_teacher_merge)."""
    p = argparse.ArgumentParser(prog="hessdistill-label-teacher-merge", description=__doc__.split("\n\n")[0])
    p.add_argument("structures", help="the structure store the shards labelled")
    p.add_argument(
        "shards", nargs="+", help="every shard's JSON summary (hessdistill-label-teacher-shard --summary-out)"
    )
    p.add_argument("--labels-out", required=True)
    p.add_argument("--hessians-out")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        summary = run(args.structures, args.shards, args.labels_out, hessians_out=args.hessians_out)
    except HessdistillError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=1, sort_keys=True, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
