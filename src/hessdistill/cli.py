"""``hessdistill`` command line: distil a student from your own structures, and tools around trained students.

hessdistill distill my_structures.extxyz --teacher sevenn [--student painn] [--budget 30m] [--profile slurm]
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


def _distill(args) -> int:
    from .workflow.distill import run_distill

    return run_distill(
        args.seeds,
        teacher=args.teacher,
        student=args.student,
        budget=args.budget,
        workdir=args.workdir,
        cores=args.cores,
        profile=args.profile,
        dry_run=args.dry_run,
        augment=args.augment,
        export_format=args.export_format,
        call_seconds=args.call_seconds,
        snakemake_args=args.snakemake_args,
    )


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
    d = sub.add_parser(
        "distill",
        help="sample around your structures with a teacher, distil a student, evaluate it and print a verdict",
        description="Writes <workdir>/config.yaml for the seeds (a teacher-sampled subset, an undistilled and a "
        "Hessian-distilled student, the evaluations), runs the workflow on it, exports the distilled student and "
        "prints a verdict. A second call with the same arguments reruns nothing.",
    )
    d.add_argument("seeds", help="structure file with one or more seed structures (extxyz, cif, POSCAR, ...)")
    d.add_argument("--teacher", default="sevenn", help="foundation model (chgnet, sevenn, mace-off:small, ...)")
    d.add_argument("--student", default="painn", help="student architecture: painn, schnet or gemnet")
    d.add_argument("--budget", default="30m", help="wall time for the whole run on this machine (30m, 2h, ...)")
    d.add_argument("--workdir", help="folder for config.yaml, results/ and the exported student (distill-<seeds>)")
    d.add_argument("--cores", default="all", help="snakemake -c (local runs)")
    d.add_argument("--profile", help="a Snakemake profile, e.g. slurm (the repository's profiles/slurm)")
    d.add_argument("--dry-run", action="store_true", help="write the config and show what would run")
    d.add_argument(
        "--augment",
        action="store_true",
        help="after a first call: train a third student on the frames the students disagreed on as well",
    )
    d.add_argument("--export-format", default="aoti", choices=["aoti", "torchscript"])
    d.add_argument(
        "--call-seconds",
        type=float,
        help="teacher seconds per energy+forces call, instead of measuring it on the seeds (plans the budget)",
    )
    d.add_argument("snakemake_args", nargs="*", help="after --: passed to snakemake")
    d.set_defaults(func=_distill)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except HessdistillError as exc:
        print(f"hessdistill {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
