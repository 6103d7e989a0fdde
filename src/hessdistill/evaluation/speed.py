"""Speed: teacher and student on the same structures, same device, one process, each in its fastest mode.

Two figures per model:

- **latency per MD step**: one structure, energy + forces, at every size asked for (``latency_structures``).
  Between calls the atoms move a little (a random walk of ``step_A`` Å per coordinate per call, about what a 1 fs
  MD step does), so the student's Verlet list does what it does in MD: a distance check per call and a new
  neighbour search only when some atom moved past half the skin.  Median of ``repeats`` calls after ``warmup``
  calls *on that size*: no timing includes a first call on a new shape.
- **throughput**: the structures in batches of ``batch_size`` (the paper's protocol, batch 32), structures/s,
  atoms/s and the paper's "ns/day" = structures/s x 0.0864 (one structure per 1 fs step).  Two warm-up rules:
  by default (``warmup_batches=None``) every batch is called ``warmup`` times before the timed passes (median of
  ``repeats // 2`` passes over all batches); with ``warmup_batches=k`` (the paper's: k = 3) the batches are run
  once, in order, with no other warm-up, and the first k are left out of the timing (throughput over the
  structures of the remaining batches, so n_structures must exceed k x batch_size).  ``warmup`` then still warms
  up the latency calls only.

Students run on the fast path a user runs (:mod:`hessdistill.deployed`: an exported program or the eager model on
plain tensors, Verlet lists, no torch-geometric batch per step).  Teachers run through their adapters, batched in
the model's own batched mode where the adapter has one (``teacher.batched``, recorded), in the dtype the caller
loaded them in (float32: their fastest).  Ratios > 1 mean the student is faster.
"""

from __future__ import annotations

import statistics
import time

import numpy as np
import torch


def _sync(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)  # the device timed, not the current one


def _median_time(fn, repeats, warmup, device):
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        fn()
        _sync(device)
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts), ts


class Walk:
    """Positions of a structure performing a small random walk (one step per call)."""

    def __init__(self, atoms, step_A: float, seed: int):
        self.x = np.array(atoms.positions, dtype=np.float64)
        self.x0 = self.x.copy()
        self.step = float(step_A)
        self.rng = np.random.default_rng(seed)

    def __call__(self):
        self.x = self.x + self.rng.normal(scale=self.step, size=self.x.shape)
        if np.abs(self.x - self.x0).max() > 0.1:  # stay near the structure (a thermal-like excursion)
            self.x = self.x0 + self.rng.normal(scale=self.step, size=self.x.shape)
        return self.x


def _latency_rows(make_call, structures, repeats, warmup, device):
    rows = []
    for k, a in enumerate(structures):
        call = make_call(a, k)
        lat, all_ = _median_time(call, repeats, max(warmup, 1), device)
        rows.append(
            {
                "n_atoms": len(a),
                "formula": a.get_chemical_formula(),
                "latency_ms": 1e3 * lat,
                "latency_ms_all": [1e3 * t for t in all_],
            }
        )
    return rows


def _check_warmup_batches(warmup_batches, n_batches, batch_size):
    if warmup_batches is not None and not 0 <= int(warmup_batches) < n_batches:
        raise ValueError(
            f"speed: warmup_batches {warmup_batches} leaves no timed batch of {n_batches}; use at least "
            f"n_structures = {(int(warmup_batches) + 1) * batch_size} (batches of {batch_size})"
        )


def _throughput(calls, chunks, warmup, warmup_batches, repeats, device) -> dict:
    """Throughput timing of the batch ``calls`` (see the module docstring for the two warm-up rules)."""
    if warmup_batches is None:
        for call in calls:  # warm-up of every batch shape
            for _ in range(max(warmup, 1)):
                call()

        def many():
            for call in calls:
                call()

        thr, thr_all = _median_time(many, max(1, repeats // 2), 0, device)
        return {
            "seconds": thr,
            "n_structures": sum(len(c) for c in chunks),
            "n_atoms": sum(len(a) for c in chunks for a in c),
            "warmup_rule": f"every batch called {max(warmup, 1)}x first",
            "passes_s": thr_all,
        }
    k = int(warmup_batches)
    per_batch = []
    for call in calls:  # one pass in order; the first k batches are the warm-up
        _sync(device)
        t0 = time.perf_counter()
        call()
        _sync(device)
        per_batch.append(time.perf_counter() - t0)
    timed = chunks[k:]
    return {
        "seconds": sum(per_batch[k:]),
        "n_structures": sum(len(c) for c in timed),
        "n_atoms": sum(len(a) for c in timed for a in c),
        "warmup_rule": f"first {k} batches skipped",
        "batch_s": per_batch,
    }


def time_student(
    student,
    atoms_list,
    *,
    batch_size=32,
    repeats=5,
    warmup=2,
    device="cpu",
    latency_structures=None,
    skin: float = 0.5,
    step_A: float = 0.005,
    warmup_batches: int | None = None,
) -> dict:
    """Latency per size and batched throughput of ``student`` (exported file, checkpoint, Student or program)."""
    from ..students.deployed import Runner, load_program

    program = load_program(student, device=device)
    lat_structs = list(latency_structures or atoms_list[:1])

    def make_call(a, k):
        runner = Runner(program, [a.numbers], [a.cell.array], [a.pbc], skin=skin, device=device)
        walk = Walk(a, step_A, seed=k)
        return lambda: runner(walk())

    rows = _latency_rows(make_call, lat_structs, repeats, warmup, device)
    chunks = [atoms_list[i : i + batch_size] for i in range(0, len(atoms_list), batch_size)]
    _check_warmup_batches(warmup_batches, len(chunks), batch_size)
    calls = []
    for c, chunk in enumerate(chunks):
        runner = Runner(
            program,
            [a.numbers for a in chunk],
            [a.cell.array for a in chunk],
            [a.pbc for a in chunk],
            skin=skin,
            device=device,
        )
        walks = [Walk(a, step_A, seed=1000 * c + k) for k, a in enumerate(chunk)]
        calls.append(lambda r=runner, w=walks: r([x() for x in w]))
    out = _summarise(rows, _throughput(calls, chunks, warmup, warmup_batches, repeats, device), atoms_list, repeats)
    out |= {
        "path": type(program).__name__,
        "export_format": getattr(program, "meta", {}).get("export_format", "eager"),
        "skin_A": skin,
    }
    return out


def time_teacher(
    teacher,
    atoms_list,
    *,
    batch_size=32,
    repeats=5,
    warmup=2,
    device="cpu",
    latency_structures=None,
    step_A: float = 0.005,
    warmup_batches: int | None = None,
) -> dict:
    """Latency per size and batched throughput of a teacher (its batched mode where it has one)."""
    lat_structs = list(latency_structures or atoms_list[:1])

    def make_call(a, k):
        b = a.copy()
        walk = Walk(a, step_A, seed=k)

        def call():
            b.positions = walk()
            return teacher.energy_forces(b)

        return call

    rows = _latency_rows(make_call, lat_structs, repeats, warmup, device)
    chunks = [list(atoms_list[i : i + batch_size]) for i in range(0, len(atoms_list), batch_size)]
    _check_warmup_batches(warmup_batches, len(chunks), batch_size)
    batched = getattr(teacher, "energy_forces_batched", None)

    def run_chunk(chunk):
        return batched(chunk) if batched is not None else teacher.energy_forces(chunk)

    calls = [lambda c=chunk: run_chunk(c) for chunk in chunks]
    out = _summarise(rows, _throughput(calls, chunks, warmup, warmup_batches, repeats, device), atoms_list, repeats)
    out["batched"] = bool(getattr(teacher, "batched", False))
    return out


def _summarise(rows, thr, atoms_list, repeats):
    sps = thr["n_structures"] / thr["seconds"]
    return {
        "latency_ms": rows[0]["latency_ms"],
        "latency_ms_all": rows[0]["latency_ms_all"],
        "latency_n_atoms": rows[0]["n_atoms"],
        "latency_by_size": rows,
        "throughput_structures_s": sps,
        "throughput_atoms_s": thr["n_atoms"] / thr["seconds"],
        "ns_per_day": sps * 0.0864,
        "n_structures": len(atoms_list),
        "repeats": repeats,
        "throughput_n_structures": thr["n_structures"],
        "throughput_warmup": thr["warmup_rule"],
        **{k: thr[k] for k in ("batch_s", "passes_s") if k in thr},
    }


def latency_sizes(atoms_list, *, large_atoms: int = 0) -> list:
    """The structures to time latency on: the smallest, median and largest distinct sizes of ``atoms_list`` and,
    with ``large_atoms`` > 0, a supercell of its first periodic structure with at least that many atoms."""
    by_size = {}
    for a in atoms_list:
        by_size.setdefault(len(a), a)
    sizes = sorted(by_size)
    pick = sorted({sizes[0], sizes[len(sizes) // 2], sizes[-1]})
    out = [by_size[n] for n in pick]
    periodic = [a for a in atoms_list if a.pbc.all()]
    if large_atoms > 0 and periodic:
        out.append(supercell(periodic[0], large_atoms))
    return out


def supercell(atoms, min_atoms: int):
    """The smallest near-cubic repetition of ``atoms`` with at least ``min_atoms`` atoms."""
    lengths = atoms.cell.lengths()
    reps = np.ones(3, dtype=int)
    while len(atoms) * int(np.prod(reps)) < min_atoms:
        k = int(np.argmin(lengths * reps))
        reps[k] += 1
    return atoms.repeat(tuple(int(r) for r in reps))


def speed_comparison(
    student,
    teacher,
    atoms_list,
    *,
    batch_size=32,
    repeats=5,
    warmup=2,
    device="cpu",
    latency_structures=None,
    skin: float = 0.5,
    warmup_batches: int | None = None,
) -> dict:
    """Both models on the same structures in one process; ratios > 1 mean the student is faster.

    ``speedup_latency`` is the ratio on the first latency structure; ``speedup_latency_by_size`` has one per size.
    """
    from ..students.deployed import load_program

    student = load_program(student, device=device)
    lat = list(latency_structures or atoms_list[:1])
    s = time_student(
        student,
        atoms_list,
        batch_size=batch_size,
        repeats=repeats,
        warmup=warmup,
        device=device,
        latency_structures=lat,
        skin=skin,
        warmup_batches=warmup_batches,
    )
    t = time_teacher(
        teacher,
        atoms_list,
        batch_size=batch_size,
        repeats=repeats,
        warmup=warmup,
        device=device,
        latency_structures=lat,
        warmup_batches=warmup_batches,
    )
    by_size = [
        {
            "n_atoms": rs["n_atoms"],
            "formula": rs["formula"],
            "student_ms": rs["latency_ms"],
            "teacher_ms": rt["latency_ms"],
            "speedup": rt["latency_ms"] / rs["latency_ms"],
        }
        for rs, rt in zip(s["latency_by_size"], t["latency_by_size"])
    ]
    n_params = getattr(student, "n_params", None)
    return {
        "student": s,
        "teacher": t,
        "device": str(device),
        "batch_size": batch_size,
        "torch_threads": torch.get_num_threads(),
        "student_params": None if n_params is None else int(n_params),
        "speedup_latency": t["latency_ms"] / s["latency_ms"],
        "speedup_latency_by_size": by_size,
        "speedup_latency_min": min(r["speedup"] for r in by_size),
        "speedup_throughput": s["throughput_structures_s"] / t["throughput_structures_s"],
        "teacher_batched": t["batched"],
    }
