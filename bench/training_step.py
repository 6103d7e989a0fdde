"""Training-step cost of the default student, undistilled and Hessian-distilled (s = 1, 4), new code vs old.

    python bench/training_step.py                       # this tree
    python bench/training_step.py --baseline-rev ec71ded  # and the same measurement on an older commit

The batch is what the embedded default trains on: 8 rattled perovskite cells (5 to 40 atoms), the default PaiNN
(hidden 48, 3 layers, 16 radial functions, cutoff 4.5 Å), float32, the default loss weights (λ_E = 5, λ_F = 100,
λ_H = 50).  One step = forward, forces, loss (with s student VJPs for the Hessian term), backward, AdamW step.
Median over ``--repeats`` steps after 3 warm-up steps on the same batch.  With ``--baseline-rev`` the same script
runs on that commit's library (a temporary git worktree) in a subprocess, alternating with this tree's, and the
ratios old/new are printed from the one run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STUDENT = {"arch": "painn", "hidden": 48, "num_layers": 3, "num_rbf": 16, "cutoff": 4.5, "avg_num_neighbors": 30.0}


def batch_structures(n=8, seed=0):
    import numpy as np
    from ase import Atoms

    rng = np.random.default_rng(seed)
    frac = [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]]
    out = []
    for k in range(n):
        a = Atoms(
            ["Sr", "Ti", "O", "O", "O"] if k % 2 else ["Ba", "Zr", "O", "O", "O"],
            scaled_positions=frac,
            cell=np.eye(3) * (3.95 + 0.2 * (k % 2)),
            pbc=True,
        )
        a = a.repeat([(1, 1, 1), (2, 1, 1), (2, 2, 1), (2, 2, 2)][k % 4])
        a.positions += rng.normal(scale=0.08, size=a.positions.shape)
        out.append(a)
    return out


def measure(repeats: int) -> dict:
    import numpy as np
    import torch

    from hessdistill.core.graphs import atoms_to_data, collate
    from hessdistill.students import build_student
    from hessdistill.training.losses import LossWeights, compute_loss

    torch.manual_seed(0)
    model = build_student(STUDENT).float()
    atoms = batch_structures()
    rng = np.random.default_rng(1)
    results = {}
    for s in (0, 1, 4):
        data = [
            atoms_to_data(a, model.cutoff, dtype=torch.float32, energy=0.0, forces=np.zeros((len(a), 3))) for a in atoms
        ]
        b = collate(data)
        if s:
            n = b.pos.shape[0]
            ptr = b.ptr.numpy()
            cot, weight = np.zeros((s, n, 3)), np.zeros((s, n))
            for m in range(len(atoms)):
                a0, a1 = ptr[m], ptr[m + 1]
                coords = rng.choice(3 * (a1 - a0), size=s, replace=False)
                cot[np.arange(s), a0 + coords // 3, coords % 3] = 1.0
                weight[:, a0:a1] = 1.0 / s
            b.hess_cot = torch.tensor(cot, dtype=torch.float32)
            b.hess_target = torch.tensor(rng.standard_normal((s, n, 3)), dtype=torch.float32)
            b.hess_weight = torch.tensor(weight, dtype=torch.float32)
        weights = LossWeights(energy=5, forces=100, hessian=50.0 if s else 0.0)
        try:  # the training loop's optimiser options where the library has them (training.loop in older versions)
            from hessdistill.training.config import OPTIMIZER_OPTIONS
        except ImportError:
            try:
                from hessdistill.training.loop import OPTIMIZER_OPTIONS
            except ImportError:
                OPTIMIZER_OPTIONS = {}
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4, amsgrad=True, **OPTIMIZER_OPTIONS)
        ts = []
        for r in range(3 + repeats):
            b.pos = b.pos.detach()
            t0 = time.perf_counter()
            loss, _, _ = compute_loss(model, b, weights)
            opt.zero_grad()
            loss.backward()
            opt.step()
            if r >= 3:
                ts.append(time.perf_counter() - t0)
        results["undistilled" if s == 0 else f"s={s}"] = 1e3 * statistics.median(ts)
    return results


def _run(src: Path, repeats: int) -> dict:
    env = {**os.environ, "PYTHONPATH": str(src)}
    out = subprocess.run(
        [sys.executable, __file__, "--child", "--repeats", str(repeats)],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--baseline-rev", help="also measure this git revision's library (e.g. a commit hash)")
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds new/old (medians of rounds)")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        import torch

        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
        print(json.dumps(measure(args.repeats)))
        return 0
    trees = {"new": ROOT / "src"}
    tmp = None
    if args.baseline_rev:
        tmp = tempfile.mkdtemp(prefix="hessdistill-baseline-")
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "add", "--detach", tmp, args.baseline_rev],
            check=True,
            capture_output=True,
        )
        trees["old"] = Path(tmp) / "src"
    try:
        rounds = {k: [] for k in trees}
        for _ in range(args.rounds):
            for k, src in trees.items():
                rounds[k].append(_run(src, args.repeats))
    finally:
        if tmp:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", tmp], check=False)
    med = {k: {m: statistics.median(r[m] for r in rs) for m in rs[0]} for k, rs in rounds.items()}
    print(f"default PaiNN {STUDENT}, batch of 8 perovskite cells (5-40 atoms), float32, median ms per step")
    for k, m in med.items():
        print(
            f"  {k:4}: "
            + "  ".join(f"{name} {t:7.1f} ms" for name, t in m.items())
            + f"   s=1 / undistilled = {m['s=1'] / m['undistilled']:.2f}"
        )
    if "old" in med:
        print(
            "  old / new (speed-up): "
            + "  ".join(f"{name} {med['old'][name] / med['new'][name]:.2f}x" for name in med["new"])
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
