"""Evidence for the method on the built-in dataset: the same student trained undistilled and with Hessian
distillation for the same budget, tested against the teacher.

    python bench/distill_vs_undistilled.py --structures S.h5 --labels L.h5 --hessians H.h5 --out DIR \\
        [--epochs 30] [--student '{"arch": "painn", ...}'] [--methods undistilled hessian]

Both runs share every setting (student, seed, optimiser, epochs) except the loss; the table reports test
energy/force MAE against the reference labels (here the teacher's own labels), the Hessian MAE against the
teacher's stored rows, and the wall time of each run.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--structures", required=True)
    p.add_argument("--labels", required=True)
    p.add_argument("--hessians", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument(
        "--student",
        default='{"arch": "painn", "hidden": 64, "num_layers": 3, "num_rbf": 20, '
        '"cutoff": 5.0, "avg_num_neighbors": "auto"}',
    )
    p.add_argument("--methods", nargs="+", default=["undistilled", "hessian"])
    p.add_argument("--rows", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--threads", type=int, default=None, help="torch threads per run")
    p.add_argument("--weights", default="{}", help="JSON loss-weight overrides, e.g. '{\"hessian\": 100}'")
    args = p.parse_args(argv)
    from hessdistill.evaluation.accuracy import accuracy_from_stores
    from hessdistill.students.checkpoint import load_student
    from hessdistill.students.evaluated import student_hessian_rows_fn, student_predictor
    from hessdistill.training import train

    out = Path(args.out)
    rows = []
    for method in args.methods:
        cfg = {
            "student": json.loads(args.student),
            "method": method,
            "weights": json.loads(args.weights),
            "rows_per_structure": args.rows,
            "max_epochs": args.epochs,
            "seed": args.seed,
            "batch_size": args.batch_size,
            "lr": args.lr,
            "device": "cpu",
            "dtype": "float32",
            "threads": args.threads,
        }
        s = train(cfg, args.structures, out / method, labels=args.labels, hessians=args.hessians, progress=False)
        model, _ = load_student(out / method / "model.pt")
        acc = accuracy_from_stores(
            student_predictor(model),
            args.structures,
            split="test",
            labels=args.labels,
            hessians=args.hessians,
            hessian_rows_fn=student_hessian_rows_fn(model),
            max_hessian_structures=30,
        )
        rows.append({"method": method, "train_time_s": s["train_time_s"], "epochs": s["epochs"], **acc})
        (out / f"{method}_test.json").write_text(json.dumps(rows[-1], indent=1, default=str))
    print(
        f"{'method':12} {'epochs':>6} {'train s':>8} {'E MAE meV/at':>13} {'F MAE meV/Å':>14} {'Hess MAE meV/Å²':>16}"
    )
    for r in rows:
        print(
            f"{r['method']:12} {r['epochs']:>6} {r['train_time_s']:8.0f} "
            f"{r['teacher_energy_mae_meV_atom']:7.2f}±{r['teacher_energy_mae_meV_atom_se']:4.2f} "
            f"{r['teacher_force_mae_meV_A']:8.1f}±{r['teacher_force_mae_meV_A_se']:4.1f} "
            f"{r['hessian_mae_meV_A2']:10.0f}±{r['hessian_mae_meV_A2_se']:4.0f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
