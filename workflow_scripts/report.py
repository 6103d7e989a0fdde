"""rule report: every eval/test.json (+ speed.json) -> results/report/summary.csv and summary.md.

A stop-gap until hessdistill.reporting exists (then this script becomes a single library call).
"""

import csv
import json
import logging
import math
import sys
from pathlib import Path

COLUMNS = ["subset", "teacher", "run", "method", "student_params", "energy_mae_meV_atom", "force_mae_meV_A",
           "hessian_mae_meV_A2", "speedup_latency"]


def _identify(path: Path):
    """(subset, teacher, run) from .../{subset}/runs/{teacher}/{run}/eval/x.json or .../{subset}/teachers/{teacher}/eval/x.json."""
    parts = path.parts
    if parts[-5] == "runs":
        return parts[-6], parts[-4], parts[-3]
    return parts[-5], parts[-3], "teacher"


def collect(paths, runs_config) -> list[dict]:
    rows = {}
    for p in map(Path, paths):
        key = _identify(p)
        data = json.loads(p.read_text())
        row = rows.setdefault(key, {"subset": key[0], "teacher": key[1], "run": key[2],
                                    "method": runs_config.get(key[2], {}).get("method", "teacher") if key[2] != "teacher" else "teacher"})
        if p.name == "test.json":
            row["student_params"] = data.get("n_params")
            row["energy_mae_meV_atom"] = data.get("teacher_energy_mae_meV_atom")
            row["force_mae_meV_A"] = data.get("teacher_force_mae_meV_A")
            row["hessian_mae_meV_A2"] = data.get("hessian_mae_meV_A2")
        elif p.name == "speed.json":
            row["speedup_latency"] = data.get("speedup_latency")
    return [rows[k] for k in sorted(rows, key=lambda k: (k[0], k[1], k[2] != "teacher", k[2]))]


def _fmt(v, digits):
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def write(rows, csv_path, md_path, options):
    with open(csv_path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=COLUMNS)
        w.writeheader()
        for r in rows:
            w.writerow({c: r.get(c) for c in COLUMNS})
    digits = int(options["float_digits"])
    head = ["subset", "teacher", "run", "method", "params", "E MAE vs teacher (meV/atom)", "F MAE vs teacher (meV/Å)",
            "H MAE (meV/Å²)", "speed-up"]
    lines = [f"# {options['title']}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        lines.append("| " + " | ".join(_fmt(r.get(c), digits) for c in COLUMNS) + " |")
    Path(md_path).write_text("\n".join(lines) + "\n")


if "snakemake" in globals():
    sys.stdout = sys.stderr = open(snakemake.log[0], "w", buffering=1)  # noqa: F821 (snakemake object)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    rows = collect(snakemake.input, snakemake.config["runs"])  # noqa: F821
    write(rows, snakemake.output.csv, snakemake.output.md, snakemake.params.report)  # noqa: F821
    print(f"{len(rows)} rows")
