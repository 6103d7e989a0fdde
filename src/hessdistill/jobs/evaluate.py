"""Evaluate a student run or a teacher with the same protocols; one JSON file per evaluation.

    python -m hessdistill.jobs.evaluate (--model RUN/model.pt | --teacher NAME) --structures S.h5 \\
        [--labels L.h5] [--hessians H.h5] [--reference-teacher NAME] --out DIR \\
        [--evaluations test vibrations md relax speed] [--config eval.yaml]

Outputs ``DIR/test.json`` (accuracy vs references and vs the teacher, Hessian MAE), ``vibrations.json``,
``md.json`` (stability and NVE energy conservation), ``relax.json`` and ``speed.json`` (model vs the
reference teacher, same structures and device).  Vibrations and relaxation need the reference teacher
(frequencies at the teacher-relaxed structure; relaxed geometries compared with the teacher's).
Protocol defaults follow the paper (MD 300 K, 1 fs, NVE; FIRE to 0.05 eV/Å; speed at batch 32) scaled
down in length; every knob is in :data:`DEFAULTS` and can be overridden by ``--config``.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np

from ..core.devices import device_record, resolve_device
from ..core.errors import HessdistillError

log = logging.getLogger("hessdistill.jobs.evaluate")

#: evaluations that compare with the reference teacher's own calculation (relaxations, Hessians, timings)
NEEDS_REFERENCE = ("vibrations", "phonons", "relax", "speed")


def phonon_structures(atoms, n: int) -> list:
    """Up to ``n`` crystals for phonons: the smallest cell of each composition first (distinct compounds before
    more cells of the same one), fully periodic structures only."""
    crystals = sorted((a for a in atoms if a.pbc.all()), key=len)
    first, rest, seen = [], [], set()
    for a in crystals:
        key = a.get_chemical_formula(mode="reduce")
        (rest if key in seen else first).append(a)
        seen.add(key)
    return (first + rest)[:n]


def spread_structures(atoms, n: int) -> list:
    """Up to ``n`` structures from distinct groups first: the first frame of each trajectory (``info
    ["trajectory"]``; structures without one are their own group), in order of appearance, then the second
    frame of each, and so on.  Consecutive frames of one MD run relax to the same minimum, so taking the first
    ``n`` of a split grouped by trajectory would measure one structure ``n`` times."""
    groups: dict = {}
    for k, a in enumerate(atoms):
        groups.setdefault(a.info.get("trajectory", f"#{k}"), []).append(a)
    out, depth = [], 0
    while len(out) < n and any(len(g) > depth for g in groups.values()):
        out += [g[depth] for g in groups.values() if len(g) > depth][: n - len(out)]
        depth += 1
    return out


EVALUATIONS = ("test", "vibrations", "phonons", "md", "relax", "speed")

DEFAULTS = {
    "split": "test",
    "test": {"max_hessian_structures": 50, "batch_size": 32, "parity_points": 2000},
    "vibrations": {"n_structures": 5, "fmax": 1e-3, "max_steps": 1000, "molecules_only": False},
    "phonons": {"n_structures": 2, "fmax": 1e-3, "max_steps": 500, "min_supercell_length": 8.0, "displacement": 0.01,
                "mesh": [8, 8, 8], "band_points": 31, "symmetrize": 0.1},
    "md": {"n_structures": 5, "ensemble": "nve", "temperature_K": 300.0, "timestep_fs": 1.0, "steps": 1000,
           "friction_per_fs": 0.01, "log_every": 10, "seed": 0, "max_deviation": 0.5, "criterion": "auto",
           "keep_series": True, "min_energy_frames": 10, "min_energy_window_ps": 0.5, "bond_reference": "training",
           "check_every": 1},
    # perturb 0: the unperturbed test structures (the paper's); reference_calculator: {model, options} re-scores the
    # final geometries (the paper's DFT re-scoring), see teachers.calculator.reference_calculator
    "relax": {"n_structures": 5, "optimizer": "FIRE", "fmax": 0.05, "max_steps": 500, "perturb": 0.05, "seed": 0,
              "reference_calculator": None},
    # warmup_batches null: every batch called `warmup` times before timing; k: one pass, the first k batches
    # untimed (the paper's: 3)
    "speed": {"n_structures": 32, "batch_size": 32, "repeats": 5, "warmup": 2, "warmup_batches": None,
              "large_atoms": 500, "student_format": "aoti", "skin": 0.5},
}


def merge_config(overrides: dict | None) -> dict:
    cfg = copy.deepcopy(DEFAULTS)
    for k, v in (overrides or {}).items():
        if k not in cfg:
            raise HessdistillError(f"unknown evaluation section {k!r}; valid: {sorted(cfg)}")
        if isinstance(cfg[k], dict):
            if not isinstance(v, dict):
                raise HessdistillError(f"evaluation section {k!r} must be a mapping")
            bad = sorted(set(v) - set(cfg[k]))
            if bad:
                raise HessdistillError(f"unknown option(s) {bad} in evaluation section {k!r}; valid: {sorted(cfg[k])}")
            cfg[k].update(v)
        else:
            cfg[k] = v
    return cfg


class _Subject:
    """What is evaluated: a student checkpoint or a teacher, with uniform accessors."""

    def __init__(self, model_path=None, teacher=None, device="cpu", dtype="float64", loader=None):
        """A student (``model_path``) or a teacher (a name or a loaded teacher).  ``loader(dtype)`` loads the same
        teacher in another dtype (given a name, it is load_teacher); speed uses it to time the teacher in the
        student's dtype."""
        from ..evaluation.accuracy import calculator_predictor, student_hessian_rows_fn, student_predictor

        if (model_path is None) == (teacher is None):
            raise HessdistillError("evaluate either a student (--model) or a teacher (--teacher), not both")
        device = str(resolve_device(device))  # "auto": cuda where this job sees a GPU, else cpu
        self.device = device
        if model_path is not None:
            from ..students.calculator import StudentCalculator, load_student

            self.model, ck = load_student(model_path, device=device)
            self.name = f"student:{Path(model_path).parent.name}"
            self.calc = StudentCalculator(self.model, device=device)
            self.predict_factory = lambda bs: student_predictor(self.model, batch_size=bs, device=device)
            self.rows_fn = student_hessian_rows_fn(self.model, device=device)
            self.kind = "student"
            self.n_params = int(self.model.n_params)
        else:
            from ..teachers import load_teacher
            from ..teachers.calculator import TeacherCalculator

            if isinstance(teacher, str):
                name = teacher
                loader = loader or (lambda dt: load_teacher(name, device=device, dtype=dt))
                teacher = loader(dtype)
            self.teacher = teacher
            self._loader = loader
            self.name = self.teacher.name
            self.calc = TeacherCalculator(self.teacher)
            self.predict_factory = lambda bs: calculator_predictor(self.calc)
            self.rows_fn = self.teacher.hessian_rows
            self.kind = "teacher"
            self.n_params = self.teacher.n_params

    def fast_program(self, fmt: str) -> dict:
        """The student on the fast path users run: ``{"program", "format", "export_s", "note"}``.

        ``aoti``/``torchscript``: exported to a temporary file (as ``hessdistill export`` does); ``eager``: the model
        on plain tensors.  A student that cannot be exported (e.g. MACE) is timed eagerly; an AOTI export that fails
        (e.g. no C++ compiler on the node) falls back to TorchScript.  ``format`` and ``note`` say what was timed.
        """
        import tempfile

        from ..students.deployed import EagerProgram
        from ..students.export import export_student, extras_spec, load_exported

        if fmt != "eager":
            try:
                extras_spec(self.model)
            except HessdistillError as exc:
                return {"program": EagerProgram(self.model), "format": "eager", "export_s": None,
                        "note": f"not exportable, timed eagerly: {str(exc).splitlines()[0]}"}
        if fmt == "eager":
            return {"program": EagerProgram(self.model), "format": "eager", "export_s": None, "note": None}
        note = None
        with tempfile.TemporaryDirectory(prefix="hessdistill-export-") as tmp:
            t0 = time.perf_counter()
            try:
                path = Path(tmp) / ("student.pt2" if fmt == "aoti" else "student.pt")
                export_student(self.model, path, fmt=fmt, device=self.device)
            except Exception as exc:  # noqa: BLE001 - compiler/toolchain failures of AOTInductor take many forms
                if fmt != "aoti":
                    raise
                note = f"AOTInductor export failed ({type(exc).__name__}: {str(exc).splitlines()[0][:200]}); timed TorchScript"
                log.warning("%s", note)
                fmt, path = "torchscript", Path(tmp) / "student.pt"
                export_student(self.model, path, fmt=fmt, device=self.device)
            return {"program": load_exported(path, device=self.device), "format": fmt,
                    "export_s": time.perf_counter() - t0, "note": note}

    def hessian(self, atoms):
        return self.rows_fn(atoms, np.arange(3 * len(atoms)))

    def teacher_in(self, dtype: str):
        """This teacher in ``dtype`` ('float32'/'float64'): itself if it already is, else reloaded (when a loader is
        known; otherwise itself, and the caller reports the dtype it got)."""
        from ..teachers.base import dtype_name

        if dtype_name(self.teacher.dtype) == dtype or self._loader is None:
            return self.teacher
        return self._loader(dtype)


def teacher_from_spec(spec: dict, *, device="cpu", dtype="float64"):
    """The reference teacher a workflow job compares with, from its params (the teacher's config entry):
    :func:`hessdistill.teachers.teacher_from_spec` on ``device`` (default cpu) in ``dtype`` (default float64)."""
    from ..teachers import teacher_from_spec as load

    return load(spec, device=device, dtype=dtype)


#: the vibrations protocol keys that decide the teacher minima (the rest of the evaluation can change freely)
MINIMA_KEYS = ("n_structures", "fmax", "max_steps", "molecules_only")


def minima_protocol(c: dict, split: str, ref: _Subject) -> dict:
    """What decides the teacher minima: the split, the teacher (name and dtype) and the relaxation protocol."""
    from ..teachers.base import dtype_name

    return {"split": split, "teacher": ref.name, "teacher_dtype": dtype_name(ref.teacher.dtype),
            **{k: c[k] for k in MINIMA_KEYS}}


def teacher_minima(ref: _Subject, atoms, c: dict) -> list:
    """The teacher's half of the vibrations protocol on a split: the structures spread over trajectories, each
    relaxed by the teacher, with the teacher's float64-or-as-loaded Hessian there."""
    from ..evaluation.vibrations import teacher_minimum

    pool = spread_structures([a for a in atoms if not (c["molecules_only"] and a.pbc.any())], c["n_structures"])
    return [teacher_minimum(a, ref.calc, teacher_hessian_fn=ref.hessian, fmax=c["fmax"], max_steps=c["max_steps"])
            for a in pool]


def check_minima(made: dict, c: dict, split: str, ref: _Subject, path) -> None:
    """Refuse minima made for another split, teacher or relaxation protocol than this evaluation's."""
    want = minima_protocol(c, split, ref)
    have = {k: made.get(k) for k in want}
    if have != want:
        diff = {k: (have[k], want[k]) for k in want if have[k] != want[k]}
        raise HessdistillError(f"teacher minima {path} were made with another protocol ({', '.join(f'{k}: {a!r} there, {b!r} here' for k, (a, b) in diff.items())}); "
                               "remake them (rule teacher_minima, or python -m hessdistill.jobs.evaluate --make-minima) "
                               "or evaluate without --minima")


def make_minima(reference: _Subject, structures, out_path, *, config=None) -> dict:
    """Relax the vibrations pool of ``structures`` with the reference teacher and store the minima and its Hessians
    (:func:`hessdistill.evaluation.vibrations.save_minima`); returns the meta written beside them."""
    from ..data.store import StructureStore
    from ..evaluation.vibrations import save_minima

    cfg = merge_config(config)
    split = cfg["split"]
    with StructureStore(structures) as st:
        atoms = [st.atoms(split, i) for i in range(st.n_structures(split))]
    if not atoms:
        raise HessdistillError(f"split {split!r} of {structures} is empty: no structure to relax for vibrations")
    t0 = time.perf_counter()
    records = teacher_minima(reference, atoms, cfg["vibrations"])
    meta = {**minima_protocol(cfg["vibrations"], split, reference), "structures": str(structures),
            "n_failed": sum(1 for r in records if r["hessian"] is None), "wall_s": time.perf_counter() - t0}
    save_minima(out_path, records, meta)
    return meta


def run_evaluations(subject: _Subject, structures, out_dir, *, evaluations=EVALUATIONS, labels=None, hessians=None,
                    reference_teacher=None, config=None, minima=None) -> dict:
    """Run ``evaluations`` of ``subject``; one JSON per evaluation in ``out_dir``.  ``minima``: a teacher-minima
    file (:func:`make_minima`) that vibrations uses in place of relaxing with the teacher again."""
    from ..data.store import StructureStore
    from ..evaluation import write_json

    cfg = merge_config(config)
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
            raise HessdistillError("vibrations, phonons, relax and speed need the reference teacher (--reference-teacher)")
        ref = reference_teacher if isinstance(reference_teacher, _Subject) else _Subject(teacher=reference_teacher,
                                                                                          device=subject.device)
    meta = {"model": subject.name, "kind": subject.kind, "n_params": subject.n_params, "structures": str(structures),
            "split": split, **device_record(subject.device)}
    results = {}
    for ev in evaluations:
        if ev not in EVALUATIONS:
            raise HessdistillError(f"unknown evaluation {ev!r}; choose from {EVALUATIONS}")
        t0 = time.perf_counter()
        c = cfg.get(ev, {})
        if ev == "test":
            from ..evaluation.accuracy import accuracy_from_stores

            res = accuracy_from_stores(subject.predict_factory(c["batch_size"]), structures, split=split, labels=labels,
                                       hessians=hessians, hessian_rows_fn=subject.rows_fn,
                                       max_hessian_structures=c["max_hessian_structures"],
                                       parity_points=c["parity_points"],
                                       # the teacher's energies may have another zero than the reference's
                                       offsets_from="train" if subject.kind == "teacher" else None)
        elif ev == "vibrations":
            from ..evaluation.vibrations import compare_at_minimum, frequency_suite, load_minima

            if minima is not None:  # the teacher's relaxations and Hessians, made once for every model
                records, made = load_minima(minima)
                check_minima(made, c, split, ref, minima)
            else:
                records = teacher_minima(ref, atoms, c)
            # the teacher against itself: its Hessian is the one in the record (no second, identical Hessian)
            runs = [compare_at_minimum(rec, model_hessian_fn=(lambda a, h=rec["hessian"]: h) if subject is ref
                                       else subject.hessian) for rec in records]
            res = {**frequency_suite(runs), "runs": runs}  # mean, standard error and n over the structures
        elif ev == "phonons":
            from ..evaluation.phonons import phonon_comparison, phonon_suite

            pool = phonon_structures(atoms, c["n_structures"])
            kw = {k: v for k, v in c.items() if k != "n_structures"}
            kw["mesh"] = tuple(kw["mesh"])
            runs = [phonon_comparison(a, subject.calc, ref.calc, **kw) for a in pool]
            res = {**phonon_suite(runs), "runs": runs,
                   "note": None if pool else "no periodic structure in the split: no phonons"}
        elif ev == "md":
            from ..evaluation.md import find_bonds, md_stability_suite, training_reference

            kw = {k: v for k, v in c.items() if k not in ("n_structures", "bond_reference")}
            starts = atoms[: c["n_structures"]]
            refs = None
            if c["bond_reference"] == "training":  # the paper's: mean lengths over training frames, same composition
                with StructureStore(structures) as st:
                    train = [st.atoms("train", i) for i in range(st.n_structures("train"))] if "train" in st.splits else []
                bonds = [find_bonds(a) for a in starts]
                found = [training_reference(a, train, b) for a, b in zip(starts, bonds)]
                refs = [lengths for lengths, _ in found]
                kw["bonds"] = bonds
            elif c["bond_reference"] != "initial":
                raise HessdistillError(f"md bond_reference must be 'training' or 'initial', got {c['bond_reference']!r}")
            res = md_stability_suite(starts, subject.calc, reference_lengths=refs, **kw)
            if refs is not None:
                for r, (_, n_frames) in zip(res["runs"], found):
                    r["bond_reference"] = f"training ({n_frames} frames)" if n_frames else "initial (no training frame matches)"
        elif ev == "relax":
            from ..evaluation.relax import relax_comparison

            kw = {k: v for k, v in c.items() if k not in ("n_structures", "reference_calculator")}
            if c.get("reference_calculator"):  # the paper's re-scoring of the final geometries (CPU, float64)
                from ..teachers.calculator import reference_calculator

                rc = reference_calculator(c["reference_calculator"])
                # the teacher's geometries are re-scored once, by the teacher's own relax evaluation (there the model)
                kw |= {"reference_calc": rc.calc, "reference_info": rc.metadata(), "rescore_teacher": False}
            res = relax_comparison(atoms[: c["n_structures"]], subject.calc, ref.calc, **kw)
        else:  # speed
            from ..evaluation.speed import latency_sizes, speed_comparison, time_teacher
            from ..teachers.base import dtype_name

            pool = (atoms * (1 + c["n_structures"] // len(atoms)))[: c["n_structures"]]
            # latency at the subset's own sizes (smallest, median, largest) and at a supercell of >= large_atoms
            sizes = latency_sizes(atoms, large_atoms=c["large_atoms"])
            kw = {"batch_size": c["batch_size"], "repeats": c["repeats"], "warmup": c["warmup"],
                  "warmup_batches": c["warmup_batches"], "device": subject.device, "latency_structures": sizes}
            # like for like: the teacher is timed in the student's dtype (float32: its fastest mode); the dtype it
            # labelled in is reported beside
            if subject.kind == "student":
                want = dtype_name(next(subject.model.parameters()).dtype)
                timed = ref.teacher_in(want)
                fast = subject.fast_program(c["student_format"])
                res = speed_comparison(fast["program"], timed, pool, skin=c["skin"], **kw)
                res |= {"student_dtype": want, "teacher_label_dtype": dtype_name(ref.teacher.dtype),
                        "student_format": fast["format"], "export_s": fast["export_s"], "student_note": fast["note"]}
            else:
                timed = subject.teacher_in("float32")
                res = {"teacher": time_teacher(timed, pool, **kw), "speedup_latency": 1.0, "speedup_throughput": 1.0,
                       "teacher_label_dtype": dtype_name(subject.teacher.dtype)}
            res["teacher_dtype"] = dtype_name(timed.dtype)
        res = {**meta, "evaluation": ev, "protocol": c, "wall_s": time.perf_counter() - t0, **res}
        write_json(out / f"{ev}.json", res)
        results[ev] = res
        log.info("%s: %s done in %.1f s", subject.name, ev, res["wall_s"])
    return results


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
    p.add_argument("--evaluations", nargs="+", default=list(EVALUATIONS))
    p.add_argument("--config", help="YAML/JSON overriding evaluation protocol settings")
    p.add_argument("--device", default="cpu")
    p.add_argument("--minima", help="teacher minima (minima.h5) for vibrations, made once by --make-minima")
    p.add_argument("--make-minima", metavar="PATH",
                   help="only relax the vibrations structures with --teacher and write them and its Hessians to PATH")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    from .prepare import load_spec

    try:
        cfg = load_spec(args.config) if args.config else None
        subject = _Subject(model_path=args.model, teacher=args.teacher, device=args.device, dtype=args.teacher_dtype)
        if args.make_minima:
            if subject.kind != "teacher":
                raise HessdistillError("--make-minima relaxes with a teacher: pass --teacher NAME, not --model")
            print(json.dumps(make_minima(subject, args.structures, args.make_minima, config=cfg), default=str))
            return 0
        ref = None
        if args.reference_teacher:
            ref = subject if args.teacher == args.reference_teacher else _Subject(
                teacher=args.reference_teacher, device=args.device, dtype=args.teacher_dtype)
        res = run_evaluations(subject, args.structures, args.out, evaluations=args.evaluations, labels=args.labels,
                              hessians=args.hessians, reference_teacher=ref, config=cfg, minima=args.minima)
    except HessdistillError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({k: {kk: v[kk] for kk in v if isinstance(v[kk], (int, float)) and not isinstance(v[kk], bool)}
                      for k, v in res.items()}, default=str)[:2000])
    return 0


if __name__ == "__main__":
    sys.exit(main())
