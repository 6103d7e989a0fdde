"""Cost of one training step: undistilled vs Hessian distillation (s = 1, 4, 16) vs random projections.

    python bench/training_cost.py [--students painn gemnet] [--structures ethanol si16] [--batch 8]

For each student (default: the paper's small PaiNN and GemNet-dT, plus their conservative variants) and
batch (8 rattled ethanol molecules; 4 rattled 16-atom Si cells), it times a full optimisation step
(forward, forces, loss, backward, AdamW step) with:

- ``undistilled``: energy + force loss only;
- ``hessian s=k``: plus the Hessian term with k multi-hot cotangents (k VJPs with create_graph per batch);
- ``projection s=4``: plus the random-projection term (4 dense Gaussian probes per structure).

and prints the median step time and its ratio to the undistilled step, measured in one process.  The
Hessian targets are random numbers of the right shape: the cost does not depend on their values.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import numpy as np
import torch
from ase.build import bulk, molecule

from hessdistill.core.graphs import atoms_to_data, collate
from hessdistill.students import build_student
from hessdistill.training.losses import LossWeights, compute_loss

STUDENTS = {
    "painn": {"arch": "painn"},
    "painn-direct": {"arch": "painn", "direct_forces": True},
    "gemnet-dT": {"arch": "gemnet", "direct_forces": True},
    "gemnet-T": {"arch": "gemnet", "direct_forces": False},
}


def structures(name, n):
    rng = np.random.default_rng(0)
    out = []
    for _ in range(n):
        a = molecule("CH3CH2OH") if name == "ethanol" else bulk("Si", "diamond", a=5.43, cubic=True).repeat((2, 1, 1))
        a.positions += rng.normal(scale=0.05, size=a.positions.shape)
        out.append(a)
    return out


def make_batch(atoms, cutoff, dtype, s, mode, rng):
    data = []
    for a in atoms:
        d = atoms_to_data(a, cutoff, dtype=dtype, energy=0.0, forces=np.zeros((len(a), 3)))
        data.append(d)
    b = collate(data)
    if mode == "undistilled":
        return b
    n = b.pos.shape[0]
    ptr = b.ptr.numpy()
    cot = np.zeros((s, n, 3))
    weight = np.zeros((s, n))
    for m in range(len(atoms)):
        a0, a1 = ptr[m], ptr[m + 1]
        if mode == "projection":
            cot[:, a0:a1] = rng.standard_normal((s, a1 - a0, 3))
        else:
            coords = rng.choice(3 * (a1 - a0), size=s, replace=False)
            cot[np.arange(s), a0 + coords // 3, coords % 3] = 1.0
        weight[:, a0:a1] = 1.0 / s
    b.hess_cot = torch.tensor(cot, dtype=dtype)
    b.hess_target = torch.tensor(rng.standard_normal((s, n, 3)), dtype=dtype)
    b.hess_weight = torch.tensor(weight, dtype=dtype)
    return b


def time_step(model, batch_fn, weights, squared, repeats, warmup=2, vjp="loop"):
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, amsgrad=True)
    ts = []
    for r in range(warmup + repeats):
        batch = batch_fn()
        t0 = time.perf_counter()
        loss, _, _ = compute_loss(model, batch, weights, squared_hessian=squared, vjp_method=vjp)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if batch.pos.is_cuda:
            torch.cuda.synchronize()
        if r >= warmup:
            ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--students", nargs="+", default=list(STUDENTS))
    p.add_argument("--structures", nargs="+", default=["ethanol", "si16"])
    p.add_argument("--batch", type=int, default=None, help="structures per batch (default 8 ethanol / 4 Si16)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="float32")
    p.add_argument("--vjp", default="loop", choices=["loop", "batched"], help="how the s student VJPs are taken")
    args = p.parse_args(argv)
    dtype = {"float32": torch.float32, "float64": torch.float64}[args.dtype]
    dev = torch.device(args.device)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {dev}, {args.dtype}, VJPs: {args.vjp}")
    modes = [
        ("undistilled", 0, False),
        ("hessian s=1", 1, False),
        ("hessian s=4", 4, False),
        ("hessian s=16", 16, False),
        ("projection s=4", 4, True),
    ]
    print(f"{'student':14} {'params':>9} {'batch':10} " + " ".join(f"{m:>15}" for m, _, _ in modes))
    for sname in args.students:
        torch.manual_seed(0)
        model = build_student(STUDENTS[sname]).to(device=dev, dtype=dtype)
        for st in args.structures:
            n = args.batch or (8 if st == "ethanol" else 4)
            atoms = structures(st, n)
            rng = np.random.default_rng(1)
            times = {}
            for label, s, squared in modes:
                mode = "undistilled" if s == 0 else ("projection" if squared else "rows")
                w = LossWeights(energy=5, forces=100, hessian=0.0 if s == 0 else 400.0)
                times[label] = time_step(
                    model,
                    # called only inside this iteration: the current loop values are bound explicitly
                    lambda atoms=atoms, model=model, s=s, mode=mode, rng=rng: make_batch(
                        atoms, model.cutoff, dtype, s, mode, rng
                    ).to(dev),
                    w,
                    squared,
                    args.repeats,
                    vjp=args.vjp,
                )
            base = times["undistilled"]
            cells = [f"{1e3 * base:8.0f} ms   "] + [
                f"{1e3 * times[m]:6.0f}ms x{times[m] / base:4.1f}" for m, _, _ in modes[1:]
            ]
            print(
                f"{sname:14} {model.n_params:9d} {st + ' x' + str(n):10} " + " ".join(f"{c:>15}" for c in cells),
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
