# Shared helpers: config validation, canonical params, paths, resources. No lambdas in rules; helpers live here.

import os
import re

from snakemake.utils import validate

validate(config, schema="../schemas/config.schema.yaml")

# Bump when library changes alter a rule family's results (library code is not tracked by Snakemake).
CODE_VERSION = {
    "data": 1,
    "teachers": 1,
    "train": 1,
    "evaluate": 1,
    "report": 1,
}

RESULTS = "results"
USE_GPU = bool(config["use_gpu"])
EVALUATIONS = list(config["evaluation"]["evaluations"])
GPU_EVALUATIONS = ("md", "speed")


def canon(x):
    """A plain, canonical copy of a config value: dicts with sorted keys (recursively), lists, plain scalars.

    Snakemake compares params by repr(): key order, tuples, numpy scalars or Paths would give spurious or
    missed reruns, so every `params:` value goes through here."""
    if isinstance(x, dict):
        return {str(k): canon(x[k]) for k in sorted(x, key=str)}
    if isinstance(x, (list, tuple)):
        return [canon(v) for v in x]
    if x is None or isinstance(x, (bool, str)):
        return x
    if isinstance(x, int):
        return int(x)
    if isinstance(x, float):
        return float(x)
    if hasattr(x, "item"):  # numpy scalar
        return canon(x.item())
    return str(x)


def _alternatives(names):
    names = sorted(names)
    return "|".join(re.escape(n) for n in names) if names else "(?!)"


wildcard_constraints:
    subset=_alternatives(config["subsets"]),
    teacher=_alternatives(config["teachers"]),
    run=_alternatives(config["runs"]),
    evaluation=_alternatives(EVALUATIONS),


# ---------------------------------------------------------------- paths
def structures_path(subset):
    return f"{RESULTS}/{subset}/data/structures.h5"


def teacher_dir(subset, teacher):
    return f"{RESULTS}/{subset}/teachers/{teacher}"


def run_dir(subset, teacher, run):
    return f"{RESULTS}/{subset}/runs/{teacher}/{run}"


def combos():
    """Every (subset, teacher, run) of the matrix."""
    return [(s, t, r) for s in config["subsets"] for t in config["teachers"] for r in config["runs"]]


def all_eval_outputs():
    out = []
    for s, t, r in combos():
        out += [f"{run_dir(s, t, r)}/eval/{ev}.json" for ev in EVALUATIONS]
    if config["evaluation"]["evaluate_teachers"]:
        for s in config["subsets"]:
            for t in config["teachers"]:
                out += [f"{teacher_dir(s, t)}/eval/{ev}.json" for ev in EVALUATIONS]
    return out


def report_inputs():
    """The eval files the report reads: test.json (and speed.json for the speed-up) of every run and teacher."""
    wanted = [ev for ev in ("test", "speed") if ev in EVALUATIONS]
    return [p for p in all_eval_outputs() if p.rsplit("/", 1)[1][:-5] in wanted]


REPORT_OUTPUTS = [f"{RESULTS}/report/summary.csv", f"{RESULTS}/report/summary.md"]


# ---------------------------------------------------------------- params (canonical config sub-trees)
def device_for(kind):
    """'cuda' for GPU-capable job kinds when use_gpu is set, else 'cpu'."""
    return "cuda" if USE_GPU and kind in ("label", "train", "md", "speed") else "cpu"


def subset_params(wildcards):
    return canon(config["subsets"][wildcards.subset])


def subset_source_files(wildcards):
    """Files the subset reads (source and test_source paths; none for the built-in generator)."""
    spec = config["subsets"][wildcards.subset]
    paths = [spec[k]["path"] for k in ("source", "test_source") if k in spec and spec[k].get("path")]
    return [p if os.path.isabs(p) else os.path.join(config["data_dir"], p) for p in paths]


def teacher_params(wildcards):
    return canon({**config["teachers"][wildcards.teacher], "device": device_for("label")})


def run_params(wildcards):
    cfg = dict(config["runs"][wildcards.run])
    cfg.setdefault("device", device_for("train"))
    return canon(cfg)


NEEDS_REFERENCE = ("vibrations", "relax", "speed")


def evaluation_params(wildcards):
    """The protocol section of this evaluation (overrides only; library defaults are covered by code_version),
    the split and the device; plus how the teacher is loaded where this job loads it (the teacher pseudo-run,
    or a student evaluation that compares with the reference teacher)."""
    ev = config["evaluation"]
    p = {
        "evaluation": wildcards.evaluation,
        "split": ev["split"],
        "protocol": ev["protocol"].get(wildcards.evaluation, {}),
        "device": device_for(wildcards.evaluation),
    }
    if "run" not in wildcards.keys() or wildcards.evaluation in NEEDS_REFERENCE:
        t = config["teachers"][wildcards.teacher]
        p["teacher_dtype"] = ev["teacher_dtype"]
        p["reference_teacher"] = {k: t[k] for k in ("model", "options", "vjp_method")}
    return canon(p)


# ---------------------------------------------------------------- resources
def gpu_resources(kind):
    """{'gpu': 1} for GPU job kinds when use_gpu is set (so --set-resources / Slurm see it), else {}."""
    return {"gpu": 1} if device_for(kind) == "cuda" else {}


def mem_scaled(base_mb):
    def f(wildcards, attempt):
        return int(base_mb * attempt)

    return f
