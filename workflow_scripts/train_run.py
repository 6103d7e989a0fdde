"""rule train_run: structures + teacher labels/Hessians -> model.pt, log.csv, summary.json (hessdistill.training)."""

import json
import sys
from pathlib import Path

try:
    import hessdistill  # noqa: F401
except ImportError:  # a conda env from envs/*.yaml (dependencies only): import this checkout's src/
    sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1] / "src"))
from hessdistill.core.joblog import job_logging  # noqa: E402

job_logging(snakemake.log[0])  # noqa: F821 (snakemake object)

from hessdistill.training import train  # noqa: E402
from hessdistill.workflow.params import job_device  # noqa: E402

w = snakemake.wildcards  # noqa: F821
cfg = dict(snakemake.params.run)  # noqa: F821
# runtime settings: not in params, not in the resume key
cfg["threads"] = snakemake.threads  # noqa: F821
cfg["device"] = job_device(snakemake.config, "train", subset=w.subset, teacher=w.teacher, run=w.run)  # noqa: F821
out = Path(snakemake.output.model).parent  # noqa: F821
# a checkpoint of a run with other settings (params changed) is discarded; same settings: resume
summary = train(cfg, snakemake.input.structures, out, labels=snakemake.input.labels,  # noqa: F821
                hessians=snakemake.input.hessians, progress=False, on_mismatch="restart")  # noqa: F821
print(json.dumps(summary, indent=1, sort_keys=True, default=str))
