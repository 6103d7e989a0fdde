"""rule report: eval JSONs + run logs -> paper-style tables (md/csv/tex), figures and summary (hessdistill.reporting)."""

import json
import sys
from pathlib import Path

try:
    import hessdistill  # noqa: F401
except ImportError:  # a conda env from envs/*.yaml (dependencies only): import this checkout's src/
    sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1] / "src"))
from hessdistill.core.joblog import job_logging  # noqa: E402

job_logging(snakemake.log[0])  # noqa: F821 (snakemake object)

from hessdistill.reporting import write_report  # noqa: E402

opts = snakemake.params.report  # noqa: F821
summary = write_report(
    list(snakemake.input.evals) + list(snakemake.input.runs),  # noqa: F821
    Path(snakemake.output.summary_md).parent,  # noqa: F821
    runs_config=snakemake.params.runs,  # noqa: F821
    title=opts["title"],
    float_digits=opts["float_digits"],
    paper=opts.get("paper") or None,
    figures=True,
)
print(json.dumps(summary, indent=1))
