"""Which conda environment (envs/*.yaml, for ``--sdm conda``) a job runs in: what its teacher and student need.

A job that loads a teacher needs that teacher's package; a job that loads a student needs the student's (MACE
students: mace-torch); a job that loads both (a student evaluation that compares with the teacher, see
:data:`NEEDS_REFERENCE`) needs an environment that has both.  The environments and what they can host:

* ``core.yaml``: the library only (no teacher package): students other than MACE;
* ``teacher.yaml``: CHGNet, SevenNet, ASE-calculator and torch-module teachers; students other than MACE;
* ``teacher-mace.yaml``: MACE teachers, CHGNet, ASE-calculator and torch-module teachers; every student.

mace-torch pins e3nn 0.4.4 and SevenNet needs e3nn >= 0.5, so no environment has both: a MACE student evaluated
against a SevenNet teacher cannot run, and :func:`check_environments` says so when the workflow starts.  Among
the environments that fit, the first of :data:`ENVIRONMENTS` is taken (the smallest), so the jobs of one teacher
keep the environment they had, and only those that need more change.

Standard library only: rules/common.smk imports this on the submitting (login) node.
"""

from __future__ import annotations

from .config_check import ConfigError
from .params import combos, disagreement_partners, run_config

#: the environments, in order of preference (the first that fits a job is taken)
ENVIRONMENTS = ("core.yaml", "teacher.yaml", "teacher-mace.yaml")
#: teacher model prefixes of MACE (mace-torch)
MACE_PREFIXES = ("mace", "mace-off", "mace-mp")
#: evaluations of a student run that load the reference teacher too (as hessdistill.jobs.evaluate.NEEDS_REFERENCE)
NEEDS_REFERENCE = ("vibrations", "phonons", "relax", "speed")


def teacher_environments(model: str) -> tuple[str, ...]:
    """The environments that can load the teacher ``model`` (a teacher config entry's ``model``)."""
    prefix = str(model).split(":")[0]
    if prefix in MACE_PREFIXES:
        return ("teacher-mace.yaml",)
    if prefix == "sevenn":
        return ("teacher.yaml",)
    return ("teacher.yaml", "teacher-mace.yaml")  # chgnet, ase:..., torch:...


def student_environments(arch) -> tuple[str, ...]:
    """The environments that can load a student of architecture ``arch`` (MACE students need mace-torch)."""
    return ("teacher-mace.yaml",) if arch == "mace" else ENVIRONMENTS


def environment(teacher_model=None, student_arch=None) -> str | None:
    """The first environment of :data:`ENVIRONMENTS` that can load the teacher (if given) and a student of
    ``student_arch`` (if given); None when no environment can load both."""
    fits = [
        e
        for e in ENVIRONMENTS
        if (teacher_model is None or e in teacher_environments(teacher_model))
        and (student_arch is None or e in student_environments(student_arch))
    ]
    return fits[0] if fits else None


def student_arch(config: dict, subset: str, run: str):
    """The student architecture of ``run`` trained on ``subset`` (its ``student.arch``)."""
    return (run_config(config, subset, run).get("student") or {}).get("arch")


def evaluation_environment(config: dict, subset: str, teacher: str, run=None, evaluation=None) -> str | None:
    """The environment of one evaluation job: the teacher's for the teacher pseudo-run (``run`` None); for a
    student run the first that has the teacher and the student (the teacher's own, unless the student needs
    more: a MACE student of CHGNet gets teacher-mace.yaml); for the disagreement evaluation the first that has
    the student and its partners' students (teacher-mace.yaml hosts every student).  Where none has both, an evaluation that does not
    load the teacher (not in :data:`NEEDS_REFERENCE`) gets the student's; one that does gets None (see
    :func:`check_environments`)."""
    model = config["teachers"][teacher]["model"]
    if run is None:
        return environment(teacher_model=model)
    arch = student_arch(config, subset, run)
    if evaluation == "disagreement":  # the run's student and its partners' (no teacher): one env for them all
        archs = [arch] + [student_arch(config, subset, x) for x in disagreement_partners(config, subset, teacher, run)]
        return next(e for e in ENVIRONMENTS if all(e in student_environments(a) for a in archs))
    env = environment(teacher_model=model, student_arch=arch)
    if env is None and evaluation not in NEEDS_REFERENCE:
        env = environment(student_arch=arch)
    return env


def check_environments(config: dict, evaluations) -> None:
    """Raise :class:`~hessdistill.workflow.config_check.ConfigError` for every run whose student and teacher no
    environment can load together although one of ``evaluations`` needs both (naming the run, the teacher and
    the fix)."""
    problems = []
    for subset, teacher, run in combos(config):
        both = [e for e in evaluations if e in NEEDS_REFERENCE]
        if both and evaluation_environment(config, subset, teacher, run, both[0]) is None:
            model, arch = config["teachers"][teacher]["model"], student_arch(config, subset, run)
            problems.append(
                f"runs.{run} (student arch {arch!r}) with teachers.{teacher} (model {model!r}) on subset {subset!r}: "
                f"the evaluations {both} load the student and the teacher in one job, but no environment has "
                f"both ({arch} students need {student_environments(arch)}, the teacher {teacher_environments(model)}; "
                f"mace-torch pins e3nn 0.4.4, SevenNet needs e3nn >= 0.5)\n"
                f"  fix: every run is distilled from every teacher: split the config (this run and this teacher in "
                f"different configs), give runs.{run} another student arch, or limit evaluation.evaluations to "
                f"evaluations that do not load the teacher (test, md)"
            )
    if problems:
        raise ConfigError("the workflow config asks for jobs that no environment can run:\n- " + "\n- ".join(problems))
