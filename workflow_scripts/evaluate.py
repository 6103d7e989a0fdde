"""rules evaluate_run*/evaluate_teacher*: one evaluation of a student run or of the teacher -> eval/{evaluation}.json."""

import json
import sys
from pathlib import Path

try:
    import hessdistill  # noqa: F401
except ImportError:  # a conda env from envs/*.yaml (dependencies only): import this checkout's src/
    sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1] / "src"))
from hessdistill.core.joblog import job_logging  # noqa: E402

job_logging(snakemake.log[0])  # noqa: F821 (snakemake object)

import torch  # noqa: E402

from hessdistill.jobs.evaluate import NEEDS_REFERENCE, _Subject, run_evaluations, teacher_from_spec  # noqa: E402
from hessdistill.workflow.params import job_device  # noqa: E402

p = snakemake.params.evaluation  # noqa: F821
w = dict(snakemake.wildcards.items())  # noqa: F821
# speed has its device in params (timings are the device's); "auto" is resolved where the job runs
device = p.get("device") or job_device(snakemake.config, w["evaluation"], subset=w["subset"],  # noqa: F821
                                       teacher=w["teacher"], run=w.get("run"))
inp = snakemake.input  # noqa: F821
torch.set_num_threads(snakemake.threads)  # noqa: F821
ev = p["evaluation"]
needs_reference = "reference_teacher" in p and ev in NEEDS_REFERENCE


def load_reference(dtype):
    return teacher_from_spec(p["reference_teacher"], device=device, dtype=dtype)


def teacher_subject():
    # the loader lets speed time the teacher in the student's dtype (its fastest mode, a like-for-like ratio)
    return _Subject(teacher=load_reference(p["teacher_dtype"]), device=device, loader=load_reference)


if "model" in inp.keys():
    subject = _Subject(model_path=inp.model, device=device)
    reference = teacher_subject() if needs_reference else None
else:
    subject = teacher_subject()
    reference = subject if needs_reference else None
res = run_evaluations(subject, inp.structures, Path(snakemake.output[0]).parent, evaluations=[ev],  # noqa: F821
                      labels=inp.labels, hessians=inp.hessians, reference_teacher=reference,
                      config={"split": p["split"], ev: p["protocol"]},
                      minima=inp.minima if ev == "vibrations" else None)
print(json.dumps({k: v for k, v in res[ev].items() if isinstance(v, (int, float, str))}, indent=1, default=str))
