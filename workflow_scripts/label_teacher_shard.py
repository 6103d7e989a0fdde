"""rule label_teacher_shard: structures.h5 -> one shard of the teacher labels (teachers.<name>.shards > 1).

Labels this shard's structures into the per-structure cache results/{subset}/teachers/{teacher}/label_cache/
(hessdistill.jobs.label_shards), taking those already there, and writes a small JSON summary for the merge job.
"""

import json
import sys
from pathlib import Path

try:
    import hessdistill  # noqa: F401
except ImportError:  # a conda env from envs/*.yaml (dependencies only): import this checkout's src/
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from hessdistill.core.joblog import job_logging  # noqa: E402

job_logging(snakemake.log[0])  # noqa: F821 (snakemake object)

import torch  # noqa: E402

from hessdistill.jobs.label_shards import CACHE_DIRNAME, run_label_shard  # noqa: E402
from hessdistill.teachers import teacher_from_spec  # noqa: E402
from hessdistill.workflow.params import job_device  # noqa: E402

t = snakemake.params.teacher  # noqa: F821
w = snakemake.wildcards  # noqa: F821
torch.set_num_threads(snakemake.threads)  # noqa: F821
# not a param (a device change reruns nothing); "auto" resolves to cuda where the job sees a GPU, else cpu
device = job_device(snakemake.config, "label", subset=w.subset, teacher=w.teacher)  # noqa: F821
teacher = teacher_from_spec(t, device=device, dtype=t["dtype"])
# the cache lives beside labels.h5 (the shard summary is in <teacher dir>/label_shards/); not an output, so that
# Snakemake never deletes it: a rerun (killed job, another shard count) takes the structures already there
cache_root = Path(snakemake.output.shard).parent.parent / CACHE_DIRNAME  # noqa: F821
summary = run_label_shard(
    snakemake.input.structures,  # noqa: F821
    teacher,
    cache_root,
    int(w.shard),
    int(snakemake.params.shards),  # noqa: F821
    summary_out=snakemake.output.shard,  # noqa: F821
    hessians=True,
    hessian_splits=t["hessian_splits"],
    rows_per_structure=t["rows"],
    row_seed=t["row_seed"],
    storage_dtype=t["storage_dtype"],
    node_features=t["node_features"],
    key=f"teachers.{w.teacher}.shards",
)
print(json.dumps({k: v for k, v in summary.items() if k != "assigned"}, indent=1, sort_keys=True, default=str))
