"""rule label_teacher: structures.h5 -> teacher labels.h5 (every split) + hessians.h5 (hessian_splits)."""

import json
import sys

try:
    import hessdistill  # noqa: F401
except ImportError:  # a conda env from envs/*.yaml (dependencies only): import this checkout's src/
    sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1] / "src"))
from hessdistill.core.joblog import job_logging  # noqa: E402

job_logging(snakemake.log[0])  # noqa: F821 (snakemake object)

import torch  # noqa: E402

from hessdistill.jobs.label import run_labelling  # noqa: E402
from hessdistill.teachers import teacher_from_spec  # noqa: E402
from hessdistill.workflow.params import job_device  # noqa: E402

t = snakemake.params.teacher  # noqa: F821
w = snakemake.wildcards  # noqa: F821
torch.set_num_threads(snakemake.threads)  # noqa: F821
# not a param (a device change reruns nothing); "auto" resolves to cuda where the job sees a GPU, else cpu
device = job_device(snakemake.config, "label", subset=w.subset, teacher=w.teacher)  # noqa: F821
teacher = teacher_from_spec(t, device=device, dtype=t["dtype"])
summary = run_labelling(
    snakemake.input.structures,  # noqa: F821
    teacher,
    snakemake.output.labels,  # noqa: F821
    hessians_out=snakemake.output.hessians,  # noqa: F821
    hessian_splits=t["hessian_splits"],
    rows_per_structure=t["rows"],
    row_seed=t["row_seed"],
    storage_dtype=t["storage_dtype"],
    chunk_size=t["chunk_size"],
    node_features=t["node_features"],
    progress=False,
)
print(json.dumps(summary, indent=1, sort_keys=True, default=str))
