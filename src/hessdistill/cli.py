"""``hessdistill`` command line: tools around trained students.

hessdistill export results/<subset>/runs/<teacher>/<run>/model.pt -o student.pt2   # compiled (fastest)
hessdistill export model.pt -o student.pt --format torchscript                     # portable, no compiler
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .core.errors import HessdistillError


def _export(args) -> int:
    import torch

    from .students.checkpoint import load_student
    from .students.export import export_student

    if args.threads:
        torch.set_num_threads(args.threads)
    model, _ = load_student(args.model, device=args.device)
    out = Path(args.output) if args.output else Path(args.model).with_name("student.pt2")
    meta = export_student(model, out, fmt=args.format, source=args.model, device=args.device)
    print(
        f"wrote {out} ({meta['export_format']}, {meta['arch']}, {meta['n_params']:,} parameters, cutoff "
        f"{meta['cutoff']} Å); checked against the eager model.\n"
        f"use it with: from hessdistill.deployed import FastCalculator; atoms.calc = FastCalculator({str(out)!r})"
    )
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="hessdistill", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("export", help="write a trained student as one self-contained, compiled file")
    p.add_argument("model", help="the student checkpoint (model.pt or best.pt of a run)")
    p.add_argument(
        "-o",
        "--output",
        help="output file: .pt2 = AOTInductor (default student.pt2 beside the model), other suffixes = TorchScript",
    )
    p.add_argument(
        "--format", default="auto", choices=["auto", "aoti", "torchscript"], help="auto: from the suffix of --output"
    )
    p.add_argument("--device", default="cpu", help="device the exported program runs on (cpu, cuda, cuda:1)")
    p.add_argument("--threads", type=int, default=0, help="torch threads while exporting (0: torch's default)")
    p.set_defaults(func=_export)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except HessdistillError as exc:
        print(f"hessdistill {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
