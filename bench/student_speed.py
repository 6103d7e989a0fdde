"""Student vs teacher per MD step and in batches, 5 to 625 atoms, one process: the ratios behind "many times faster".

    python bench/student_speed.py [--model results/<subset>/runs/chgnet/<run>/model.pt] [--teacher chgnet]
                                  [--structures results/<subset>/data/structures.h5] [--device cpu]

Student: the checkpoint given, else the embedded default's PaiNN (hidden 48, 3 layers, 16 radial functions, cutoff
4.5 Å) with random weights (time does not depend on the weights).  Structures: supercells (1x1x1 to 5x5x5 and a
few between) of the subset's smallest test structure, else of a cubic BaZrO3 cell, rattled by 0.05 Å.

Printed per size (after warm-up on that size, median of ``--repeats`` calls, positions moving 0.005 Å per call as
in MD so that Verlet lists are used as in MD):

- the student per MD step on four paths: ``ase-calc`` (``StudentCalculator``: graph and torch-geometric batch
  rebuilt every call, the path before the fast path existed), ``eager`` (the model on plain tensors with a Verlet
  list), ``torchscript`` and ``aoti`` (the exported files, see ``hessdistill export``);
- the teacher per MD step in float32 (its fastest mode here), and the ratio teacher / student for each path;
- the student model time against its multiply-add count: the multiply-adds of one energy+forces evaluation
  (matrix products m n k, pointwise ops, gathers and scatters one per element; counted by a dispatch mode), as
  2 FLOP each at this machine's measured float32 matmul rate (a 512 x 512 product), give the time the arithmetic
  needs ("ideal"); "aoti/ideal" is how far above it the compiled step runs.

Then batched throughput (structures/s) for batches of the subset-sized cells and of the largest size, the student
(AOTI program, one call per batch) against the teacher in its own batched mode (``teacher.batched``).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPS = [(1, 1, 1), (2, 2, 2), (3, 3, 3), (4, 4, 4), (5, 5, 5)]
DEFAULT_STUDENT = {
    "arch": "painn",
    "hidden": 48,
    "num_layers": 3,
    "num_rbf": 16,
    "cutoff": 4.5,
    "avg_num_neighbors": 30.0,
}


def base_structure(path):
    from ase import Atoms

    if path:
        from hessdistill.data.store import StructureStore

        with StructureStore(path) as st:
            split = "test" if "test" in st.splits else st.splits[0]
            cands = [st.atoms(split, i) for i in range(st.n_structures(split))]
        cands = [a for a in cands if a.pbc.all()] or cands
        return min(cands, key=len)
    frac = [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]]
    return Atoms(["Ba", "Zr", "O", "O", "O"], scaled_positions=frac, cell=np.eye(3) * 4.19, pbc=True)


def timed(fn, repeats, warmup=3, budget_s=0.5):
    """Median time of ``fn`` after ``warmup`` calls (and at least ``budget_s`` of warm-up: fast calls get many),
    over at least ``repeats`` calls (and ``budget_s``)."""
    t_end = time.perf_counter() + budget_s
    k = 0
    while k < warmup or time.perf_counter() < t_end:
        fn()
        k += 1
    ts = []
    t_end = time.perf_counter() + budget_s
    while len(ts) < repeats or time.perf_counter() < t_end:
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def matmul_rate(repeats=20):
    a, b = torch.randn(512, 512), torch.randn(512, 512)
    t = timed(lambda: a @ b, repeats, warmup=5)
    return 2 * 512**3 / t


_MATMUL = {"mm", "addmm", "bmm", "baddbmm"}
_POINTWISE = {
    "mul",
    "add",
    "sub",
    "div",
    "addcmul",
    "exp",
    "silu",
    "silu_backward",
    "sigmoid",
    "sqrt",
    "pow",
    "where",
    "neg",
    "rsub",
    "sum",
    "index_add",
    "index_select",
    "scatter_add",
    "softplus",
    "tanh",
}


class MacCounter(torch.utils._python_dispatch.TorchDispatchMode):
    """Multiply-adds of the ATen ops run: m n k per matrix product, one per output element of pointwise ops
    (and of the gathers/scatters and reductions that move each element once)."""

    def __init__(self):
        super().__init__()
        self.matmul = 0
        self.pointwise = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        name = func.overloadpacket.__name__.rstrip("_")
        if name in _MATMUL:
            a, b = (args[1], args[2]) if name in ("addmm", "baddbmm") else (args[0], args[1])
            self.matmul += a.numel() * b.shape[-1]
        elif name in _POINTWISE:
            tensors = [o for o in (out if isinstance(out, (tuple, list)) else [out]) if isinstance(o, torch.Tensor)]
            src = [x for x in args if isinstance(x, torch.Tensor)]
            self.pointwise += max([t.numel() for t in tensors + src] or [0])
        return out


def model_macs(model, atoms):
    """(matmul, pointwise) multiply-adds of one energy+forces evaluation (forward and force backward)."""
    from hessdistill.core.graphs import atoms_to_data, collate

    b = collate([atoms_to_data(atoms, model.cutoff, dtype=torch.float32, student=model)])
    b.pos.requires_grad_(True)
    with MacCounter() as mc:
        model(b, create_graph=False)
    return mc.matmul, mc.pointwise


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", help="student checkpoint (default: the embedded default's PaiNN, random weights)")
    p.add_argument("--teacher", default="chgnet")
    p.add_argument("--structures", help="a subset's structures.h5 (default: a cubic BaZrO3 cell)")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--sizes", type=int, default=len(REPS), help="time the first this many supercells")
    p.add_argument("--skip-paths", nargs="*", default=[], help="student paths not to time (ase-calc eager torchscript)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    from hessdistill.core.neighbours import VerletList
    from hessdistill.evaluation.speed import Walk
    from hessdistill.students import build_student
    from hessdistill.students.calculator import StudentCalculator, load_student
    from hessdistill.students.deployed import EagerProgram, Runner
    from hessdistill.students.export import export_student, load_exported
    from hessdistill.teachers import load_teacher

    if args.model:
        model, _ = load_student(args.model, device=args.device)
    else:
        torch.manual_seed(0)
        model = build_student(DEFAULT_STUDENT).float().eval().to(args.device)
    teacher = load_teacher(args.teacher, device=args.device, dtype="float32")
    base = base_structure(args.structures)
    tmp = Path(tempfile.mkdtemp(prefix="hessdistill-bench-"))
    t0 = time.perf_counter()
    export_student(model, tmp / "s.pt2", device=args.device)
    t_aoti = time.perf_counter() - t0
    export_student(model, tmp / "s.pt", device=args.device)
    programs = {
        "eager": EagerProgram(model),
        "torchscript": load_exported(tmp / "s.pt", device=args.device),
        "aoti": load_exported(tmp / "s.pt2", device=args.device),
    }
    rate = matmul_rate()
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.device}; student {model.arch} "
        f"{model.n_params:,} parameters, cutoff {model.cutoff} Å; teacher {args.teacher} float32 "
        f"(batched mode: {bool(getattr(teacher, 'batched', False))}); base cell {base.get_chemical_formula()}; "
        f"AOTI export {t_aoti:.0f} s; float32 matmul rate {rate / 1e9:.1f} GFLOP/s"
    )
    paths = [k for k in ("ase-calc", "eager", "torchscript", "aoti") if k not in args.skip_paths]
    head = f"{'atoms':>6} {'pairs':>7} {'teacher ms':>10} " + " ".join(f"{k + ' ms':>14}" for k in paths)
    head += " " + " ".join(f"{'x ' + k:>13}" for k in paths) + f" {'ideal ms':>9} {'aoti/ideal':>10}"
    print(head)
    rng = np.random.default_rng(0)
    cells = []
    for reps in REPS[: args.sizes]:
        a = base.repeat(reps)
        a.positions += rng.normal(scale=0.05, size=a.positions.shape)
        cells.append(a)

    def student_step(k, a):
        walk = Walk(a, 0.005, seed=2)
        if k == "ase-calc":
            calc, c = StudentCalculator(model, device=args.device), a.copy()

            def step():
                c.positions = walk()
                calc.calculate(c, ["energy", "forces"])

            return step
        runner = Runner(programs[k], [a.numbers], [a.cell.array], [a.pbc], device=args.device)
        return lambda: runner(walk())

    def teacher_step(a):
        walk, b = Walk(a, 0.005, seed=1), a.copy()

        def step():
            b.positions = walk()
            teacher.energy_forces(b)

        return step

    # the compiled program first, over all sizes: its OpenMP threads and those of eager torch (teacher, other
    # paths) compete on few cores when interleaved, which slows whichever runs second (a user runs one of them)
    times = {k: [] for k in paths}
    order = (["aoti"] if "aoti" in paths else []) + ["teacher"] + [k for k in paths if k != "aoti"]
    times["teacher"] = []
    for k in order:
        for a in cells:
            times[k].append(timed(teacher_step(a) if k == "teacher" else student_step(k, a), args.repeats))
    worst = None
    for n, a in enumerate(cells):
        n_pairs = len(VerletList(model.cutoff, 0.0).pairs(a.positions, a.cell.array, a.pbc)[0])
        macs = model_macs(model, a)
        ideal = 2 * sum(macs) / rate
        t_teacher = times["teacher"][n]
        ratio = {k: t_teacher / times[k][n] for k in paths}
        if "aoti" in ratio:
            worst = ratio["aoti"] if worst is None else min(worst, ratio["aoti"])
        aoti = times["aoti"][n] if "aoti" in times else float("nan")
        print(
            f"{len(a):6d} {n_pairs:7d} {1e3 * t_teacher:10.1f} "
            + " ".join(f"{1e3 * times[k][n]:14.2f}" for k in paths)
            + " "
            + " ".join(f"{ratio[k]:12.1f}x" for k in paths)
            + f" {1e3 * ideal:9.2f} {aoti / ideal:10.1f}",
            flush=True,
        )
    if worst is not None:
        print(f"smallest teacher / student (aoti) latency ratio over sizes: {worst:.1f}x")

    print(f"\nbatched throughput (structures/s), batches of {args.batch}")
    for reps in (REPS[0], REPS[1]):
        batch = []
        for _ in range(args.batch):
            a = base.repeat(reps)
            a.positions += rng.normal(scale=0.05, size=a.positions.shape)
            batch.append(a)
        runner = Runner(
            programs["aoti"],
            [a.numbers for a in batch],
            [a.cell.array for a in batch],
            [a.pbc for a in batch],
            device=args.device,
        )
        walks = [Walk(a, 0.005, seed=k) for k, a in enumerate(batch)]
        t_s = timed(lambda runner=runner, walks=walks: runner([w() for w in walks]), args.repeats)
        t_t = timed(lambda batch=batch: teacher.energy_forces_batched(batch), max(3, args.repeats // 2), warmup=2)
        print(
            f"  {len(batch[0]):4d} atoms x {args.batch}: student {args.batch / t_s:9.1f}  teacher "
            f"{args.batch / t_t:7.1f}  ratio {t_t / t_s:6.1f}x"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
