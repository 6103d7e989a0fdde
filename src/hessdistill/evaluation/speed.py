"""Speed: teacher and student on the same structures, same device, one process.

Two figures per model:

- **latency**: one structure, energy+forces, as in an MD step (median over repeats, warm-up excluded;
  for students this includes building the neighbour graph, as an ASE MD run would);
- **throughput**: batches of ``batch_size`` structures (the paper's protocol, batch 32), structures/s and
  atoms/s, and the paper's "ns/day" = structures/s x 0.0864 (one structure per 1 fs step).

The headline is the ratio student/teacher of each.  Teachers are timed through their hessdistill
adapters (which evaluate one structure at a time); students through batched graphs.
"""

from __future__ import annotations

import statistics
import time

import torch

from ..data.graphs import atoms_to_data, collate


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


def time_student(model, atoms_list, *, batch_size=32, repeats=5, warmup=2, device="cpu") -> dict:
    dtype = next(model.parameters()).dtype
    model.eval()

    def one():
        b = collate([atoms_to_data(atoms_list[0], model.cutoff, dtype=dtype, student=model)]).to(device)
        e, f = model(b, create_graph=False)
        return float(e.detach().sum()), f.detach()

    batches = [atoms_list[i:i + batch_size] for i in range(0, len(atoms_list), batch_size)]

    def many():
        for chunk in batches:
            b = collate([atoms_to_data(a, model.cutoff, dtype=dtype, student=model) for a in chunk]).to(device)
            e, f = model(b, create_graph=False)
            float(e.detach().sum())

    return _summarise(one, many, atoms_list, repeats, warmup, device)


def time_teacher(teacher, atoms_list, *, repeats=5, warmup=2, device="cpu") -> dict:
    def one():
        return teacher.energy_forces(atoms_list[0])

    def many():
        teacher.energy_forces(list(atoms_list))

    return _summarise(one, many, atoms_list, repeats, warmup, device)


def _summarise(one, many, atoms_list, repeats, warmup, device):
    lat, lat_all = _median_time(one, repeats, warmup, device)
    thr, _ = _median_time(many, max(1, repeats // 2), 1, device)
    n_atoms = sum(len(a) for a in atoms_list)
    sps = len(atoms_list) / thr
    return {"latency_ms": 1e3 * lat, "latency_ms_all": [1e3 * t for t in lat_all], "latency_n_atoms": len(atoms_list[0]),
            "throughput_structures_s": sps, "throughput_atoms_s": n_atoms / thr, "ns_per_day": sps * 0.0864,
            "n_structures": len(atoms_list), "repeats": repeats}


def speed_comparison(student, teacher, atoms_list, *, batch_size=32, repeats=5, warmup=2, device="cpu") -> dict:
    """Both models on the same structures in one process; ratios > 1 mean the student is faster."""
    s = time_student(student, atoms_list, batch_size=batch_size, repeats=repeats, warmup=warmup, device=device)
    t = time_teacher(teacher, atoms_list, repeats=repeats, warmup=warmup, device=device)
    return {"student": s, "teacher": t, "device": str(device), "batch_size": batch_size,
            "torch_threads": torch.get_num_threads(), "student_params": int(student.n_params),
            "speedup_latency": t["latency_ms"] / s["latency_ms"],
            "speedup_throughput": s["throughput_structures_s"] / t["throughput_structures_s"]}
