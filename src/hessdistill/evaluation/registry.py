"""Evaluation names -> the functions that run them: :data:`REGISTRY`.

Each :class:`Evaluation` binds a name of :data:`hessdistill.evaluation.protocols.EVALUATIONS` to a function
``run(ctx: EvaluationContext) -> dict`` (the evaluation's result, without the job's metadata), whether it compares
with the reference teacher (:data:`~hessdistill.evaluation.protocols.NEEDS_REFERENCE`) and its default protocol
(:data:`~hessdistill.evaluation.protocols.DEFAULTS`).  The evaluation job
(:func:`hessdistill.jobs.evaluate.run_evaluations`) loads the structures and models, calls them and writes the JSON.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..core.errors import HessdistillError
from .protocols import DEFAULTS, EVALUATIONS, NEEDS_REFERENCE


@dataclass
class EvaluationContext:
    """What one evaluation runs on.

    ``model``: the model under evaluation (:class:`hessdistill.core.model.EvaluatedModel`); ``reference``: the
    reference teacher (a :class:`~hessdistill.teachers.Teacher`; None where the evaluation needs none; ``model``
    itself for the teacher pseudo-run); ``atoms``: the structures of ``split`` of the store ``structures``;
    ``protocol``: this evaluation's settings (its :data:`~hessdistill.evaluation.protocols.DEFAULTS` with the
    caller's overrides); ``labels``/``hessians``: the label and Hessian stores (test); ``minima``: a teacher-minima
    file (vibrations; None: the teacher relaxes here); ``partners``: {run name: model} of the students that
    ``model`` is compared with (disagreement); ``out_dir``: the folder of the evaluation's JSON, for the files an
    evaluation writes beside it (disagreement: its flagged frames); ``run``: the name of the run evaluated.
    """

    model: Any
    reference: Any
    atoms: list
    structures: Any
    split: str
    protocol: dict
    labels: Any = None
    hessians: Any = None
    minima: Any = None
    partners: dict | None = None
    out_dir: Any = None
    run: str | None = None


@dataclass(frozen=True)
class Evaluation:
    """One evaluation: ``run(ctx) -> dict``, whether it needs the reference teacher, its default protocol."""

    name: str
    run: Callable[[EvaluationContext], dict]
    needs_reference: bool
    defaults: dict = field(default_factory=dict)


def run_test(ctx: EvaluationContext) -> dict:
    """Accuracy against the reference labels and the teacher's, and the Hessian MAE
    (:func:`hessdistill.evaluation.accuracy.accuracy_from_stores`)."""
    from .accuracy import accuracy_from_stores

    c, model = ctx.protocol, ctx.model
    return accuracy_from_stores(
        model.predictor(c["batch_size"]),
        ctx.structures,
        split=ctx.split,
        labels=ctx.labels,
        hessians=ctx.hessians,
        hessian_rows_fn=model.hessian_rows,
        max_hessian_structures=c["max_hessian_structures"],
        parity_points=c["parity_points"],
        # the teacher's energies may have another zero than the reference's
        offsets_from="train" if model.kind == "teacher" else None,
    )


def run_vibrations(ctx: EvaluationContext) -> dict:
    """Frequencies of the model against the teacher's at the teacher's minima (made here, or read from
    ``ctx.minima`` and checked against this protocol)."""
    from .vibrations import check_minima, compare_at_minimum, frequency_suite, load_minima, teacher_minima

    c, model, ref = ctx.protocol, ctx.model, ctx.reference
    if ctx.minima is not None:  # the teacher's relaxations and Hessians, made once for every model
        records, made = load_minima(ctx.minima)
        check_minima(made, c, ctx.split, ref, ctx.minima)
    else:
        records = teacher_minima(ref, ctx.atoms, c)
    # the teacher against itself: its Hessian is the one in the record (no second, identical Hessian)
    runs = [
        compare_at_minimum(rec, model_hessian_fn=(lambda a, h=rec["hessian"]: h) if model is ref else model.hessian)
        for rec in records
    ]
    return {**frequency_suite(runs), "runs": runs}  # mean, standard error and n over the structures


def run_phonons(ctx: EvaluationContext) -> dict:
    """Phonons of the model against the teacher's on the split's crystals
    (:func:`hessdistill.evaluation.phonons.phonon_structures`)."""
    from .phonons import phonon_comparison, phonon_structures, phonon_suite

    c = ctx.protocol
    pool = phonon_structures(ctx.atoms, c["n_structures"])
    kw = {k: v for k, v in c.items() if k != "n_structures"}
    kw["mesh"] = tuple(kw["mesh"])
    runs = [phonon_comparison(a, ctx.model.calculator(), ctx.reference.calculator(), **kw) for a in pool]
    return {
        **phonon_suite(runs),
        "runs": runs,
        "note": None if pool else "no periodic structure in the split: no phonons",
    }


def run_md(ctx: EvaluationContext) -> dict:
    """MD stability and energy conservation of the model from the first structures of the split, bonds checked
    against the training frames of the same composition (``bond_reference: training``) or the start structures."""
    from ..data.store import StructureStore
    from .md import find_bonds, md_stability_suite, training_reference

    c = ctx.protocol
    kw = {k: v for k, v in c.items() if k not in ("n_structures", "bond_reference")}
    starts = ctx.atoms[: c["n_structures"]]
    refs = None
    if c["bond_reference"] == "training":  # the paper's: mean lengths over training frames, same composition
        with StructureStore(ctx.structures) as st:
            train = [st.atoms("train", i) for i in range(st.n_structures("train"))] if "train" in st.splits else []
        bonds = [find_bonds(a) for a in starts]
        found = [training_reference(a, train, b) for a, b in zip(starts, bonds)]
        refs = [lengths for lengths, _ in found]
        kw["bonds"] = bonds
    elif c["bond_reference"] != "initial":
        raise HessdistillError(f"md bond_reference must be 'training' or 'initial', got {c['bond_reference']!r}")
    res = md_stability_suite(starts, ctx.model.calculator(), reference_lengths=refs, **kw)
    if refs is not None:
        for r, (_, n_frames) in zip(res["runs"], found):
            r["bond_reference"] = f"training ({n_frames} frames)" if n_frames else "initial (no training frame matches)"
    return res


def run_disagreement(ctx: EvaluationContext) -> dict:
    """Force disagreement of the student with its partner students (``ctx.partners``) in MD from the first
    structures of the split, against the same on the split's own structures; the flagged frames are written to
    ``ctx.out_dir``/:data:`~hessdistill.evaluation.disagreement.FLAGGED_NAME`
    (:func:`hessdistill.evaluation.disagreement.disagreement_suite`)."""
    from pathlib import Path

    from .disagreement import FLAGGED_NAME, disagreement_suite, protocol_problems

    c = ctx.protocol
    if not ctx.partners:
        raise HessdistillError(
            "the disagreement evaluation compares the student with partner students trained on the same data, "
            "and none was given (evaluation.protocol.disagreement.partners; the job: --partners RUN=model.pt)\n"
            "  fix: add another run of the same subset and teacher (e.g. an undistilled one) or list partners"
        )
    if ctx.model.kind != "student":
        raise HessdistillError("the disagreement evaluation is of student runs; the teacher has no partners")
    problems = protocol_problems(c)
    if problems:
        raise HessdistillError("evaluation.protocol.disagreement: " + "; ".join(problems))
    md_keys = ("ensemble", "temperature_K", "timestep_fs", "steps", "friction_per_fs", "every", "seed")
    return disagreement_suite(
        ctx.atoms[: c["n_structures"]],
        ctx.atoms[: c["baseline_structures"]],
        ctx.model.calculator(),
        {name: m.calculator() for name, m in ctx.partners.items()},
        threshold=c["threshold_eV_A"],
        threshold_factor=c["threshold_factor"],
        flagged_path=None if ctx.out_dir is None else Path(ctx.out_dir) / FLAGGED_NAME,
        run_name=ctx.run,
        max_force_eV_A=c["max_force_eV_A"],
        **{k: c[k] for k in md_keys},
    )


def run_relax(ctx: EvaluationContext) -> dict:
    """Relaxations by the model against the teacher's, optionally re-scored by a reference calculator."""
    from .relax import relax_comparison

    c = ctx.protocol
    kw = {k: v for k, v in c.items() if k not in ("n_structures", "reference_calculator")}
    if c.get("reference_calculator"):  # the paper's re-scoring of the final geometries (CPU, float64)
        from ..teachers.reference import reference_calculator

        rc = reference_calculator(c["reference_calculator"])
        # the teacher's geometries are re-scored once, by the teacher's own relax evaluation (there the model)
        kw |= {"reference_calc": rc.calc, "reference_info": rc.metadata(), "rescore_teacher": False}
    return relax_comparison(ctx.atoms[: c["n_structures"]], ctx.model.calculator(), ctx.reference.calculator(), **kw)


def run_speed(ctx: EvaluationContext) -> dict:
    """Latency and throughput of the student's fast program against the teacher's, the teacher timed in the
    student's dtype (like for like); the teacher pseudo-run times the teacher in float32."""
    from ..core.dtypes import dtype_name
    from .speed import latency_sizes, speed_comparison, time_teacher

    c, model, ref, atoms = ctx.protocol, ctx.model, ctx.reference, ctx.atoms
    pool = (atoms * (1 + c["n_structures"] // len(atoms)))[: c["n_structures"]]
    # latency at the subset's own sizes (smallest, median, largest) and at a supercell of >= large_atoms
    sizes = latency_sizes(atoms, large_atoms=c["large_atoms"])
    kw = {
        "batch_size": c["batch_size"],
        "repeats": c["repeats"],
        "warmup": c["warmup"],
        "warmup_batches": c["warmup_batches"],
        "device": str(model.device),
        "latency_structures": sizes,
    }
    # like for like: the teacher is timed in the student's dtype (float32: its fastest mode); the dtype it
    # labelled in is reported beside
    if model.kind == "student":
        want = dtype_name(model.dtype)
        timed = ref.in_dtype(want)
        fast = model.fast_program(c["student_format"])
        res = speed_comparison(fast["program"], timed, pool, skin=c["skin"], **kw)
        res |= {
            "student_dtype": want,
            "teacher_label_dtype": dtype_name(ref.dtype),
            "student_format": fast["format"],
            "export_s": fast["export_s"],
            "student_note": fast["note"],
        }
    else:
        timed = model.in_dtype("float32")
        res = {
            "teacher": time_teacher(timed, pool, **kw),
            "speedup_latency": 1.0,
            "speedup_throughput": 1.0,
            "teacher_label_dtype": dtype_name(model.dtype),
        }
    res["teacher_dtype"] = dtype_name(timed.dtype)
    return res


_RUNS = {
    "test": run_test,
    "vibrations": run_vibrations,
    "phonons": run_phonons,
    "md": run_md,
    "disagreement": run_disagreement,
    "relax": run_relax,
    "speed": run_speed,
}

#: evaluation name -> :class:`Evaluation`, in the order of :data:`~hessdistill.evaluation.protocols.EVALUATIONS`
REGISTRY = {name: Evaluation(name, _RUNS[name], name in NEEDS_REFERENCE, DEFAULTS[name]) for name in EVALUATIONS}


def get_evaluation(name: str) -> Evaluation:
    """The registered evaluation ``name``; raises :class:`~hessdistill.core.errors.HessdistillError` naming the
    valid ones."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise HessdistillError(f"unknown evaluation {name!r}; choose from {EVALUATIONS}") from None
