"""The calculator that re-scores geometries (the paper's DFT re-scoring of relaxed structures), named as teachers are:
:func:`reference_calculator`."""

from __future__ import annotations

from dataclasses import dataclass

from ase.calculators.calculator import Calculator

from ..core.errors import TeacherError
from .calculator import TeacherCalculator
from .registry import FORMS, TEACHER_DEFAULTS, load_teacher

#: the config key a reference calculator is read from (named in every error)
REFERENCE_KEY = "evaluation.protocol.relax.reference_calculator"


@dataclass
class ReferenceCalculator:
    """A calculator that re-scores geometries (the paper's DFT re-scoring of relaxed structures)."""

    calc: Calculator
    name: str
    options: dict
    version: str

    def metadata(self) -> dict:
        return {"name": self.name, "options": dict(self.options), "version": self.version}


def _reference_error(problem: str, fix: str, key: str = REFERENCE_KEY) -> TeacherError:
    return TeacherError(f"{key}: {problem}\n  fix: {fix}")


def reference_calculator(
    spec, *, device="cpu", dtype=TEACHER_DEFAULTS["dtype"], key: str = REFERENCE_KEY
) -> ReferenceCalculator:
    """The ASE calculator named by ``spec``: ``{"model": NAME, "options": {...}}`` or a bare NAME, in the
    language of teacher names (:func:`~hessdistill.teachers.load_teacher`).

    ``ase:<module>:<Class>``: the plain ASE calculator ``Class(**options)`` (energies and forces only: no finite
    differences), e.g. ``{"model": "ase:tblite.ase:TBLite", "options": {"method": "GFN2-xTB"}}`` for GFN2-xTB.
    Any other name (``chgnet``, ``sevenn``, ``mace-off:large``, ``torch:<module>:<factory>``, ...): that teacher,
    loaded on ``device`` (CPU by default: a relaxation job has no GPU) in ``dtype``, wrapped in
    :class:`TeacherCalculator`.  Raises :class:`~hessdistill.core.errors.TeacherError` naming ``key`` and the fix.
    """
    from ..core.errors import HessdistillError

    forms = ", ".join(f[0] for f in FORMS.values())
    if isinstance(spec, str):
        spec = {"model": spec}
    if not isinstance(spec, dict) or set(spec) - {"model", "options"}:
        raise _reference_error(
            f"expected {{model: NAME, options: {{...}}}}, got {spec!r}",
            "write e.g. {model: 'ase:tblite.ase:TBLite', options: {method: GFN2-xTB}}",
            key,
        )
    name, options = spec.get("model"), dict(spec.get("options") or {})
    if not isinstance(name, str) or not name:
        raise _reference_error(f"model must be a non-empty name, got {name!r}", f"use one of the forms {forms}", key)
    prefix, _, rest = name.partition(":")
    if prefix not in FORMS:
        raise _reference_error(f"unknown calculator {name!r}", f"use one of the forms {forms}", key)
    if prefix == "ase":
        module, _, cls = rest.partition(":")
        if not module or not cls:
            raise _reference_error(
                f"{name!r} is incomplete",
                "write ASE calculators as ase:<module>:<Class>, e.g. ase:tblite.ase:TBLite",
                key,
            )
        from .ase_fd import ASETeacher

        try:  # the calculator as the ASE teacher builds it; its finite differences are not used here
            ase_teacher = ASETeacher(module, cls, calculator_kwargs=options)
        except TeacherError as exc:
            raise _reference_error(
                str(exc),
                f"install the package that provides {module} in the evaluation job's "
                f"environment, name one of its calculator classes and the options it accepts, "
                f"or set {key} to null",
                key,
            ) from exc
        calc = ase_teacher.calc
        if not isinstance(calc, Calculator) and not hasattr(calc, "get_potential_energy"):
            raise _reference_error(f"{name} is not an ASE calculator", "name an ASE calculator class", key)
        return ReferenceCalculator(calc, name, options, ase_teacher.version)
    try:
        teacher = load_teacher(name, device=device, dtype=dtype, **options)
    except HessdistillError as exc:
        raise _reference_error(
            f"cannot load {name!r}: {exc}",
            f"install what it needs in the evaluation job's environment, fix the name or "
            f"options (forms: {forms}), or set {key} to null",
            key,
        ) from exc
    except TypeError as exc:
        raise _reference_error(
            f"bad options {sorted(options)} for {name!r} ({exc})", f"fix {key}.options", key
        ) from exc
    return ReferenceCalculator(TeacherCalculator(teacher), teacher.name, options, str(teacher.version))
