"""rule prepare_subset: one subset spec -> results/{subset}/data/structures.h5 (hessdistill.jobs.prepare)."""

import json
import sys

try:
    import hessdistill  # noqa: F401
except ImportError:  # a conda env from envs/*.yaml (dependencies only): import this checkout's src/
    sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1] / "src"))
from hessdistill.core.joblog import job_logging  # noqa: E402

job_logging(snakemake.log[0])  # noqa: F821 (snakemake object)

import torch  # noqa: E402

from hessdistill.jobs.prepare import prepare_subset  # noqa: E402

torch.set_num_threads(snakemake.threads)  # noqa: F821
report = prepare_subset(snakemake.params.spec, snakemake.output[0], base_dir=snakemake.config.get("data_dir", "."))  # noqa: F821
print(json.dumps(report, indent=1, sort_keys=True, default=str))
