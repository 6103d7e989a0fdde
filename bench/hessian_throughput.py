"""Hessian-row throughput of the offline teachers: loop VJP vs batched VJP vs finite differences.

    python bench/hessian_throughput.py [--teachers chgnet sevenn] [--device cpu] [--dtype float32] [--rows 12]

For each teacher and structure (a 9-atom molecule and crystals of 16 and 64 atoms) it measures, in one
process, the median over repeats of:

- ``E+F``: one energy+forces call (the unit of cost);
- ``fwd+graph``: one forward that keeps a differentiable force graph (what Hessian rows start from);
- ``loop``: VJP rows one at a time on that graph (rows/s, graph building excluded, then included);
- ``batched``: the same rows with ``is_grads_batched`` (vmap) in chunks;
- ``FD``: central finite differences of forces (2 E+F calls per row).

and prints rows/s plus the cost of one row relative to one E+F call.  The floor for autograd is about
2-3 force calls per row (a VJP through a graph that itself holds a backward pass).  Ratios, not absolute
times, are the result: this machine is noisy.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import numpy as np
import torch
from ase.build import bulk, molecule

from hessdistill.core import hessian as hess
from hessdistill.teachers import load_teacher


def structures():
    rng = np.random.default_rng(0)
    mol = molecule("CH3CH2OH")  # 9 atoms
    si16 = bulk("Si", "diamond", a=5.43, cubic=True).repeat((2, 1, 1))
    si64 = bulk("Si", "diamond", a=5.43, cubic=True).repeat((2, 2, 2))
    for a in (mol, si16, si64):
        a.positions += rng.normal(scale=0.04, size=a.positions.shape)
    return {"ethanol (9)": mol, "Si16": si16, "Si64": si64}


def timed(fn, repeats, device):
    ts = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        out = fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts), out


def bench_one(teacher, atoms, n_rows, repeats, chunk):
    rows = np.arange(min(n_rows, 3 * len(atoms)))
    dev = teacher.device
    teacher.energy_forces(atoms)  # warm-up (graph caches, allocators, lazy init)
    t_ef, _ = timed(lambda: teacher.energy_forces(atoms), repeats, dev)
    t_fwd, _ = timed(lambda: teacher.forward(atoms, create_graph=True), repeats, dev)
    res = {"n_atoms": len(atoms), "rows": len(rows), "t_ef": t_ef, "t_fwd_graph": t_fwd}

    def rows_with(method):
        r = teacher.forward(atoms, create_graph=True)
        t0 = time.perf_counter()
        out = hess.force_jacobian_rows(
            r.forces, r.positions, rows, method=method, chunk_size=chunk, key=f"bench-{method}"
        )
        if dev.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t0, out

    ref = None
    for method in ("loop", "batched"):
        try:
            rows_with(method)  # warm-up
            ts = [rows_with(method) for _ in range(repeats)]
            t = statistics.median(x[0] for x in ts)
            out = ts[0][1].detach().cpu().numpy()
            if ref is None:
                ref = out
            else:
                res[f"{method}_max_dev_from_loop"] = float(np.abs(out - ref).max())
            res[f"{method}_rows_per_s"] = len(rows) / t
            res[f"{method}_row_cost_in_EF"] = t / len(rows) / t_ef
            res[f"{method}_row_cost_incl_graph_in_EF"] = (t + t_fwd) / len(rows) / t_ef
        except RuntimeError as exc:
            res[f"{method}_error"] = str(exc)[:120]
    fd_rows = rows[: max(1, min(4, len(rows)))]
    t_fd, _ = timed(
        lambda: hess.finite_difference_columns(
            lambda p: _forces(teacher, atoms, p), atoms.positions, fd_rows, step=1e-3
        ),
        1,
        dev,
    )
    res["fd_rows_per_s"] = len(fd_rows) / t_fd
    res["fd_row_cost_in_EF"] = t_fd / len(fd_rows) / t_ef
    return res


def _forces(teacher, atoms, pos):
    a = atoms.copy()
    a.set_positions(pos)
    return teacher.energy_forces(a)[1]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--teachers", nargs="+", default=["chgnet", "sevenn"])
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="float32")
    p.add_argument("--rows", type=int, default=12)
    p.add_argument("--chunk", type=int, default=12)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--structures", nargs="+", default=None, help="subset of: 'ethanol (9)' Si16 Si64")
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args(argv)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {args.device}, {args.dtype}")
    all_res = []
    hdr = (
        f"{'teacher':8} {'structure':12} {'N':>3} {'E+F ms':>8} {'fwd+g ms':>9} {'loop r/s':>9} {'batch r/s':>10} "
        f"{'FD r/s':>8} {'row/EF loop':>11} {'incl.graph':>10} {'row/EF batch':>12} {'row/EF FD':>9}"
    )
    print(hdr)
    for name in args.teachers:
        teacher = load_teacher(name, device=args.device, dtype=args.dtype)
        for sname, atoms in structures().items():
            if args.structures and sname not in args.structures:
                continue
            r = bench_one(teacher, atoms, args.rows, args.repeats, args.chunk)
            r.update(teacher=name, structure=sname)
            all_res.append(r)
            print(
                f"{name:8} {sname:12} {r['n_atoms']:>3} {1e3 * r['t_ef']:8.1f} {1e3 * r['t_fwd_graph']:9.1f} "
                f"{r.get('loop_rows_per_s', float('nan')):9.1f} {r.get('batched_rows_per_s', float('nan')):10.1f} "
                f"{r['fd_rows_per_s']:8.1f} {r.get('loop_row_cost_in_EF', float('nan')):11.2f} "
                f"{r.get('loop_row_cost_incl_graph_in_EF', float('nan')):10.2f} "
                f"{r.get('batched_row_cost_in_EF', float('nan')):12.2f} {r['fd_row_cost_in_EF']:9.2f}",
                flush=True,
            )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(all_res, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
