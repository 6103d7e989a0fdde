"""rule label_teacher_merge: the shards' labels (teachers.<name>.shards > 1) -> labels.h5 + hessians.h5.

The same files as rule label_teacher writes for the same settings (hessdistill.jobs.label_shards), plus the
attribute label_shards.  CPU only, no teacher.
"""

import json
import sys

try:
    import hessdistill  # noqa: F401
except ImportError:  # a conda env from envs/*.yaml (dependencies only): import this checkout's src/
    sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1] / "src"))
from hessdistill.core.joblog import job_logging  # noqa: E402

job_logging(snakemake.log[0])  # noqa: F821 (snakemake object)

from hessdistill.jobs.label_shards import merge_label_shards  # noqa: E402

summary = merge_label_shards(
    snakemake.input.structures,  # noqa: F821
    list(snakemake.input.shards),  # noqa: F821
    snakemake.output.labels,  # noqa: F821
    hessians_out=snakemake.output.hessians,  # noqa: F821
)
print(json.dumps(summary, indent=1, sort_keys=True, default=str))
