"""The teacher's minima of the vibrations evaluation, made once per subset and teacher and read by every
vibrations evaluation of its models.

    python -m hessdistill.jobs.minima --teacher NAME --structures S.h5 --out minima.h5 \\
        [--config eval.yaml] [--teacher-dtype float64] [--device cpu]

The teacher relaxes the vibrations structures of the split (:func:`hessdistill.evaluation.vibrations.teacher_minima`)
and its Hessians there are stored with the protocol that decided them
(:func:`hessdistill.evaluation.vibrations.save_minima`); an evaluation with other settings refuses them.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time

from ..core.errors import HessdistillError
from ..evaluation.protocols import merge_config


def run(teacher, structures, out_path, *, config=None) -> dict:
    """Relax the vibrations pool of ``structures`` (the configured split) with ``teacher`` (a
    :class:`~hessdistill.teachers.Teacher`) and store the minima and its Hessians at ``out_path``; ``config``:
    overrides of :data:`hessdistill.evaluation.protocols.DEFAULTS`.  Returns the meta written beside them."""
    from ..data.store import StructureStore
    from ..evaluation.vibrations import minima_protocol, save_minima, teacher_minima

    cfg = merge_config(config)
    split = cfg["split"]
    with StructureStore(structures) as st:
        atoms = [st.atoms(split, i) for i in range(st.n_structures(split))]
    if not atoms:
        raise HessdistillError(f"split {split!r} of {structures} is empty: no structure to relax for vibrations")
    t0 = time.perf_counter()
    records = teacher_minima(teacher, atoms, cfg["vibrations"])
    meta = {
        **minima_protocol(cfg["vibrations"], split, teacher),
        "structures": str(structures),
        "n_failed": sum(1 for r in records if r["hessian"] is None),
        "wall_s": time.perf_counter() - t0,
    }
    save_minima(out_path, records, meta)
    return meta


def snakemake_job(smk, device=None) -> dict:
    """Rule teacher_minima: the teacher (``params.minima["reference_teacher"]`` in ``teacher_dtype``) relaxes the
    vibrations structures of ``input.structures`` once -> ``output[0]`` (vibrations_minima.h5).  ``device``: where
    this job runs (the workflow's job device for vibrations; jobs do not import the workflow layer), None for cpu.
    Prints and returns the meta written beside the minima."""
    import torch

    from ..teachers import teacher_from_spec

    p = smk.params.minima
    torch.set_num_threads(smk.threads)
    teacher = teacher_from_spec(p["reference_teacher"], device=device or "cpu", dtype=p["teacher_dtype"])
    meta = run(teacher, smk.input.structures, smk.output[0], config={"split": p["split"], "vibrations": p["protocol"]})
    print(json.dumps(meta, indent=1, default=str))
    return meta


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m hessdistill.jobs.minima", description=__doc__.split("\n\n")[0])
    p.add_argument("--teacher", required=True, help="teacher name (hessdistill.teachers.load_teacher)")
    p.add_argument("--structures", required=True)
    p.add_argument("--out", required=True, help="the minima file to write (minima.h5)")
    p.add_argument("--config", help="YAML/JSON overriding evaluation protocol settings (split, vibrations)")
    p.add_argument("--teacher-dtype", default="float64")
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    from ..core.devices import resolve_device
    from ..teachers import load_teacher
    from .prepare import load_spec

    try:
        cfg = load_spec(args.config) if args.config else None
        teacher = load_teacher(args.teacher, device=str(resolve_device(args.device)), dtype=args.teacher_dtype)
        print(json.dumps(run(teacher, args.structures, args.out, config=cfg), default=str))
    except HessdistillError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
