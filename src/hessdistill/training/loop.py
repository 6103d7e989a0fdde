"""The training loop: AdamW (amsgrad), ReduceLROnPlateau on validation force MAE, EMA weights, gradient
clipping, the λ_H halving schedule, best-by-validation checkpoint, and exact resumption.

Resumption: ``last.pt`` (written atomically after every epoch) holds the model, EMA, optimiser, scheduler,
schedule state, sampler state, RNG states and the log.  Shuffling and Hessian-row draws are seeded by
(seed, epoch, step), so a run killed and resumed produces the same weights as an uninterrupted one (on the
same device and thread count).  A checkpoint is resumed only when it was made with the same settings (budget
and threads aside), from the same data (content fingerprints of the train and val splits: structures,
reference and teacher labels, Hessian rows) and by the same training code (:mod:`hessdistill.core.codehash`);
otherwise the run starts over and the log says why.  A run that finds its budget already spent (a rerun of
a finished training) still writes all of its outputs.  Budgets: ``max_epochs`` and/or ``max_time_s`` (wall time, checked between
epochs; a time budget is not reproducible by nature).

Outputs in ``out_dir``: ``model.pt`` (best EMA weights, student config, element references, training
summary: what :class:`hessdistill.calculator.StudentCalculator` loads), ``best.pt``, ``last.pt``,
``log.csv`` (one row per epoch) and ``summary.json``.
"""

from __future__ import annotations

import copy
import csv
import io
import json
import logging
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..core.atomic import atomic_path, atomic_write_text
from ..core.codehash import code_hash
from ..core.devices import device_record, resolve_device
from ..core.errors import HessdistillError
from ..students import build_student
from .data import DistillDataset, HessianCollate
from .losses import N2N_REDUCTIONS, LossWeights, compute_loss

log = logging.getLogger("hessdistill.jobs.train")

METHODS = ("undistilled", "hessian", "hessian-projection", "n2n", "a2a", "teacher-forces")

#: AdamW's multi-tensor implementation: one kernel per operation over all parameters instead of one per
#: parameter (the same update; on a small student on a CPU the per-parameter loop is a visible part of a step)
OPTIMIZER_OPTIONS = {"foreach": True}


LR_SCHEDULES = ("plateau", "cosine")


def budget_fraction(cfg, epoch: float, elapsed_s: float) -> float:
    """How much of the run's budget is spent, in [0, 1]: the larger of the epoch and wall-time fractions."""
    frac = epoch / max(cfg.max_epochs, 1)
    if cfg.max_time_s:
        frac = max(frac, elapsed_s / cfg.max_time_s)
    return min(max(frac, 0.0), 1.0)


def cosine_lr(cfg, frac: float) -> float:
    return cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1.0 + math.cos(math.pi * frac))


@dataclass
class TrainConfig:
    student: dict = field(default_factory=lambda: {"arch": "painn"})
    method: str = "hessian"
    #: loss weights; None means the method's default (paper values)
    weights: dict = field(default_factory=dict)
    rows_per_structure: int = 4
    row_weighting: str = "uniform"
    probe: str = "gaussian"
    vjp_method: str = "loop"
    batch_size: int = 8
    val_batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 2e-6
    amsgrad: bool = True
    #: AdamW's eps (torch's default 1e-8; the authors' release configs use 1e-7)
    adam_eps: float = 1e-8
    #: "plateau" (the paper's ReduceLROnPlateau on the val force MAE: lr_factor, lr_patience) or "cosine": lr
    #: decays from lr to min_lr along half a cosine over the run's budget, measured per step as the larger of
    #: the fraction of max_epochs done and of max_time_s spent (so a wall-time-limited run ends at min_lr)
    lr_schedule: str = "plateau"
    lr_factor: float = 0.8
    lr_patience: int = 5
    min_lr: float = 1e-6
    ema_decay: float = 0.999
    #: warm the EMA decay up as min(ema_decay, (1 + t) / (10 + t)) (ours); False: the fixed ema_decay from the
    #: first update (the official EMA)
    ema_warmup: bool = True
    grad_clip: float = 10.0
    max_epochs: int = 100
    max_time_s: float | None = None
    #: λ_H schedule: halve λ_H once the student's val force MAE <= threshold x the teacher's
    hessian_schedule_threshold: float = 1.05
    hessian_schedule_factor: float = 0.5
    #: absolute alternative (meV/Å): halve λ_H once the val force MAE <= this; needed when the reference labels
    #: are the teacher's own (then the teacher's val MAE is 0 and the paper's rule never fires)
    hessian_schedule_force_mae: float | None = None
    #: end of the Hessian phase, as a fraction of the budget (budget_fraction): from the first epoch that starts
    #: at or past it λ_H = 0, and the remaining steps cost what an undistilled step costs (no double backprop);
    #: 1.0 (default) keeps the Hessian term to the end
    hessian_until: float = 1.0
    #: outlier guard of the official Hessian loss: a structure whose sampled teacher Hessian rows have an entry
    #: |H| > this (eV/Å²; the release uses 1e4) has its Hessian term multiplied by hessian_outlier_weight; None = off.
    #: The structures so down-weighted are counted per epoch (log column hessian_outliers) and per run (summary)
    hessian_outlier_threshold: float | None = None
    hessian_outlier_weight: float = 1e-8
    #: n2n loss: "sum_features" (squared error summed over the teacher's feature dimension, averaged over atoms:
    #: the official form, for which λ_n2n = 1000 was set) or "mean" (averaged over features too: F_t times weaker)
    n2n_reduction: str = "sum_features"
    energy_source: str = "reference"
    seed: int = 0
    device: str = "auto"
    dtype: str = "float32"
    threads: int | None = None
    #: deterministic kernels (torch.use_deterministic_algorithms, process-wide): bitwise-reproducible training
    #: and resumption on CUDA, at some speed cost; CPU training is deterministic anyway
    deterministic: bool = False

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        unknown = sorted(set(d) - set(cls.__dataclass_fields__))
        if unknown:
            raise HessdistillError(f"unknown training option(s) {unknown}; valid: {sorted(cls.__dataclass_fields__)}")
        cfg = cls(**d)
        if cfg.method not in METHODS:
            raise HessdistillError(f"unknown method {cfg.method!r}; choose one of {METHODS}")
        if not 0.0 < cfg.hessian_until <= 1.0:
            raise HessdistillError(f"hessian_until must be in (0, 1] (a fraction of the budget), got {cfg.hessian_until}")
        if cfg.lr_schedule not in LR_SCHEDULES:
            raise HessdistillError(f"unknown lr_schedule {cfg.lr_schedule!r}; choose one of {LR_SCHEDULES}")
        if cfg.n2n_reduction not in N2N_REDUCTIONS:
            raise HessdistillError(f"unknown n2n_reduction {cfg.n2n_reduction!r}; choose one of {N2N_REDUCTIONS}")
        if not cfg.adam_eps > 0:
            raise HessdistillError(f"adam_eps must be > 0, got {cfg.adam_eps}")
        if cfg.hessian_outlier_threshold is not None and not cfg.hessian_outlier_threshold > 0:
            raise HessdistillError("hessian_outlier_threshold must be > 0 (eV/Å²) or None, got "
                                   f"{cfg.hessian_outlier_threshold}")
        if not 0.0 <= cfg.hessian_outlier_weight <= 1.0:
            raise HessdistillError(f"hessian_outlier_weight must be in [0, 1], got {cfg.hessian_outlier_weight}")
        return cfg


def method_weights(cfg: TrainConfig) -> LossWeights:
    """Paper defaults per method, overridden by ``cfg.weights``."""
    base = {"undistilled": dict(hessian=0.0), "hessian": {}, "hessian-projection": {},
            "n2n": dict(hessian=0.0, n2n=1000.0), "a2a": dict(hessian=0.0),
            "teacher-forces": dict(energy=0.0, forces=0.0, hessian=0.0, teacher_forces=100.0)}[cfg.method]
    w = LossWeights(**base)
    for k, v in cfg.weights.items():
        if not hasattr(w, k) or k == "extra":
            raise HessdistillError(f"unknown loss weight {k!r}; valid: energy, forces, hessian, energy_grad, teacher_forces, n2n")
        setattr(w, k, float(v))
    return w


class EMA:
    """Exponential moving average of the parameters (and a copy of buffers).

    With ``warmup`` (default) the decay warms up as min(decay, (1 + t) / (10 + t)) over the t-th update, so
    that short runs are not dominated by the random initial weights (with a fixed 0.999, 70% of the average
    after 350 steps would still be the initialisation).  ``warmup=False``: the fixed decay from the first
    update, as the official EMA.
    """

    def __init__(self, model, decay, warmup: bool = True):
        self.decay = float(decay)
        self.warmup = bool(warmup)
        self.num_updates = 0
        self.shadow = copy.deepcopy(model)
        for p in self.shadow.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model):
        """shadow <- d shadow + (1 - d) params, as one fused multi-tensor kernel (not two per parameter)."""
        self.num_updates += 1
        d = min(self.decay, (1 + self.num_updates) / (10 + self.num_updates)) if self.warmup else self.decay
        torch._foreach_lerp_(list(self.shadow.parameters()), [p.detach() for p in model.parameters()], 1 - d)
        buffers = list(self.shadow.buffers())
        if buffers:
            torch._foreach_copy_(buffers, list(model.buffers()))


def evaluate(model, loader, device) -> dict:
    """Energy MAE per atom (meV/atom) and force MAE per component (meV/Å) against the batch targets."""
    model.eval()
    e_err, f_err, n_struct, n_comp = 0.0, 0.0, 0, 0  # sums stay on the device: one host sync per evaluation
    for batch in loader:
        batch = _to_device(batch, device)
        energy, forces = model(batch, create_graph=False)
        e_err = e_err + ((energy.detach() - batch.energy).abs() / batch.natoms).sum()
        f_err = f_err + (forces.detach() - batch.forces).abs().sum()
        n_struct += int(batch.natoms.shape[0])
        n_comp += forces.numel()
    return {"energy_mae_meV_atom": 1e3 * float(e_err) / max(n_struct, 1),
            "force_mae_meV_A": 1e3 * float(f_err) / max(n_comp, 1)}


def teacher_val_force_mae(val: DistillDataset) -> float | None:
    """The teacher's force MAE (meV/Å, per component) on the validation split against its reference labels."""
    if val.teacher_forces is None or not val.has_reference:
        return None
    num = sum(float(np.abs(tf - a.get_forces()).sum()) for tf, a in zip(val.teacher_forces, val.atoms))
    den = sum(3 * len(a) for a in val.atoms)
    return 1e3 * num / den


def train(config, structures, out_dir, *, labels=None, hessians=None, progress: bool = True,
          on_mismatch: str = "error") -> dict:
    """Train one student run; resumes from ``out_dir/last.pt`` if present. Returns the summary dict.

    ``on_mismatch``: what to do when ``last.pt`` cannot be resumed (other settings, budget and thread count
    aside; other data; other training code; unreadable): ``"error"`` (default) refuses, ``"restart"`` discards
    ``last.pt``/``best.pt`` and starts over (what a workflow wants after any upstream change).
    """
    if on_mismatch not in ("error", "restart"):
        raise HessdistillError(f"on_mismatch must be 'error' or 'restart', got {on_mismatch!r}")
    cfg = config if isinstance(config, TrainConfig) else TrainConfig.from_dict(dict(config))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if cfg.deterministic:  # before the first CUDA call: cuBLAS reads its workspace setting at initialisation
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
    device = resolve_device(cfg.device)
    dtype = {"float32": torch.float32, "float64": torch.float64}[cfg.dtype]
    weights = method_weights(cfg)
    if cfg.method.startswith("hessian") and hessians is None:
        raise HessdistillError(f"method {cfg.method!r} needs teacher Hessians (hessians=...)")
    if (cfg.method in ("n2n", "a2a", "teacher-forces") or cfg.energy_source == "teacher") and labels is None:
        raise HessdistillError(f"method {cfg.method!r} needs the teacher labels file (labels=...)")

    torch.manual_seed(cfg.seed)
    student_cfg = dict(cfg.student)
    if cfg.method == "a2a":
        from ..data.labels import LabelStore

        with LabelStore(labels) as ls:
            nums, table = ls.element_embeddings()
        student_cfg["embedding_init"] = {"numbers": [int(z) for z in nums], "table": np.asarray(table).tolist()}
    auto_nbrs = student_cfg.get("avg_num_neighbors") == "auto"
    if auto_nbrs:
        student_cfg.pop("avg_num_neighbors")
    model = build_student(student_cfg)
    cutoff = model.cutoff
    # graphs are built once per structure for this student (its graph extras: what they depend on, cutoff and
    # elements, is the same for the model rebuilt below with avg_num_neighbors)
    train_ds = DistillDataset(structures, "train", cutoff, labels=labels, hessians=hessians if weights.hessian > 0 else None,
                              node_features=weights.n2n > 0, dtype=dtype, energy_source=cfg.energy_source, student=model)
    if auto_nbrs:  # normalise message sums by the training set's mean neighbour count at the student's cutoff
        n_edges = sum(int(train_ds[i].edge_index.shape[1]) for i in range(len(train_ds)))
        n_atoms = sum(len(a) for a in train_ds.atoms)
        student_cfg["avg_num_neighbors"] = max(1.0, round(n_edges / max(n_atoms, 1), 3))
        torch.manual_seed(cfg.seed)
        model = build_student(student_cfg)
    train_ds.student = model
    val_ds = DistillDataset(structures, "val", cutoff, labels=labels, dtype=dtype, energy_source=cfg.energy_source,
                            student=model)
    e_train, z_train = train_ds.energies_and_numbers()
    model.fit_element_energies(z_train, e_train)
    f_all = np.concatenate([train_ds[i].forces.numpy().reshape(-1) for i in range(len(train_ds))])
    model.set_energy_scale(float(np.sqrt(np.mean(f_all**2))) or 1.0)
    model = model.to(device=device, dtype=dtype)
    if hasattr(model, "fit_scale_factors"):  # GemNet: fit its scale factors once on training data (saved in checkpoints)
        with torch.no_grad():
            model.fit_scale_factors(collate_plain([train_ds[i] for i in range(min(16, len(train_ds)))]).to(device))
    projection = None
    params = list(model.parameters())
    if weights.n2n > 0:
        t_dim = train_ds.node_feats[0].shape[1]
        projection = torch.nn.Linear(model.feature_dim, t_dim).to(device=device, dtype=dtype)
        params += list(projection.parameters())
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, amsgrad=cfg.amsgrad, eps=cfg.adam_eps,
                            **OPTIMIZER_OPTIONS)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="min", factor=cfg.lr_factor, patience=cfg.lr_patience,
                                                       min_lr=cfg.min_lr)
    ema = EMA(model, cfg.ema_decay, warmup=cfg.ema_warmup)
    collate = HessianCollate(train_ds, rows_per_structure=cfg.rows_per_structure,
                             weighting="projection" if cfg.method == "hessian-projection" else cfg.row_weighting,
                             seed=cfg.seed, probe=cfg.probe)
    # batches are collated on the main thread: the Hessian-row sampler's draws are keyed by (seed, epoch, step) and
    # the error-weighted sampler learns from each step, which worker processes would not share; graphs are cached
    # per structure, so collation is cheap next to a Hessian step, and copies to a GPU do not block (_to_device)
    val_loader = torch.utils.data.DataLoader(val_ds, batch_size=cfg.val_batch_size, shuffle=False, collate_fn=collate_plain)
    teacher_mae = teacher_val_force_mae(val_ds)
    if cfg.hessian_schedule_force_mae is not None:
        schedule_at = float(cfg.hessian_schedule_force_mae)
    elif teacher_mae is not None and teacher_mae > 1e-6:
        schedule_at = cfg.hessian_schedule_threshold * teacher_mae
    else:
        schedule_at = None
        if weights.hessian > 0:
            log.warning("lambda_H schedule inactive: the teacher's validation force MAE against the reference labels is "
                        "%s (the reference labels are the teacher's own?); set hessian_schedule_force_mae (meV/Å) "
                        "for an absolute threshold", "unknown" if teacher_mae is None else f"{teacher_mae:.3g} meV/Å")
    state = {"epoch": 0, "best_val": math.inf, "lambda_h": weights.hessian, "lambda_h_halved": False,
             "log": [], "elapsed_s": 0.0, "steps": 0}
    provenance = {"inputs": {"train": train_ds.fingerprint(), "val": val_ds.fingerprint()},
                  "code": code_hash(["hessdistill.training"])}
    ck = _resumable_checkpoint(out, asdict(cfg), provenance, on_mismatch)
    resumed_from = None
    if ck is not None:
        model.load_state_dict(ck["model"])
        ema.shadow.load_state_dict(ck["ema"])
        ema.num_updates = int(ck["ema_updates"])
        opt.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["scheduler"])
        if projection is not None:
            projection.load_state_dict(ck["projection"])
        collate.load_state_dict(ck["sampler"])
        torch.set_rng_state(ck["torch_rng"])
        if device.type == "cuda" and ck.get("cuda_rng") is not None:
            torch.cuda.set_rng_state(ck["cuda_rng"], device)
        state = ck["state"]
        resumed_from = state["epoch"]
        log.info("resumed %s at epoch %d (checkpoint written on %s, now on %s)", out, state["epoch"],
                 ck["config"].get("device"), device)

    t_start = time.perf_counter() - state["elapsed_s"]
    bar = _Bar(progress, cfg.max_epochs, state["epoch"], out.name)
    while state["epoch"] < cfg.max_epochs:
        if cfg.max_time_s is not None and time.perf_counter() - t_start > cfg.max_time_s:
            log.info("wall-time budget reached after %d epochs", state["epoch"])
            break
        epoch = state["epoch"]
        model.train()
        order = np.random.default_rng([cfg.seed, epoch]).permutation(len(train_ds))
        collate.set_position(epoch, 0)
        if (state["lambda_h"] > 0 and cfg.hessian_until < 1.0
                and budget_fraction(cfg, epoch, time.perf_counter() - t_start) >= cfg.hessian_until):
            state["lambda_h"] = 0.0
            state["hessian_phase_end_epoch"] = epoch
            log.info("end of the Hessian phase (hessian_until %.2f of the budget) at epoch %d: lambda_H -> 0",
                     cfg.hessian_until, epoch)
        weights.hessian = state["lambda_h"]
        sums, n_batches, finite, outliers = {}, 0, [], 0
        n_steps = max(1, -(-len(order) // cfg.batch_size))
        for b0 in range(0, len(order), cfg.batch_size):
            if cfg.lr_schedule == "cosine":
                frac = budget_fraction(cfg, epoch + b0 / cfg.batch_size / n_steps, time.perf_counter() - t_start)
                for group in opt.param_groups:
                    group["lr"] = cosine_lr(cfg, frac)
            batch = _to_device(collate([train_ds[int(i)] for i in order[b0:b0 + cfg.batch_size]]), device)
            total, terms, per_slot = compute_loss(model, batch, weights, projection=projection,
                                                  squared_hessian=cfg.method == "hessian-projection",
                                                  vjp_method=cfg.vjp_method, n2n_reduction=cfg.n2n_reduction,
                                                  hessian_outlier_threshold=cfg.hessian_outlier_threshold,
                                                  hessian_outlier_weight=cfg.hessian_outlier_weight)
            finite.append(torch.isfinite(total.detach()))
            opt.zero_grad(set_to_none=True)
            total.backward()
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            opt.step()
            ema.update(model)
            if per_slot is not None and collate.weighting == "error":  # the only sampler that needs them
                collate.feedback(per_slot.cpu().numpy())
            # accumulate on the device; converted once per epoch (no host sync per step)
            if "hessian_outliers" in terms:  # a count of structures, summed over the epoch (not averaged)
                outliers = outliers + terms.pop("hessian_outliers")
            for k, v in terms.items():
                sums[k] = sums.get(k, 0.0) + v
            sums["total"] = sums.get("total", 0.0) + total.detach()
            n_batches += 1
            state["steps"] += 1
        if finite and not bool(torch.stack(finite).all()):  # the epoch's one host sync for this check
            _raise_non_finite(torch.stack(finite), order, cfg, train_ds, epoch, sums)
        val = evaluate(ema.shadow, val_loader, device)
        if cfg.lr_schedule == "plateau":
            sched.step(val["force_mae_meV_A"])
        if (schedule_at is not None and not state["lambda_h_halved"] and state["lambda_h"] > 0
                and val["force_mae_meV_A"] <= schedule_at):
            state["lambda_h"] *= cfg.hessian_schedule_factor
            state["lambda_h_halved"] = True
            log.info("val force MAE %.2f <= %.2f (schedule threshold): lambda_H -> %g", val["force_mae_meV_A"],
                     schedule_at, state["lambda_h"])
        state["epoch"] = epoch + 1
        state["elapsed_s"] = time.perf_counter() - t_start
        row = {"epoch": epoch + 1, "steps": state["steps"], "lr": opt.param_groups[0]["lr"], "lambda_h": state["lambda_h"],
               **{f"train_{k}": float(v) / max(n_batches, 1) for k, v in sums.items()},
               **{f"val_{k}": v for k, v in val.items()}, "elapsed_s": state["elapsed_s"]}
        if cfg.hessian_outlier_threshold is not None:  # never silent: structures whose Hessian term was down-weighted
            row["hessian_outliers"] = int(outliers)
            state["hessian_outliers"] = state.get("hessian_outliers", 0) + int(outliers)
            if outliers:
                log.info("epoch %d: %d structure-step(s) with a teacher Hessian entry above %g eV/Å² had their "
                         "Hessian term multiplied by %g", epoch + 1, int(outliers), cfg.hessian_outlier_threshold,
                         cfg.hessian_outlier_weight)
        state["log"].append(row)
        improved = val["force_mae_meV_A"] < state["best_val"]
        if improved:
            state["best_val"] = val["force_mae_meV_A"]
            _save_model(out / "best.pt", ema.shadow, cfg, state, teacher_mae)
        _save(out / "last.pt", {"config": asdict(cfg), "model": model.state_dict(), "ema": ema.shadow.state_dict(), "ema_updates": ema.num_updates,
                     "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                     "projection": projection.state_dict() if projection is not None else None,
                     "sampler": collate.state_dict(), "torch_rng": torch.get_rng_state(),
                     "cuda_rng": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
                     "state": state, **provenance})
        _write_log(out / "log.csv", state["log"])
        bar.update(1, val["force_mae_meV_A"])
    bar.close()
    _write_log(out / "log.csv", state["log"])  # also when nothing was left to train (a rerun of a finished run)
    best = torch.load(out / "best.pt", map_location="cpu", weights_only=False) if (out / "best.pt").exists() else None
    if best is None:
        raise HessdistillError(f"training of {out} ran no epoch (budget too small?)")
    _save(out / "model.pt", best)
    summary = {"epochs": state["epoch"], "steps": state["steps"], "best_val_force_mae_meV_A": state["best_val"],
               "teacher_val_force_mae_meV_A": teacher_mae, "lambda_h_final": state["lambda_h"],
               "lambda_h_schedule_threshold_meV_A": schedule_at, "lambda_h_halved": state["lambda_h_halved"],
               "hessian_phase_end_epoch": state.get("hessian_phase_end_epoch"),
               "hessian_outliers": state.get("hessian_outliers") if cfg.hessian_outlier_threshold is not None else None,
               "n_params": model.n_params, "train_time_s": state["elapsed_s"], "method": cfg.method,
               "resumed_from_epoch": resumed_from, **device_record(device),
               "student": model.config() | {"embedding_init": "teacher table" if "embedding_init" in student_cfg else None}}
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=1, default=str))
    return summary


def _resume_key(cfgd: dict) -> dict:
    """Settings that must match to resume: all but the budget (which may be extended) and how it runs: thread
    count, device (a GPU checkpoint resumes on a CPU node and back) and deterministic kernels."""
    return {k: v for k, v in cfgd.items() if k not in ("max_epochs", "max_time_s", "threads", "device", "deterministic")}


def _to_device(batch, device):
    """Host-to-device copy of a training batch; on CUDA from pinned memory, without blocking the host."""
    if device.type == "cuda":
        return batch.pin_memory().to(device, non_blocking=True)
    return batch.to(device)


def _mismatch(ck: dict, cfgd: dict, provenance: dict) -> str | None:
    """Why checkpoint ``ck`` cannot be resumed by a run with settings ``cfgd`` on ``provenance``; None if it can."""
    old, new = _resume_key(ck.get("config", {})), _resume_key(cfgd)
    if old != new:
        keys = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
        return "its settings differ (" + ", ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in keys) + ")"
    if "inputs" not in ck:
        return "it predates input tracking (no data fingerprint recorded)"
    changed = [s for s in provenance["inputs"] if ck["inputs"].get(s) != provenance["inputs"][s]]
    if changed:
        return (f"its training data differ (split(s) {', '.join(changed)}: structures, labels or Hessian rows "
                "changed since the checkpoint was written)")
    if ck.get("code") != provenance["code"]:
        return f"the training code changed (code hash {ck.get('code')} -> {provenance['code']})"
    return None


def _resumable_checkpoint(out: Path, cfgd: dict, provenance: dict, on_mismatch: str):
    """``out/last.pt`` if it can be resumed (same settings, data and code; ``best.pt`` beside it), else None
    after discarding both (``on_mismatch="restart"``) or raising (``"error"``)."""
    last = out / "last.pt"
    if not last.exists():
        return None
    try:
        ck = torch.load(last, map_location="cpu", weights_only=False)  # CPU first: RNG states must stay on CPU
        why = None if isinstance(ck, dict) and "state" in ck else "it is not a training checkpoint"
    except Exception as exc:  # noqa: BLE001 (a truncated or foreign file: report it, do not crash on it)
        ck, why = None, f"it cannot be read ({type(exc).__name__}: {exc})"
    if why is None:
        why = _mismatch(ck, cfgd, provenance)
    if why is None and not (out / "best.pt").exists():
        why = "best.pt (the best weights so far) is missing beside it"
    if why is None:
        return ck
    if on_mismatch == "error":
        raise HessdistillError(f"file {str(last)!r} cannot be resumed: {why}\n  fix: delete {last} and {out / 'best.pt'} "
                               "to start this run over, or restore the settings and data it was made with")
    log.warning("not resuming from %s: %s; starting this run over", last, why)
    for name in ("last.pt", "best.pt"):
        (out / name).unlink(missing_ok=True)
    return None


def _raise_non_finite(flags: torch.Tensor, order, cfg, ds, epoch: int, sums: dict):
    """A non-finite loss in this epoch: name the batch's structures (split, indices, formulas) and the terms."""
    step = int((~flags.cpu()).nonzero()[0])
    idx = [int(i) for i in order[step * cfg.batch_size:(step + 1) * cfg.batch_size]]
    names = ", ".join(f"{i} ({ds.atoms[i].get_chemical_formula()})" for i in idx)
    terms = ", ".join(k for k, v in sums.items() if not bool(torch.isfinite(torch.as_tensor(v)).all())) or "unknown"
    raise HessdistillError(
        f"file {str(ds.structures_path)!r}: non-finite training loss at epoch {epoch + 1}, step {step + 1}, in the "
        f"batch of structures {names} of split {ds.split!r} (non-finite terms: {terms})\n"
        "  fix: inspect these structures (overlapping atoms, huge forces: drop them with a selector such as "
        "max_force), or lower lr; the last good checkpoint (last.pt) is kept")


def collate_plain(items):
    from ..core.graphs import collate

    return collate(items)


def _save(path, obj):
    buf = io.BytesIO()
    torch.save(obj, buf)
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(buf.getvalue())


def _save_model(path, model, cfg, state, teacher_mae):
    cfgd = model.config()
    _save(path, {"format": "hessdistill.student", "student_config": cfgd,
                 "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                 "dtype": cfg.dtype, "epoch": state["epoch"], "val_force_mae_meV_A": state["best_val"],
                 "teacher_val_force_mae_meV_A": teacher_mae, "method": cfg.method})


def _write_log(path, rows):
    keys = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=keys)
    w.writeheader()
    for r in rows:
        w.writerow(r)
    atomic_write_text(path, buf.getvalue())


class _Bar:
    def __init__(self, enabled, total, initial, desc):
        self.bar = None
        if enabled:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, initial=initial, desc=f"train {desc}", unit="epoch", file=sys.stderr)

    def update(self, n, val):
        if self.bar is not None:
            self.bar.set_postfix(val_F_MAE=f"{val:.1f}")
            self.bar.update(n)

    def close(self):
        if self.bar is not None:
            self.bar.close()

