"""The built-in offline dataset as a job: load the teacher, generate, split by trajectory, write the store.

    python -m hessdistill.jobs.generate --family perovskites --teacher chgnet --out results/builtin/structures.h5

The generator itself (:mod:`hessdistill.data.builtin`) takes the teacher as an ASE calculator; this job loads
the teacher (:func:`hessdistill.teachers.load_teacher`), wraps it in
:class:`~hessdistill.teachers.calculator.TeacherCalculator` and records ``labels = "teacher:<name>:<version>"``
with the teacher's version and dtype.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from ..core.errors import HessdistillError
from ..data.builtin import GeneratorSettings, build_store, settings_from_options

__all__ = ["main", "run"]


def run(out, teacher, settings: GeneratorSettings | None = None, *, fractions=None, split_seed: int = 0, progress=None):
    """Generate the built-in dataset with ``teacher`` (a loaded :class:`~hessdistill.teachers.Teacher`), split it
    (``fractions``, default 0.7/0.1/0.2, grouped by trajectory) and write the store ``out``; return its path."""
    from ..teachers.calculator import TeacherCalculator

    meta = teacher.metadata()
    return build_store(
        out,
        TeacherCalculator(teacher),
        settings,
        labels=f"teacher:{meta['teacher']}",
        attrs={"teacher_version": meta["teacher_version"], "teacher_dtype": meta["teacher_dtype"]},
        fractions=fractions,
        split_seed=split_seed,
        progress=progress,
    )


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m hessdistill.jobs.generate",
        description="Generate a built-in offline dataset labelled by an offline teacher.",
    )
    p.add_argument("--family", default="perovskites", choices=["perovskites", "molecules"])
    p.add_argument("--teacher", default="chgnet")
    p.add_argument("--dtype", default="float32", help="teacher dtype used for sampling and labels")
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--split-seed", type=int, default=0)
    p.add_argument("--settings", default="{}", help="JSON dict overriding GeneratorSettings fields")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    from ..teachers import load_teacher

    try:
        overrides = json.loads(args.settings)
        s = settings_from_options(args.family, seed=args.seed, **overrides)
        teacher = load_teacher(args.teacher, device=args.device, dtype=args.dtype)
        t0 = time.perf_counter()
        path = run(args.out, teacher, s, split_seed=args.split_seed)
    except HessdistillError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {path} ({args.family}, teacher {args.teacher}) in {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
