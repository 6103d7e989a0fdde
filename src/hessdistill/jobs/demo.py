"""The main job until the workflow exists: teacher Hessians on built-in structures, checked.

    python -m hessdistill.jobs.demo [--out results/demo] [--teacher chgnet]

Builds a small structure store (rattled diamond Si and rock-salt MgO cells, rattled small molecules), labels
it with an offline teacher whose weights ship in its wheel (full Hessians for every structure, in float64),
then checks the physics of what it stored: symmetry of H, the translation sum rule, and a spot check of
stored rows against central finite differences of the teacher's forces.  Writes the stores and
``summary.json`` to ``--out`` and prints a table.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from ase.build import bulk, molecule

from ..core import hessian as hess
from ..core.atomic import atomic_write_text


def demo_structures(seed: int = 0) -> dict[str, list]:
    """A handful of small, rattled, unlabeled structures: two crystals and two molecules per split."""
    rng = np.random.default_rng(seed)
    out = {"train": [], "test": []}
    for split, reps in (("train", 2), ("test", 1)):
        for _ in range(reps):
            si = bulk("Si", "diamond", a=5.43 * rng.uniform(0.98, 1.02), cubic=True)
            mgo = bulk("MgO", "rocksalt", a=4.21 * rng.uniform(0.98, 1.02))
            h2o = molecule("H2O")
            etoh = molecule("CH3CH2OH")
            for a in (si, mgo, h2o, etoh):
                a.positions += rng.normal(scale=0.05, size=a.positions.shape)
                out[split].append(a)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="results/demo")
    p.add_argument("--teacher", default="chgnet")
    p.add_argument("--dtype", default="float64")
    p.add_argument("--fd-rows", type=int, default=2, help="rows per structure checked against finite differences")
    args = p.parse_args(argv)

    from ..data.labels import HessianStore, LabelStore
    from ..data.store import StructureStore, write_structures
    from ..teachers import load_teacher
    from .label import run_labelling

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    structures = write_structures(
        out / "structures.h5",
        demo_structures(),
        labels="none",
        require_labels=False,
        attrs={"source": "hessdistill.jobs.demo.demo_structures", "seed": 0},
    )
    teacher = load_teacher(args.teacher, dtype=args.dtype, device="cpu")
    print(f"teacher: {teacher!r}")
    summary = run_labelling(
        structures,
        teacher,
        out / "labels.h5",
        hessians_out=out / "hessians.h5",
        rows_per_structure="full",
        chunk_size=4,
    )
    rows = []
    with StructureStore(structures) as st, HessianStore(out / "hessians.h5") as hs, LabelStore(out / "labels.h5") as ls:
        for split in hs.splits:
            wall = ls.arrays(split)["wall_time"]
            for i in range(hs.n_structures(split)):
                atoms = st.atoms(split, i)
                H = hs.full(split, i)
                cols = np.arange(min(args.fd_rows, 3 * len(atoms)))

                def forces(pos, atoms=atoms):
                    a = atoms.copy()
                    a.set_positions(pos)
                    return teacher.energy_forces(a)[1]

                # CHGNet's curvature varies fast: FD needs h <= 3e-4 Å for 1e-4 agreement (see the teacher tests)
                fd = hess.finite_difference_columns(forces, atoms.get_positions(), cols, step=1e-4, order=4)
                fd_err = float(np.abs(fd - H[cols]).max() / max(np.abs(H[cols]).max(), 1e-12))
                rows.append(
                    {
                        "split": split,
                        "index": i,
                        "formula": atoms.get_chemical_formula(),
                        "n_atoms": len(atoms),
                        "periodic": bool(atoms.pbc.any()),
                        "teacher_seconds": float(wall[i]),
                        "symmetry_error": hess.symmetry_error(H),
                        "translation_sum_max": float(np.abs(hess.translation_sum(H)).max()),
                        "fd_rel_error": fd_err,
                        "max_abs_H": float(np.abs(H).max()),
                    }
                )
    print(
        f"{'split':6} {'#':>2} {'formula':10} {'N':>3} {'pbc':>4} {'time/s':>7} {'|H-Ht|/|H|':>11} {'max|sum_j H|':>13} {'FD rel err':>11}"
    )
    for r in rows:
        print(
            f"{r['split']:6} {r['index']:>2} {r['formula']:10} {r['n_atoms']:>3} {str(r['periodic'])[0]:>4} "
            f"{r['teacher_seconds']:7.2f} {r['symmetry_error']:11.2e} {r['translation_sum_max']:13.2e} {r['fd_rel_error']:11.2e}"
        )
    report = {
        "teacher": teacher.metadata(),
        "labelling": summary,
        "structures": rows,
        "created": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    atomic_write_text(out / "summary.json", json.dumps(report, indent=1, default=str))
    worst = max(r["fd_rel_error"] for r in rows)
    print(f"wrote {out}/structures.h5, labels.h5, hessians.h5, summary.json; worst FD relative error {worst:.1e}")
    return 0 if worst < 1e-4 else 1


if __name__ == "__main__":
    sys.exit(main())
