"""Teacher names -> adapters.

Names (case-sensitive):

===========================  =========================================================================
``chgnet`` / ``chgnet:<v>``   CHGNet pretrained weights shipped in the ``chgnet`` wheel (v = 0.3.0, 0.2.0, r2scan)
``sevenn`` / ``sevenn:<m>``   SevenNet (m = 7net-0 by default; any model name that ``sevenn`` ships)
``mace-off:<size>``           MACE-OFF23 small/medium/large through mace-torch's own loader (downloads once)
``mace-mp:<size>``            MACE-MP-0 small/medium/large (or any name ``mace_mp`` accepts)
``mace:<path>``               a MACE model file on disk
``ase:<module>:<Class>``      any ASE calculator, Hessian by central finite differences
``torch:<module>:<factory>``  any torch callable (conservative or direct-force), Hessian by autograd
===========================  =========================================================================

Keyword options (from the config's teacher entry) are passed to the adapter.
"""

from __future__ import annotations

import importlib

from ..core.errors import TeacherError
from .base import Teacher

#: prefix -> (how the name is written, ':'-separated parts required after the prefix, adapter module, adapter
#: class); load_teacher and the workflow's start-time config check (hessdistill.workflow.config_check) both read it
FORMS = {
    "chgnet": ("chgnet[:<version>]", 0, "hessdistill.teachers.chgnet", "CHGNetTeacher"),
    "sevenn": ("sevenn[:<model>]", 0, "hessdistill.teachers.sevenn", "SevenNetTeacher"),
    "mace-off": ("mace-off:<size>", 1, "hessdistill.teachers.mace", "MACETeacher"),
    "mace-mp": ("mace-mp:<size>", 1, "hessdistill.teachers.mace", "MACETeacher"),
    "mace": ("mace:<path>", 1, "hessdistill.teachers.mace", "MACETeacher"),
    "ase": ("ase:<module>:<Class>", 2, "hessdistill.teachers.ase_fd", "ASETeacher"),
    "torch": ("torch:<module>:<factory>", 2, "hessdistill.teachers.torch_model", "TorchModelTeacher"),
}
KNOWN_PREFIXES = tuple(FORMS)

#: what a teacher is loaded with when the caller does not say (load_teacher, teacher_from_spec, the evaluation job):
#: float64 and no adapter options.  The workflow passes its own dtypes (teacher.dtype for labelling,
#: evaluation.teacher_dtype, whose schema default is this one, for minima and evaluations); tests/
#: test_evaluation_protocols.py keeps the schema's defaults in step with these
TEACHER_DEFAULTS = {"dtype": "float64", "options": {}}


def _import(module: str, what: str):
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise TeacherError(
            f"teacher {what!r} needs a package that is not installed here ({exc}).\n"
            f"  fix: install the matching extra, e.g. pip install -c constraints.txt -e '.[{_extra_for(what)}]', "
            f"or run the rule in its environment from envs/"
        ) from exc


def _extra_for(name: str) -> str:
    return {"chgnet": "chgnet", "sevenn": "sevenn"}.get(
        name.split(":")[0], "mace" if name.startswith("mace") else "teachers"
    )


def load_teacher(name: str, device=None, dtype=TEACHER_DEFAULTS["dtype"], **options) -> Teacher:
    """Build the teacher called ``name`` on ``device`` ("cpu", "cuda", "auto"/None) in ``dtype``.

    Raises :class:`~hessdistill.core.errors.TeacherError` for unknown names, missing packages or missing weights.
    """
    if not isinstance(name, str) or not name:
        raise TeacherError(f"teacher name must be a non-empty string, got {name!r}")
    prefix, _, rest = name.partition(":")
    if prefix in ("chgnet", "sevenn"):
        adapter = getattr(_import(FORMS[prefix][2], name), FORMS[prefix][3])
        return adapter(model=rest or None, device=device, dtype=dtype, **options)
    if prefix in ("mace-off", "mace-mp", "mace"):
        if not rest:
            raise TeacherError(
                f"teacher {name!r}: say which model, e.g. 'mace-off:large', 'mace-mp:medium' or 'mace:/path/to/model.model'"
            )
        adapter = getattr(_import(FORMS[prefix][2], name), FORMS[prefix][3])
        return adapter(kind=prefix, model=rest, device=device, dtype=dtype, **options)
    if prefix == "ase":
        from .ase_fd import ASETeacher

        module, _, cls = rest.partition(":")
        if not module or not cls:
            raise TeacherError(
                f"teacher {name!r}: ASE teachers are named 'ase:<module>:<Class>', e.g. 'ase:ase.calculators.emt:EMT'"
            )
        return ASETeacher(module, cls, dtype=dtype, device=device, **options)
    if prefix == "torch":
        from .torch_model import TorchModelTeacher

        module, _, factory = rest.partition(":")
        if not module or not factory:
            raise TeacherError(f"teacher {name!r}: torch teachers are named 'torch:<module>:<factory>'")
        return TorchModelTeacher.from_factory(module, factory, device=device, dtype=dtype, **options)
    raise TeacherError(f"unknown teacher {name!r}; known forms: {', '.join(f[0] for f in FORMS.values())}")


def teacher_from_spec(spec: dict, *, device=None, dtype=TEACHER_DEFAULTS["dtype"]) -> Teacher:
    """A teacher from its workflow config entry (``{"model", "options", "vjp_method", ...}``), on ``device`` in
    ``dtype``, with its Hessian-row route where it has one: what the labelling, minima and evaluation jobs load."""
    options = spec.get("options") or TEACHER_DEFAULTS["options"]
    teacher = load_teacher(spec["model"], device=device, dtype=dtype, **options)
    if hasattr(teacher, "vjp_method") and spec.get("vjp_method"):  # autograd teachers: Hessian-row route
        teacher.vjp_method = spec["vjp_method"]
    return teacher


def reloadable(load, dtype=TEACHER_DEFAULTS["dtype"]) -> Teacher:
    """The teacher ``load(dtype)`` returns, with ``load`` kept as its :attr:`~hessdistill.teachers.Teacher.loader`,
    so :meth:`~hessdistill.teachers.Teacher.in_dtype` can load it in another dtype (the speed evaluation times the
    teacher in the student's dtype).  ``load``: ``dtype -> Teacher``, e.g.
    ``lambda dt: load_teacher(name, dtype=dt)``."""
    teacher = load(dtype)
    teacher.loader = load
    return teacher
