"""rule teacher_minima: the teacher relaxes the vibrations structures once and its Hessians there are stored
(vibrations_minima.h5) for every vibrations evaluation of this subset and teacher."""

import json
import sys

try:
    import hessdistill  # noqa: F401
except ImportError:  # a conda env from envs/*.yaml (dependencies only): import this checkout's src/
    sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1] / "src"))
from hessdistill.core.joblog import job_logging  # noqa: E402

job_logging(snakemake.log[0])  # noqa: F821 (snakemake object)

import torch  # noqa: E402

from hessdistill.jobs.evaluate import _Subject, make_minima, teacher_from_spec  # noqa: E402
from hessdistill.workflow.params import job_device  # noqa: E402

p = snakemake.params.minima  # noqa: F821
w = dict(snakemake.wildcards.items())  # noqa: F821
torch.set_num_threads(snakemake.threads)  # noqa: F821
device = job_device(snakemake.config, "vibrations", subset=w["subset"], teacher=w["teacher"])  # noqa: F821
teacher = teacher_from_spec(p["reference_teacher"], device=device, dtype=p["teacher_dtype"])
meta = make_minima(_Subject(teacher=teacher, device=device), snakemake.input.structures,  # noqa: F821
                   snakemake.output[0], config={"split": p["split"], "vibrations": p["protocol"]})  # noqa: F821
print(json.dumps(meta, indent=1, default=str))
