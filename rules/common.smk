# Shared helpers: config validation, canonical params, paths, resources. No lambdas in rules; helpers live here.

import os
import re
import sys

try:
    import hessdistill  # noqa: F401
except ImportError:  # running Snakemake from an env without the package: use this checkout's src/
    sys.path.insert(0, os.path.join(workflow.basedir, "src"))
from hessdistill.core.codehash import code_hash  # noqa: E402  (see CODE below)

# canon: a plain, canonical copy of a config value. Snakemake compares params by repr(): key order, tuples,
# numpy scalars or Paths would give spurious or missed reruns, so every `params:` value goes through it.
from hessdistill.workflow.params import canon, combos as _combos, disagreement_partners, evaluation_protocol, job_device, run_config as _run_config
from hessdistill.workflow.params import extra_train_subsets as _extra_train_subsets, matrix_subsets
from hessdistill.workflow.config_check import check_label_shards, check_workflow_config
from hessdistill.workflow.envs import NEEDS_REFERENCE, check_environments, environment, evaluation_environment, student_arch
from hessdistill.workflow.rule_job import job_module

# the results layout (every rule's inputs and outputs, and what the report reads back): hessdistill.core.paths
from hessdistill.core.paths import (RESULTS, benchmark_path, eval_path, flagged_path, hessians_path, label_shard_path,
                                    labels_path, log_path, minima_path, report_path, run_dir, run_file, structures_path,
                                    teacher_dir)

check_workflow_config(config, os.path.join(workflow.basedir, "schemas", "config.schema.yaml"))

# Code tracking.  Snakemake's own `code` trigger compares a script's modification time (a `touch` or a `git
# checkout` back and forth would recompute teacher Hessians) and never sees the library; the profiles turn it
# off (rerun-triggers in profiles/default and profiles/slurm) and each rule gets, as a param, a content hash of
# its code (hessdistill.core.codehash: syntax trees without docstrings, so comments and formatting change nothing).
# Every rule runs the one script workflow_scripts/run_job.py, which runs the rule's job module
# (hessdistill.workflow.rule_job.RULE_JOBS); a family's code is that script, rule_job, and its job module with every
# hessdistill module it imports, so a change in one job module reruns only its family (and what follows from it).
# CODE_VERSION is a manual switch on top: bump a family's number to rerun it for a reason the code hash cannot see
# (e.g. a new version of a teacher package).
CODE_VERSION = {
    "download": 1,
    "data": 1,
    "teachers": 1,
    "train": 1,
    "evaluate": 2,
    "minima": 1,
    "report": 3,
}
RUN_JOB = os.path.join(workflow.basedir, "workflow_scripts", "run_job.py")


def job_code(family, rule):
    """The `code` param of `rule`: its family's manual version and the hash of the script and the rule's job."""
    return {"version": CODE_VERSION[family], "source": code_hash([RUN_JOB, job_module(rule)])}


_FAMILY_RULE = {
    "download": "download_source",
    "data": "prepare_subset",
    "teachers": "label_teacher",
    "train": "train_run",
    "evaluate": "evaluate_run",
    "minima": "teacher_minima",
    "report": "report",
}
CODE = {fam: job_code(fam, rule) for fam, rule in _FAMILY_RULE.items()}

def _family_defaults():
    """Per-family resource defaults as written in the schema (a family given partly in the config keeps the
    schema's values for the keys it leaves out)."""
    import yaml

    with open(os.path.join(workflow.basedir, "schemas", "config.schema.yaml")) as f:
        props = yaml.safe_load(f)["properties"]["resources"]["properties"]
    return {k: v["default"] for k, v in props.items()}


RES = {k: {**v, **config["resources"].get(k, {})} for k, v in _family_defaults().items()}
EVALUATIONS = list(config["evaluation"]["evaluations"])
_teacher_evs = config["evaluation"]["evaluate_teachers"]  # true: all, false: none, or a list
from hessdistill.evaluation.protocols import GPU_EVALUATIONS, STUDENT_ONLY  # noqa: E402  (plain Python: the login node)
# the teacher pseudo-run has no partner students: the student-only evaluations (disagreement) are of runs only
TEACHER_EVALUATIONS = [e for e in EVALUATIONS if e not in STUDENT_ONLY
                       and (_teacher_evs is True or (isinstance(_teacher_evs, list) and e in _teacher_evs))]


def _alternatives(names):
    names = sorted(names)
    return "|".join(re.escape(n) for n in names) if names else "(?!)"


# ---------------------------------------------------------------- paths (hessdistill.core.paths)
# Called with wildcard names they give the rules' patterns: structures_path("{subset}"), run_file("{subset}",
# "{teacher}", "{run}", "model.pt"), ...


def combos():
    """Every (subset, teacher, run) of the matrix; a run with `subsets: [...]` only for those subsets.  Subsets
    that runs use only as extra_train_subsets are not in the matrix (hessdistill.workflow.params.extra_only_subsets)."""
    return _combos(config)


def all_eval_outputs():
    out = []
    for s, t, r in combos():
        out += [eval_path(s, t, r, ev) for ev in EVALUATIONS]
    for s in matrix_subsets(config):
        for t in config["teachers"]:
            out += [eval_path(s, t, None, ev) for ev in TEACHER_EVALUATIONS]
    return out


def report_run_files():
    """Each run's log.csv and summary.json (training curves, train time)."""
    out = []
    for s, t, r in combos():
        out += [run_file(s, t, r, "log.csv"), run_file(s, t, r, "summary.json")]
    return out


REPORT_OUTPUTS = [report_path("summary.csv"), report_path("summary.md")]


# ---------------------------------------------------------------- params (canonical config sub-trees)
def wildcard_device(kind, wildcards):
    """The device of this job (hessdistill.workflow.params.job_device): a run's own device, else gpu_device for GPU job
    kinds when use_gpu is set, else cpu."""
    w = dict(wildcards.items())
    return job_device(config, kind, subset=w.get("subset"), teacher=w.get("teacher"), run=w.get("run"))


def subset_params(wildcards):
    return canon(config["subsets"][wildcards.subset])


def _source_path(src):
    p = src["path"]
    return os.path.normpath(p if os.path.isabs(p) else os.path.join(config["data_dir"], p))


def subset_source_files(wildcards):
    """Files the subset reads (source and test_source paths; none for the built-in generator): inputs of
    prepare_subset, so that editing one (a sample source's seeds file too) reruns the subset."""
    spec = config["subsets"][wildcards.subset]
    return [_source_path(spec[k]) for k in ("source", "test_source") if k in spec and spec[k].get("path")]


def download_specs():
    """{file path: download spec} for every source file of the config that is not generated (builtin), not a seeds
    file (sample: written by hand or by an earlier rule, never downloaded) and does not exist yet.  A file that exists (downloaded earlier, or put there by hand) is a plain input that no rule
    makes, so no --forcerun, -F or rerun can delete it; the download_source rule only makes missing files."""
    out = {}
    for spec in config["subsets"].values():
        for k in ("source", "test_source"):
            src = spec.get(k)
            if not src or not src.get("path") or src["name"] in ("builtin", "sample") or os.path.exists(_source_path(src)):
                continue
            out[_source_path(src)] = canon({"source": src["name"], "file": os.path.basename(src["path"]),
                                           "url": src.get("url"), "sha256": src.get("sha256"), "md5": src.get("md5")})
    return out


DOWNLOADS = download_specs()


def download_params(wildcards):
    return DOWNLOADS[os.path.normpath(wildcards.path)]


# The device is not a param of labels and training (its results do not depend on it beyond round-off): the
# job scripts compute it with hessdistill.workflow.params.job_device, so moving them to a GPU reruns nothing.
def teacher_params(wildcards):
    # without `shards` (rules/teachers.smk): how the labelling is cut into jobs does not change the labels
    return canon({k: v for k, v in config["teachers"][wildcards.teacher].items() if k != "shards"})


# Sharded labelling (rules/teachers.smk): teachers.<name>.shards: N > 1 runs N label_teacher_shard jobs and one
# label_teacher_merge job instead of label_teacher (hessdistill.jobs.label_shards).  N is a param of those jobs only.
def label_shards(teacher):
    """teachers.<name>.shards: 1 (absent) for the single label_teacher job."""
    return int(config["teachers"][teacher].get("shards", 1))


SHARDED_TEACHERS = [t for t in config["teachers"] if label_shards(t) > 1]
UNSHARDED_TEACHERS = [t for t in config["teachers"] if t not in SHARDED_TEACHERS]
# more shards than the structures of an existing store: a ConfigError at start, before any job (shards < 1 is a
# schema error above; a store made later is checked by the shard jobs)
check_label_shards(config, {s: structures_path(s) for s in config["subsets"]})
# the shard and merge jobs' code, under the labelling family's manual version switch
CODE_LABEL_SHARDS = {name: job_code("teachers", name) for name in ("label_teacher_shard", "label_teacher_merge")}


def label_shard_params(wildcards):
    return label_shards(wildcards.teacher)


def label_shard_files(wildcards):
    """The summaries of every shard of this subset x teacher (the merge job's inputs)."""
    return [label_shard_path(wildcards.subset, wildcards.teacher, k) for k in range(label_shards(wildcards.teacher))]


def run_params(wildcards):
    return canon({k: v for k, v in _run_config(config, wildcards.subset, wildcards.run).items() if k != "device"})


def extra_train_inputs(kind):
    """Input function of train_run: the structures, labels or hessians (`kind`) of each of the run's
    extra_train_subsets, for the run's teacher, in the run's order (none for a run without them).  Those files
    have their own prepare_subset and label_teacher jobs; the run's own subset's files are not touched."""

    def f(wildcards):
        names = _extra_train_subsets(config, wildcards.subset, wildcards.run)
        if kind == "structures":
            return [structures_path(s) for s in names]
        return [(labels_path if kind == "labels" else hessians_path)(s, wildcards.teacher) for s in names]

    return f


def evaluation_params(wildcards):
    """The protocol section of this evaluation (overrides only; library defaults are covered by the code hash),
    the split and the device; plus how the teacher is loaded where this job loads it (the teacher pseudo-run,
    or a student evaluation that compares with the reference teacher)."""
    ev = config["evaluation"]
    p = {
        "evaluation": wildcards.evaluation,
        "split": ev["split"],
        "protocol": evaluation_protocol(config, wildcards.subset, wildcards.evaluation),
    }
    if wildcards.evaluation == "speed":  # timings are the device's: a device change reruns them
        p["device"] = wildcard_device("speed", wildcards)
    if "run" not in wildcards.keys() or wildcards.evaluation in NEEDS_REFERENCE:
        t = config["teachers"][wildcards.teacher]
        p["teacher_dtype"] = ev["teacher_dtype"]
        p["reference_teacher"] = {k: t[k] for k in ("model", "options", "vjp_method")}
    return canon(p)


# The disagreement evaluation (its own rule in rules/evaluate.smk) compares the run's student with its partner runs'
# students (hessdistill.workflow.params.disagreement_partners).  The partners' models are inputs, so their training runs first
# and a retrained partner reruns the evaluation; their names are a param (a changed list reruns it too).
def disagreement_params(wildcards):
    """As evaluation_params for the disagreement evaluation (no teacher: it compares students), plus the partner
    run names, in the order of the job's `partners` input."""
    return canon({
        "evaluation": "disagreement",
        "split": config["evaluation"]["split"],
        "protocol": evaluation_protocol(config, wildcards.subset, "disagreement"),
        "partners": disagreement_partners(config, wildcards.subset, wildcards.teacher, wildcards.run),
    })


def disagreement_partner_models(wildcards):
    """The model.pt of every partner run of this run (same subset and teacher)."""
    return [run_file(wildcards.subset, wildcards.teacher, p, "model.pt")
            for p in disagreement_partners(config, wildcards.subset, wildcards.teacher, wildcards.run)]


def minima_params(wildcards):
    """What decides the teacher minima of the vibrations evaluation: the split, the relaxation part of the
    vibrations protocol, the teacher and its dtype.  A student setting or another evaluation never reruns them."""
    from hessdistill.evaluation.protocols import MINIMA_KEYS

    ev = config["evaluation"]
    protocol = evaluation_protocol(config, wildcards.subset, "vibrations")
    t = config["teachers"][wildcards.teacher]
    return canon({"split": ev["split"], "protocol": {k: v for k, v in protocol.items() if k in MINIMA_KEYS},
                  "teacher_dtype": ev["teacher_dtype"],
                  "reference_teacher": {k: t[k] for k in ("model", "options", "vjp_method")}})


def minima_input(wildcards):
    """The vibrations evaluation reads the teacher's minima (relaxed once per subset and teacher); the others
    need none."""
    if wildcards.evaluation != "vibrations":
        return []
    return minima_path(wildcards.subset, wildcards.teacher)


# ---------------------------------------------------------------- conda environments (--sdm conda)
# hessdistill.workflow.envs: each job gets the first of envs/core.yaml, teacher.yaml, teacher-mace.yaml that has
# what it loads (its teacher, its student, or both); a run whose evaluations need a student and a teacher that
# no environment has together (a MACE student and a SevenNet teacher) is a ConfigError here, at start.
check_environments(config, EVALUATIONS)


def _env(name):
    return os.path.join(workflow.basedir, "envs", name)


def teacher_env(wildcards):
    """The environment of the teacher's jobs: envs/teacher-mace.yaml for MACE teachers (e3nn 0.4.4),
    envs/teacher.yaml for the rest."""
    return _env(environment(teacher_model=config["teachers"][wildcards.teacher]["model"]))


def evaluation_env(wildcards):
    """The environment of an evaluation: the teacher's for the teacher pseudo-run; for a student run one that
    has the student (MACE students: mace-torch) and, where the evaluation compares with the teacher, the teacher
    too (a MACE student of CHGNet: envs/teacher-mace.yaml, which has both)."""
    w = dict(wildcards.items())
    return _env(evaluation_environment(config, w["subset"], w["teacher"], w.get("run"), w["evaluation"]))


def disagreement_env(wildcards):
    """The environment of a disagreement evaluation: one that has the run's student and its partners'."""
    return _env(evaluation_environment(config, wildcards.subset, wildcards.teacher, wildcards.run, "disagreement"))


def prepare_env(wildcards):
    """The built-in generator and the sampler run their teacher (its environment: teacher.yaml for CHGNet and
    SevenNet, teacher-mace.yaml for MACE); file sources need only the core."""
    spec = config["subsets"][wildcards.subset]
    teachers = [
        (spec[k].get("options") or {}).get("teacher", "chgnet")
        for k in ("source", "test_source")
        if k in spec and spec[k]["name"] in ("builtin", "sample")
    ]
    if not teachers:
        return _env("core.yaml")
    fits = [environment(teacher_model=t) for t in teachers]
    return _env(fits[0] if len(set(fits)) == 1 and fits[0] else "teacher.yaml")


CORE_ENV = _env("core.yaml")


def train_env(wildcards):
    """Training needs only the core, except MACE students (mace-torch: the MACE environment)."""
    return _env(environment(student_arch=student_arch(config, wildcards.subset, wildcards.run)))


# ---------------------------------------------------------------- resources
# Threads, memory, runtime and extra scheduler resources per rule family come from config["resources"]
# (schema defaults; a cluster user overrides them there or with --set-resources in a profile).  They are not
# params: changing them never reruns a job.
def family_threads(family):
    return int(RES[family]["threads"])


def family_resources(family, kind=None):
    """Resources of one family of rules: mem_mb (scaled by the attempt, so a retry gets more), runtime, the
    family's `extra` resources (slurm_partition, constraint, ...) and, for GPU job kinds, the config's
    gpu_request ({gpu: 1}, {gpu: 1, gpu_model: a100} or {gres: "gpu:1"}) on exactly the jobs whose device is
    not the CPU (wildcard_device): a run with its own device: cuda gets a GPU, an ASE teacher's jobs do not."""
    r = RES[family]
    out = {"mem_mb": mem_scaled(r["mem_mb"]), "runtime": r["runtime"], **r.get("extra", {})}
    if kind is not None:
        request = dict(config["gpu_request"])
        if workflow.local_exec:  # local runs: a numeric gpu count, so that GPU jobs queue on the GPUs (below)
            request.setdefault("gpu", 1)
        out.update({k: gpu_resource(kind, v) for k, v in request.items()})
    return out


def gpu_resource(kind, value):
    """A GPU resource of a job of `kind`: `value` where the job runs on a GPU, nothing (0 or "") elsewhere."""
    def f(wildcards):
        job_kind = wildcards.evaluation if kind == "evaluation" else kind  # md, disagreement or speed
        if wildcard_device(job_kind, wildcards) == "cpu":
            return 0 if isinstance(value, int) else ""
        return value

    return f


# Local runs: GPU jobs (labels, training, MD, speed) take the GPUs in turn instead of sharing one, which would
# make their timings meaningless; `--resources gpu=N` with N GPUs runs N at once.
if workflow.local_exec and "gpu" not in workflow.global_resources:
    workflow.register_resource("gpu", 1)


def mem_scaled(base_mb):
    def f(wildcards, attempt):
        return int(base_mb * attempt)

    return f
