"""Evaluate a student run or a teacher with the same protocols; one JSON file per evaluation.

    python -m hessdistill.jobs.evaluate (--model RUN/model.pt | --teacher NAME) --structures S.h5 \\
        [--labels L.h5] [--hessians H.h5] [--reference-teacher NAME] --out DIR \\
        [--evaluations test vibrations md relax speed] [--config eval.yaml] \\
        [--partners RUN=OTHER/model.pt ...]   # disagreement: the students it is compared with

Outputs ``DIR/test.json`` (accuracy vs references and vs the teacher, Hessian MAE), ``vibrations.json``,
``md.json`` (stability and NVE energy conservation), ``disagreement.json`` and ``flagged.extxyz`` (force
disagreement with partner students in MD and on the test structures; student runs only), ``relax.json`` and
``speed.json`` (model vs the reference teacher, same structures and device).  Vibrations and relaxation need the reference teacher
(frequencies at the teacher-relaxed structure; relaxed geometries compared with the teacher's).
The model under evaluation is a :class:`hessdistill.core.model.EvaluatedModel`: a teacher or an
:class:`~hessdistill.students.evaluated.EvaluatedStudent`.  The evaluations, which of them need the reference
teacher and their defaults are in :mod:`hessdistill.evaluation.protocols` (every knob can be overridden by
``--config``); the functions that run them in :mod:`hessdistill.evaluation.registry`.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

from ..core.devices import device_record
from ..core.errors import HessdistillError
from ..evaluation.protocols import EVALUATIONS, NEEDS_REFERENCE, STUDENT_ONLY, merge_config

log = logging.getLogger("hessdistill.jobs.evaluate")

#: the keys of the ``identity`` an evaluation JSON carries (``run`` is None for the teacher pseudo-run)
IDENTITY_KEYS = ("subset", "teacher", "run")


def evaluated_model(model_path=None, teacher=None, *, device="cpu", dtype="float64"):
    """The model under evaluation (:class:`hessdistill.core.model.EvaluatedModel`): the student checkpoint
    ``model_path`` (an :class:`~hessdistill.students.evaluated.EvaluatedStudent`) or the teacher called ``teacher``,
    loaded on ``device`` in ``dtype`` with a loader for other dtypes (:func:`hessdistill.teachers.reloadable`), or a
    loaded teacher as it is.  Exactly one of the two."""
    if (model_path is None) == (teacher is None):
        raise HessdistillError("evaluate either a student (--model) or a teacher (--teacher), not both")
    if model_path is not None:
        from ..students.evaluated import EvaluatedStudent

        return EvaluatedStudent(model_path, device=device)
    if not isinstance(teacher, str):
        return teacher
    from ..core.devices import resolve_device
    from ..teachers import load_teacher, reloadable

    device = str(resolve_device(device))  # "auto": cuda where this job sees a GPU, else cpu
    return reloadable(lambda dt: load_teacher(teacher, device=device, dtype=dt), dtype)


def default_evaluations(model, partners=None) -> list[str]:
    """Every evaluation of :data:`~hessdistill.evaluation.protocols.EVALUATIONS`, less the student-only ones
    (:data:`~hessdistill.evaluation.protocols.STUDENT_ONLY`: disagreement) unless ``model`` is a student and
    ``partners`` are given."""
    with_partners = bool(partners) and getattr(model, "kind", None) == "student"
    return [e for e in EVALUATIONS if e not in STUDENT_ONLY or with_partners]


def run_evaluations(
    model,
    structures,
    out_dir,
    *,
    evaluations=None,
    labels=None,
    hessians=None,
    reference_teacher=None,
    config=None,
    minima=None,
    identity=None,
    partners=None,
) -> dict:
    """Run ``evaluations`` (:data:`hessdistill.evaluation.registry.REGISTRY`; None: :func:`default_evaluations`) of
    ``model`` (an :class:`~hessdistill.core.model.EvaluatedModel`) on the configured split of ``structures``; one
    JSON per evaluation in ``out_dir``, returned as ``{evaluation: result}``.

    ``reference_teacher``: a teacher, or a teacher name (loaded on the model's device in float64, reloadable in other
    dtypes), needed by :data:`~hessdistill.evaluation.protocols.NEEDS_REFERENCE`; pass ``model`` itself for the
    teacher pseudo-run.  ``config``: overrides of :data:`~hessdistill.evaluation.protocols.DEFAULTS`.  ``minima``: a
    teacher-minima file (:func:`hessdistill.jobs.minima.run`) that vibrations uses in place of relaxing with the
    teacher again.  ``identity``: ``{subset, teacher, run}`` of this evaluation (``run`` None or absent for the
    teacher pseudo-run), written as ``identity`` into every JSON when given.  ``partners``: {run name: student
    checkpoint path or model} that the disagreement evaluation compares ``model`` with (loaded on its device).
    """
    from ..data.store import StructureStore
    from ..evaluation.output import write_json
    from ..evaluation.registry import EvaluationContext, get_evaluation

    cfg = merge_config(config)
    if evaluations is None:
        evaluations = default_evaluations(model, partners)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    split = cfg["split"]
    with StructureStore(structures) as st:
        atoms = [st.atoms(split, i) for i in range(st.n_structures(split))]
    if not atoms:
        raise HessdistillError(f"split {split!r} of {structures} is empty: nothing to evaluate")
    ref = None
    if any(e in evaluations for e in NEEDS_REFERENCE):
        if reference_teacher is None:
            raise HessdistillError(
                f"{', '.join(NEEDS_REFERENCE[:-1])} and {NEEDS_REFERENCE[-1]} need the reference "
                "teacher (--reference-teacher)"
            )
        ref = evaluated_model(teacher=reference_teacher, device=str(model.device))
    meta = {
        "model": model.name,
        "kind": model.kind,
        "n_params": model.n_params,
        "structures": str(structures),
        "split": split,
        **device_record(str(model.device)),
    }
    if identity is not None:
        bad = sorted(set(identity) - set(IDENTITY_KEYS))
        if bad:
            raise HessdistillError(f"identity has unknown key(s) {bad}; valid: {list(IDENTITY_KEYS)}")
        meta["identity"] = {k: identity.get(k) for k in IDENTITY_KEYS}
    partner_models = None
    if partners:
        partner_models = {
            str(name): evaluated_model(m, device=str(model.device)) if isinstance(m, (str, Path)) else m
            for name, m in partners.items()
        }
    results = {}
    for ev in evaluations:
        evaluation = get_evaluation(ev)
        t0 = time.perf_counter()
        c = cfg[ev]
        ctx = EvaluationContext(
            model=model,
            reference=ref,
            atoms=atoms,
            structures=structures,
            split=split,
            protocol=c,
            labels=labels,
            hessians=hessians,
            minima=minima,
            partners=partner_models,
            out_dir=out,
            run=(identity or {}).get("run"),
        )
        res = evaluation.run(ctx)
        res = {**meta, "evaluation": ev, "protocol": c, "wall_s": time.perf_counter() - t0, **res}
        write_json(out / f"{ev}.json", res)
        results[ev] = res
        log.info("%s: %s done in %.1f s", model.name, ev, res["wall_s"])
    return results


def snakemake_job(smk, device=None) -> dict:
    """Rules evaluate_run*/evaluate_teacher*: one evaluation (``params.evaluation``) of a student run (``input.model``)
    or of the teacher pseudo-run -> ``output[0]`` (``eval/{evaluation}.json``), with ``identity`` from the wildcards
    (subset, teacher, run).  ``device``: where this job runs (the workflow's job device for this evaluation; jobs do
    not import the workflow layer), None for cpu; speed's own ``params.evaluation["device"]`` wins.  The teacher is
    loaded from ``params.evaluation["reference_teacher"]`` in ``teacher_dtype``, reloadable in the student's dtype
    for speed.  Prints the result's scalars and returns the evaluation's result."""
    import torch

    from ..teachers import reloadable, teacher_from_spec

    p = smk.params.evaluation
    w = dict(smk.wildcards.items())
    # speed has its device in params (timings are the device's); "auto" is resolved where the job runs
    device = p.get("device") or device or "cpu"
    inp = smk.input
    torch.set_num_threads(smk.threads)
    ev = p["evaluation"]
    needs_reference = "reference_teacher" in p and ev in NEEDS_REFERENCE

    def teacher():
        # the loader lets speed time the teacher in the student's dtype (its fastest mode, a like-for-like ratio)
        return reloadable(
            lambda dt: teacher_from_spec(p["reference_teacher"], device=device, dtype=dt), p["teacher_dtype"]
        )

    if "model" in inp.keys():
        model = evaluated_model(inp.model, device=device)
        reference = teacher() if needs_reference else None
    else:
        model = teacher()
        reference = model if needs_reference else None
    identity = {"subset": w["subset"], "teacher": w["teacher"], "run": w.get("run")}
    partners = None
    if ev == "disagreement":  # the partner runs' models, in the order of their names (rules/evaluate.smk)
        names, paths = list(p["partners"]), list(inp.partners)
        if len(names) != len(paths):
            raise HessdistillError(f"disagreement: {len(names)} partner names {names} for {len(paths)} models {paths}")
        partners = dict(zip(names, paths))
    res = run_evaluations(
        model,
        inp.structures,
        Path(smk.output[0]).parent,
        evaluations=[ev],
        labels=inp.labels if "labels" in inp.keys() else None,  # the disagreement rule reads no labels
        hessians=inp.hessians if "hessians" in inp.keys() else None,
        reference_teacher=reference,
        config={"split": p["split"], ev: p["protocol"]},
        minima=inp.minima if ev == "vibrations" else None,
        identity=identity,
        partners=partners,
    )
    print(json.dumps({k: v for k, v in res[ev].items() if isinstance(v, (int, float, str))}, indent=1, default=str))
    return res[ev]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m hessdistill.jobs.evaluate", description=__doc__.split("\n\n")[0])
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--model", help="student checkpoint (model.pt)")
    g.add_argument("--teacher", help="teacher name, evaluated as a pseudo-run")
    p.add_argument("--structures", required=True)
    p.add_argument("--labels")
    p.add_argument("--hessians")
    p.add_argument("--reference-teacher", help="teacher for vibrations/relax/speed comparisons")
    p.add_argument("--teacher-dtype", default="float64")
    p.add_argument("--out", required=True)
    p.add_argument(
        "--evaluations",
        nargs="+",
        choices=EVALUATIONS,
        help="default: all (disagreement only for a student given --partners)",
    )
    p.add_argument("--config", help="YAML/JSON overriding evaluation protocol settings")
    p.add_argument("--device", default="cpu")
    p.add_argument(
        "--partners",
        nargs="+",
        default=[],
        metavar="RUN=MODEL",
        help="disagreement: the partner students (run name = its model.pt) the model is compared with",
    )
    p.add_argument("--minima", help="teacher minima (minima.h5) for vibrations, made once by --make-minima")
    p.add_argument(
        "--make-minima",
        metavar="PATH",
        help="only relax the vibrations structures with --teacher and write them and its Hessians to PATH "
        "(as python -m hessdistill.jobs.minima)",
    )
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    from .prepare import load_spec

    try:
        cfg = load_spec(args.config) if args.config else None
        bad = [x for x in args.partners if "=" not in x or not x.split("=", 1)[0] or not x.split("=", 1)[1]]
        if bad:
            raise HessdistillError(f"--partners {bad}: write each as RUN=path/to/model.pt")
        partners = dict(x.split("=", 1) for x in args.partners) or None
        model = evaluated_model(args.model, args.teacher, device=args.device, dtype=args.teacher_dtype)
        if args.make_minima:
            from .minima import run as make_minima

            if model.kind != "teacher":
                raise HessdistillError("--make-minima relaxes with a teacher: pass --teacher NAME, not --model")
            print(json.dumps(make_minima(model, args.structures, args.make_minima, config=cfg), default=str))
            return 0
        ref = None
        if args.reference_teacher:
            ref = (
                model
                if args.teacher == args.reference_teacher
                else evaluated_model(teacher=args.reference_teacher, device=args.device, dtype=args.teacher_dtype)
            )
        res = run_evaluations(
            model,
            args.structures,
            args.out,
            evaluations=args.evaluations,
            labels=args.labels,
            hessians=args.hessians,
            reference_teacher=ref,
            config=cfg,
            minima=args.minima,
            partners=partners,
        )
    except HessdistillError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(
        json.dumps(
            {
                k: {kk: v[kk] for kk in v if isinstance(v[kk], (int, float)) and not isinstance(v[kk], bool)}
                for k, v in res.items()
            },
            default=str,
        )[:2000]
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
