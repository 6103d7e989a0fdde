"""Report job: evaluation JSONs + run logs -> paper-style tables (md/csv/tex), figures and summary.

    hessdistill-report results/ --out results/report [--config config.yaml] [--title T] [--float-digits 2] \\
        [--no-figures]

Inputs are files or folders: a folder is searched for the files of the results layout
(:mod:`hessdistill.core.paths`): every ``eval/*.json`` and every run's ``log.csv`` and ``summary.json``.  With
``--config`` (the workflow's config file) the runs' methods and the config's ``report`` section (title, digits,
paper numbers) are used as the workflow's rule report uses them.  The tables and figures are those of
:func:`hessdistill.reporting.write_report`.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from ..core.errors import HessdistillError
from ..reporting import write_report


def report_files(paths) -> list[str]:
    """The report's input files: each file as given, and for each folder its evaluation JSONs (``eval/*.json``)
    and runs' ``log.csv`` and ``summary.json`` (sorted)."""
    out = []
    for p in map(Path, paths):
        if not p.is_dir():
            out.append(str(p))
            continue
        found = [*p.rglob("eval/*.json"), *p.rglob("runs/*/*/log.csv"), *p.rglob("runs/*/*/summary.json")]
        out += sorted(str(f) for f in found)
    return out


def run(
    paths, out_dir, *, runs=None, title="hessdistill report", float_digits: int = 2, paper=None, figures: bool = True
) -> dict:
    """Write the report of ``paths`` (files, or results folders: :func:`report_files`) into ``out_dir``.

    ``runs``: {run name: {"method": ...}} (the methods of the runs, for the tables' row labels); the other
    options as :func:`hessdistill.reporting.write_report`.  Returns its summary."""
    return write_report(
        report_files(paths),
        out_dir,
        runs_config=runs,
        title=title,
        float_digits=float_digits,
        paper=paper or None,
        figures=figures,
    )


def snakemake_job(smk, device=None) -> dict:
    """Rule report: ``input.evals`` and ``input.runs`` -> the report folder of ``output.summary_md``, with the
    config's report section (``params.report``) and the runs' methods (``params.runs``).  ``device`` is unused."""
    opts = smk.params.report
    return write_report(
        list(smk.input.evals) + list(smk.input.runs),
        Path(smk.output.summary_md).parent,
        runs_config=smk.params.runs,
        title=opts["title"],
        float_digits=opts["float_digits"],
        paper=opts.get("paper") or None,
        figures=True,
    )


def main(argv=None) -> int:
    """``hessdistill-report``: the workflow's report from results on disk (the rule report)."""
    p = argparse.ArgumentParser(
        prog="hessdistill-report",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    p.add_argument("paths", nargs="+", help="evaluation JSONs, run log.csv/summary.json files, or results folders")
    p.add_argument("--out", required=True, help="the report folder")
    p.add_argument("--config", help="the workflow config (YAML): the runs' methods and the report section")
    p.add_argument("--title", help="report title (default: the config's, else 'hessdistill report')")
    p.add_argument("--float-digits", type=int, help="digits of the tables (default: the config's, else 2)")
    p.add_argument("--no-figures", action="store_true", help="tables and summary only (no matplotlib needed)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    runs, opts = {}, {}
    if args.config:
        import yaml

        with open(args.config) as f:
            config = yaml.safe_load(f) or {}
        runs = {r: {"method": v.get("method", "hessian")} for r, v in (config.get("runs") or {}).items()}
        opts = config.get("report") or {}
    try:
        summary = run(
            args.paths,
            args.out,
            runs=runs,
            title=args.title or opts.get("title", "hessdistill report"),
            float_digits=args.float_digits if args.float_digits is not None else opts.get("float_digits", 2),
            paper=opts.get("paper"),
            figures=not args.no_figures,
        )
    except (HessdistillError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
