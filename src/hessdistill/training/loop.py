"""The training loop: AdamW (amsgrad), a plateau or cosine learning rate, EMA weights, gradient clipping, the λ_H
schedule, best-by-validation checkpoint, and exact resumption.

:func:`train` orchestrates, as MACE's ``tools/train.py``: :func:`setup` (runtime, student, data, the fits to the
training data, optimiser, schedules, EMA, sampler), then per epoch :func:`train_one_epoch` (one
:func:`take_step` per batch), :func:`evaluate` of the EMA weights on the validation split, the schedules'
end-of-epoch updates (:mod:`hessdistill.training.schedule`) and the checkpoints; at the end the summary.

Resumption: ``last.pt`` (written atomically after every epoch, :mod:`hessdistill.training.checkpoint`) holds the
model, EMA, optimiser, scheduler, schedule state, sampler state, RNG states and the log.  Shuffling and
Hessian-row draws are seeded by (seed, epoch, step), so a run killed and resumed produces the same weights as an
uninterrupted one (on the same device and thread count).  A checkpoint is resumed only when it was made with the
same settings (budget and threads aside), from the same data (content fingerprints of the train and val splits:
structures, reference and teacher labels, Hessian rows) and by the same training code
(:mod:`hessdistill.core.codehash`); otherwise the run starts over and the log says why.  A run that finds its
budget already spent (a rerun of a finished training) still writes all of its outputs.  Budgets: ``max_epochs``
and/or ``max_time_s`` (wall time, checked between epochs; a time budget is not reproducible by nature).

Outputs in ``out_dir``: ``model.pt`` (best EMA weights, student config, element references, training
summary: what :class:`hessdistill.calculator.StudentCalculator` loads; written by
:func:`hessdistill.students.checkpoint.save_student`), ``best.pt``, ``last.pt``, ``log.csv`` (one row per epoch)
and ``summary.json``.
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
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from ..core.atomic import atomic_torch_save, atomic_write_text
from ..core.codehash import code_hash
from ..core.devices import device_record, resolve_device
from ..core.dtypes import torch_dtype
from ..core.errors import HessdistillError
from ..core.graphs import collate
from ..students import Student, build_student
from ..students.checkpoint import save_student
from .checkpoint import restore_checkpoint, resumable_checkpoint, save_checkpoint
from .config import OPTIMIZER_OPTIONS, TrainConfig, method_weights
from .data import DistillDataset, HessianCollate
from .losses import LossWeights, compute_loss
from .schedule import HessianWeightSchedule, LearningRateSchedule

log = logging.getLogger("hessdistill.jobs.train")

#: how many training structures (the first ones) a student's :meth:`Student.prepare_for_training` sees
PREPARE_STRUCTURES = 16


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
    return {
        "energy_mae_meV_atom": 1e3 * float(e_err) / max(n_struct, 1),
        "force_mae_meV_A": 1e3 * float(f_err) / max(n_comp, 1),
    }


def teacher_val_force_mae(val: DistillDataset) -> float | None:
    """The teacher's force MAE (meV/Å, per component) on the validation split against its reference labels."""
    if val.teacher_forces is None or not val.has_reference:
        return None
    num = sum(float(np.abs(tf - a.get_forces()).sum()) for tf, a in zip(val.teacher_forces, val.atoms))
    den = sum(3 * len(a) for a in val.atoms)
    return 1e3 * num / den


@dataclass
class Setup:
    """Everything a run trains with, built by :func:`setup` (before any checkpoint is restored into it)."""

    cfg: TrainConfig
    device: torch.device
    #: the loss weights; ``hessian`` is set to the schedule's λ_H at the start of every epoch
    weights: LossWeights
    #: the student's configuration as built (with the teacher's embedding table for a2a)
    student_cfg: dict
    model: Student
    #: student features -> teacher features (n2n only, else None)
    projection: torch.nn.Linear | None
    #: what the optimiser updates and the gradient norm is clipped over
    params: list
    optimizer: torch.optim.Optimizer
    lr_schedule: LearningRateSchedule
    hessian_schedule: HessianWeightSchedule
    ema: EMA
    #: collates training batches and draws their Hessian rows
    sampler: HessianCollate
    train_ds: DistillDataset
    val_ds: DistillDataset
    val_loader: torch.utils.data.DataLoader
    #: the teacher's validation force MAE (meV/Å) against the reference labels, or None
    teacher_mae: float | None
    #: content fingerprints of the splits and the training code's hash (stored in, and compared with, last.pt)
    provenance: dict


def train(
    config,
    structures,
    out_dir,
    *,
    labels=None,
    hessians=None,
    progress: bool = True,
    on_mismatch: str = "error",
    extra_train=None,
    subset: str | None = None,
) -> dict:
    """Train one student run; resumes from ``out_dir/last.pt`` if present. Returns the summary dict.

    ``extra_train``: {subset name: {"structures": ..., "labels": ..., "hessians": ...}}, the files of each subset
    the run's ``extra_train_subsets`` names (the same teacher's labels and Hessians); their train splits are
    added to the training set (:func:`extra_training_sets` checks them).  ``subset``: the name of the subset of
    ``structures``, for messages and the summary's ``train_structures``.

    ``on_mismatch``: what to do when ``last.pt`` cannot be resumed (other settings, budget and thread count
    aside; other data; other training code; unreadable): ``"error"`` (default) refuses, ``"restart"`` discards
    ``last.pt``/``best.pt`` and starts over (what a workflow wants after any upstream change).
    """
    if on_mismatch not in ("error", "restart"):
        raise HessdistillError(f"on_mismatch must be 'error' or 'restart', got {on_mismatch!r}")
    cfg = config if isinstance(config, TrainConfig) else TrainConfig.from_dict(dict(config))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    run = setup(cfg, structures, labels=labels, hessians=hessians, extra_train=extra_train, subset=subset)
    state = {
        "epoch": 0,
        "best_val": math.inf,
        **run.hessian_schedule.initial_state(),
        "log": [],
        "elapsed_s": 0.0,
        "steps": 0,
    }
    ck = resumable_checkpoint(out, asdict(cfg), run.provenance, on_mismatch)
    resumed_from = None
    if ck is not None:
        state = restore_checkpoint(
            ck,
            model=run.model,
            ema=run.ema,
            optimizer=run.optimizer,
            lr_schedule=run.lr_schedule,
            projection=run.projection,
            sampler=run.sampler,
            device=run.device,
        )
        resumed_from = state["epoch"]
        log.info(
            "resumed %s at epoch %d (checkpoint written on %s, now on %s)",
            out,
            state["epoch"],
            ck["config"].get("device"),
            run.device,
        )

    t_start = time.perf_counter() - state["elapsed_s"]
    bar = _Bar(progress, cfg.max_epochs, state["epoch"], out.name)
    while state["epoch"] < cfg.max_epochs:
        if cfg.max_time_s is not None and time.perf_counter() - t_start > cfg.max_time_s:
            log.info("wall-time budget reached after %d epochs", state["epoch"])
            break
        epoch = state["epoch"]
        sums, n_batches, outliers = train_one_epoch(run, state, epoch, t_start)
        val = evaluate(run.ema.shadow, run.val_loader, run.device)
        run.lr_schedule.after_epoch(val["force_mae_meV_A"])
        run.hessian_schedule.end_epoch(state, val["force_mae_meV_A"])
        state["epoch"] = epoch + 1
        state["elapsed_s"] = time.perf_counter() - t_start
        _record_epoch(run, state, sums, n_batches, outliers, val)
        if val["force_mae_meV_A"] < state["best_val"]:
            state["best_val"] = val["force_mae_meV_A"]
            save_student(
                out / "best.pt",
                run.ema.shadow,
                dtype=cfg.dtype,
                epoch=state["epoch"],
                val_force_mae_meV_A=state["best_val"],
                teacher_val_force_mae_meV_A=run.teacher_mae,
                method=cfg.method,
            )
        save_checkpoint(
            out / "last.pt",
            cfgd=asdict(cfg),
            model=run.model,
            ema=run.ema,
            optimizer=run.optimizer,
            lr_schedule=run.lr_schedule,
            projection=run.projection,
            sampler=run.sampler,
            device=run.device,
            state=state,
            provenance=run.provenance,
        )
        _write_log(out / "log.csv", state["log"])
        bar.update(1, val["force_mae_meV_A"])
    bar.close()
    _write_log(out / "log.csv", state["log"])  # also when nothing was left to train (a rerun of a finished run)
    best = torch.load(out / "best.pt", map_location="cpu", weights_only=False) if (out / "best.pt").exists() else None
    if best is None:
        raise HessdistillError(f"training of {out} ran no epoch (budget too small?)")
    atomic_torch_save(out / "model.pt", best)
    summary = _summary(run, state, resumed_from)
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=1, default=str))
    return summary


def setup(cfg: TrainConfig, structures, *, labels=None, hessians=None, extra_train=None, subset=None) -> Setup:
    """Prepare run ``cfg``: threads and deterministic kernels, device, student, train/val data, the student's fits
    to the training data (element energies, energy scale, :meth:`Student.prepare_for_training`), optimiser,
    learning-rate and λ_H schedules, EMA, Hessian-row sampler and the provenance the checkpoint is checked against.

    The torch RNG is seeded here (``cfg.seed``) and consumed by the student's (and projection's) initialisation.
    """
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if cfg.deterministic:  # before the first CUDA call: cuBLAS reads its workspace setting at initialisation
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
    device = resolve_device(cfg.device)
    dtype = torch_dtype(cfg.dtype)
    weights = method_weights(cfg)
    if cfg.method.startswith("hessian") and hessians is None:
        raise HessdistillError(f"method {cfg.method!r} needs teacher Hessians (hessians=...)")
    if (cfg.method in ("n2n", "a2a", "teacher-forces") or cfg.energy_source == "teacher") and labels is None:
        raise HessdistillError(f"method {cfg.method!r} needs the teacher labels file (labels=...)")

    model, student_cfg, train_ds, val_ds = _student_and_data(
        cfg, structures, labels, hessians, weights, dtype, extra_train or {}, subset
    )
    model = _fit_to_training_data(model, train_ds, device, dtype)
    projection = None
    params = list(model.parameters())
    if weights.n2n > 0:
        t_dim = train_ds.node_feats[0].shape[1]
        projection = torch.nn.Linear(model.feature_dim, t_dim).to(device=device, dtype=dtype)
        params += list(projection.parameters())
    optimizer = torch.optim.AdamW(
        params, lr=cfg.lr, weight_decay=cfg.weight_decay, amsgrad=cfg.amsgrad, eps=cfg.adam_eps, **OPTIMIZER_OPTIONS
    )
    lr_schedule = LearningRateSchedule(cfg, optimizer)
    ema = EMA(model, cfg.ema_decay, warmup=cfg.ema_warmup)
    sampler = HessianCollate(
        train_ds,
        rows_per_structure=cfg.rows_per_structure,
        weighting="projection" if cfg.method == "hessian-projection" else cfg.row_weighting,
        seed=cfg.seed,
        probe=cfg.probe,
    )
    # batches are collated on the main thread: the Hessian-row sampler's draws are keyed by (seed, epoch, step) and
    # the error-weighted sampler learns from each step, which worker processes would not share; graphs are cached
    # per structure, so collation is cheap next to a Hessian step, and copies to a GPU do not block (_to_device)
    val_loader = torch.utils.data.DataLoader(val_ds, batch_size=cfg.val_batch_size, shuffle=False, collate_fn=collate)
    teacher_mae = teacher_val_force_mae(val_ds)
    hessian_schedule = HessianWeightSchedule(cfg, teacher_mae, weights.hessian)
    provenance = {
        "inputs": {"train": train_ds.fingerprint(), "val": val_ds.fingerprint()},
        "code": code_hash(["hessdistill.training"]),
    }
    return Setup(
        cfg=cfg,
        device=device,
        weights=weights,
        student_cfg=student_cfg,
        model=model,
        projection=projection,
        params=params,
        optimizer=optimizer,
        lr_schedule=lr_schedule,
        hessian_schedule=hessian_schedule,
        ema=ema,
        sampler=sampler,
        train_ds=train_ds,
        val_ds=val_ds,
        val_loader=val_loader,
        teacher_mae=teacher_mae,
        provenance=provenance,
    )


def _student_and_data(cfg, structures, labels, hessians, weights, dtype, extra_train=None, subset=None):
    """The student (seeded with ``cfg.seed``; ``avg_num_neighbors: auto`` resolved on the training set) and the
    train and val datasets, their graphs built for it; the training set is the train split of ``structures``
    followed by those of the ``extra_train`` subsets (:func:`extra_training_sets`).  Returns (model, student
    config, train_ds, val_ds)."""
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
    train_ds = DistillDataset(
        structures,
        "train",
        cutoff,
        labels=labels,
        hessians=hessians if weights.hessian > 0 else None,
        node_features=weights.n2n > 0,
        dtype=dtype,
        energy_source=cfg.energy_source,
        student=model,
        subset=subset,
    )
    extras = extra_training_sets(cfg, train_ds, extra_train or {}, weights, model)
    if extras:
        train_ds = DistillDataset.joined([train_ds, *extras])
        log.info(
            "training set: %d structures: %s",
            len(train_ds),
            ", ".join(f"{n} from {name!r}" for name, n in train_ds.structures_per_subset().items()),
        )
    if auto_nbrs:  # normalise message sums by the training set's mean neighbour count at the student's cutoff
        n_edges = sum(int(train_ds[i].edge_index.shape[1]) for i in range(len(train_ds)))
        n_atoms = sum(len(a) for a in train_ds.atoms)
        student_cfg["avg_num_neighbors"] = max(1.0, round(n_edges / max(n_atoms, 1), 3))
        torch.manual_seed(cfg.seed)
        model = build_student(student_cfg)
    train_ds.student = model
    val_ds = DistillDataset(
        structures, "val", cutoff, labels=labels, dtype=dtype, energy_source=cfg.energy_source, student=model
    )
    return model, student_cfg, train_ds, val_ds


def _file_attrs(path, reader) -> dict:
    with reader(path) as f:
        return f.attrs


def _subset_label(ds) -> str:
    part = ds.parts[0]
    return f"subset {part['subset']!r}" if part["subset"] else f"the run's structures {part['structures']}"


#: label-file attributes that identify the teacher: labels of one subset join those of another only if all agree
TEACHER_ATTRS = ("teacher", "teacher_version", "teacher_dtype")


def extra_training_sets(cfg: TrainConfig, base: DistillDataset, extra_train: dict, weights, model) -> list:
    """The train splits of the run's ``extra_train_subsets`` (files in ``extra_train``: {name: {"structures",
    "labels", "hessians"}}) as datasets like ``base`` (the run's own train split), in the run's order, after
    checking that they can be joined to it: each subset's store has a non-empty train split; its labels (and
    Hessian rows, where the run matches them) are the same teacher's as the run's, and its Hessians cover the
    train split; with reference targets (``energy_source: reference``) its reference labels are of the same kind
    (the store attribute ``labels``: ``dft``, ``teacher:chgnet``, ...); the student can embed its elements.  Rows
    per structure are checked with the joined set (:class:`HessianCollate`).  Raises HessdistillError naming the
    subset, the file and the fix."""
    from ..data.labels import HessianStore, LabelStore
    from ..data.store import StructureStore

    names = list(cfg.extra_train_subsets)
    if sorted(extra_train) != sorted(names):
        raise HessdistillError(
            f"the run's extra_train_subsets are {names}, but files were given for {sorted(extra_train)}\n"
            "  fix: give the structures, labels and Hessians of exactly the subsets extra_train_subsets names"
        )
    key = "extra_train_subsets (workflow: runs.<run>.extra_train_subsets)"
    base_part = base.parts[0]
    with StructureStore(base_part["structures"]) as st:
        base_kind = st.labels
    base_teacher = _file_attrs(base_part["labels"], LabelStore) if base_part["labels"] is not None else None
    use_hessians = base.hessians is not None
    out = []
    for name in names:
        spec = dict(extra_train[name])
        unknown = sorted(set(spec) - {"structures", "labels", "hessians"})
        if unknown or not spec.get("structures"):
            raise HessdistillError(
                f"extra training subset {name!r}: expected its files as structures, labels, hessians, got "
                f"{sorted(spec)}"
            )
        structures, labels, hessians = spec["structures"], spec.get("labels"), spec.get("hessians")

        def fail(problem, fix, path=structures, name=name):
            return HessdistillError(f"file {str(path)!r}: extra training subset {name!r} {problem}\n  fix: {fix}")

        with StructureStore(structures) as st:
            if "train" not in st.splits or st.n_structures("train") == 0:
                raise fail(
                    f"has no training structures (splits: {', '.join(f'{s} ({st.n_structures(s)})' for s in st.splits)})",
                    f"give the subset a train split (split: counts: {{train: rest}}), or remove it from {key}",
                )
            kind = st.labels
            numbers = np.unique(np.concatenate([st.atoms("train", i).numbers for i in range(st.n_structures("train"))]))
        if cfg.energy_source == "reference" and kind != base_kind:
            raise fail(
                f"has reference labels {kind!r} but {_subset_label(base)} has {base_kind!r} (store attribute "
                "'labels'): the run would fit energies and forces of two different references as one",
                f"label both subsets with the same reference, train on the teacher's labels (energy_source: "
                f"teacher), or remove {name!r} from {key}",
            )
        if base_teacher is not None:
            if labels is None:
                raise fail("has no teacher labels file", f"give its labels (the run's teacher on subset {name!r})")
            got = _file_attrs(labels, LabelStore)
            want = {k: base_teacher.get(k) for k in TEACHER_ATTRS}
            if {k: got.get(k) for k in TEACHER_ATTRS} != want:
                raise fail(
                    f"was labelled by teacher {got.get('teacher')!r} (version {got.get('teacher_version')}, "
                    f"{got.get('teacher_dtype')}) but {_subset_label(base)} by {want['teacher']!r} (version "
                    f"{want['teacher_version']}, {want['teacher_dtype']})",
                    "label the extra subset with the run's teacher",
                    path=labels,
                )
        if use_hessians:
            if hessians is None:
                raise fail("has no teacher Hessians file", f"give its Hessians (the run's teacher on subset {name!r})")
            with HessianStore(hessians) as hs:
                covered = "train" in hs.splits
            if not covered:
                raise fail(
                    "has no teacher Hessian rows of its train split",
                    "label it with the train split among the teacher's hessian_splits "
                    "(workflow: teachers.<teacher>.hessian_splits)",
                    path=hessians,
                )
        try:
            model.check_numbers(numbers)
        except HessdistillError as exc:
            raise fail(
                f"has elements the student cannot embed: {str(exc).splitlines()[0]}",
                f"use a student that embeds them (e.g. a larger num_elements), or remove {name!r} from {key}",
            ) from None
        out.append(
            DistillDataset(
                structures,
                "train",
                base.cutoff,
                labels=labels if base_teacher is not None else None,
                hessians=hessians if use_hessians else None,
                node_features=base.node_feats is not None,
                dtype=base.dtype,
                energy_source=base.energy_source,
                student=model,
                subset=name,
            )
        )
    return out


def _fit_to_training_data(model, train_ds, device, dtype):
    """Fit the student's element energies and energy scale (RMS force) on the training set (every structure of it,
    in its order: the run's own train split, then the extra subsets'), move it to the
    training device and dtype, and let it fit what else it derives from data (its ``prepare_for_training`` on
    the first :data:`PREPARE_STRUCTURES` structures).  Returns the moved model."""
    e_train, z_train = train_ds.energies_and_numbers()
    model.fit_element_energies(z_train, e_train)
    f_all = np.concatenate([train_ds[i].forces.numpy().reshape(-1) for i in range(len(train_ds))])
    model.set_energy_scale(float(np.sqrt(np.mean(f_all**2))) or 1.0)
    model = model.to(device=device, dtype=dtype)
    with torch.no_grad():
        model.prepare_for_training(
            collate([train_ds[i] for i in range(min(PREPARE_STRUCTURES, len(train_ds)))]).to(device)
        )
    return model


def train_one_epoch(run: Setup, state: dict, epoch: int, t_start: float):
    """Train epoch ``epoch`` (0-based) of ``run``, ``t_start`` its (resume-adjusted) start time; counts its steps in
    ``state``.  Returns (sums of the loss terms over the steps, number of steps, Hessian outliers counted), sums and
    count as device tensors (no host sync per step).  Raises if any step's loss was not finite."""
    cfg = run.cfg
    run.model.train()
    order = np.random.default_rng([cfg.seed, epoch]).permutation(len(run.train_ds))
    run.sampler.set_position(epoch, 0)
    run.weights.hessian = run.hessian_schedule.start_epoch(state, epoch, time.perf_counter() - t_start)
    sums, n_batches, finite, outliers = {}, 0, [], 0
    n_steps = max(1, -(-len(order) // cfg.batch_size))
    for b0 in range(0, len(order), cfg.batch_size):
        run.lr_schedule.before_step(epoch + b0 / cfg.batch_size / n_steps, time.perf_counter() - t_start)
        batch = _to_device(run.sampler([run.train_ds[int(i)] for i in order[b0 : b0 + cfg.batch_size]]), run.device)
        total, terms, ok = take_step(run, batch)
        finite.append(ok)
        # accumulate on the device; converted once per epoch (no host sync per step)
        if "hessian_outliers" in terms:  # a count of structures, summed over the epoch (not averaged)
            outliers = outliers + terms.pop("hessian_outliers")
        for k, v in terms.items():
            sums[k] = sums.get(k, 0.0) + v
        sums["total"] = sums.get("total", 0.0) + total
        n_batches += 1
        state["steps"] += 1
    if finite and not bool(torch.stack(finite).all()):  # the epoch's one host sync for this check
        _raise_non_finite(torch.stack(finite), order, cfg, run.train_ds, epoch, sums)
    return sums, n_batches, outliers


def take_step(run: Setup, batch):
    """One optimiser step on ``batch``: loss, backward, gradient clipping, AdamW, EMA update, feedback to an
    error-weighted row sampler.  Returns (detached total loss, detached terms, whether the loss was finite: a
    device tensor, checked by :func:`train_one_epoch` once per epoch)."""
    cfg = run.cfg
    total, terms, per_slot = compute_loss(
        run.model,
        batch,
        run.weights,
        projection=run.projection,
        squared_hessian=cfg.method == "hessian-projection",
        vjp_method=cfg.vjp_method,
        n2n_reduction=cfg.n2n_reduction,
        hessian_outlier_threshold=cfg.hessian_outlier_threshold,
        hessian_outlier_weight=cfg.hessian_outlier_weight,
    )
    finite = torch.isfinite(total.detach())
    run.optimizer.zero_grad(set_to_none=True)
    total.backward()
    torch.nn.utils.clip_grad_norm_(run.params, cfg.grad_clip)
    run.optimizer.step()
    run.ema.update(run.model)
    if per_slot is not None and run.sampler.weighting == "error":  # the only sampler that needs them
        run.sampler.feedback(per_slot.cpu().numpy())
    return total.detach(), terms, finite


def _record_epoch(run: Setup, state: dict, sums: dict, n_batches: int, outliers, val: dict) -> None:
    """Append the finished epoch's row (log.csv) to ``state["log"]``, and add its Hessian outliers to the run's."""
    cfg = run.cfg
    row = {
        "epoch": state["epoch"],
        "steps": state["steps"],
        "lr": run.optimizer.param_groups[0]["lr"],
        "lambda_h": state["lambda_h"],
        **{f"train_{k}": float(v) / max(n_batches, 1) for k, v in sums.items()},
        **{f"val_{k}": v for k, v in val.items()},
        "elapsed_s": state["elapsed_s"],
    }
    if cfg.hessian_outlier_threshold is not None:  # never silent: structures whose Hessian term was down-weighted
        row["hessian_outliers"] = int(outliers)
        state["hessian_outliers"] = state.get("hessian_outliers", 0) + int(outliers)
        if outliers:
            log.info(
                "epoch %d: %d structure-step(s) with a teacher Hessian entry above %g eV/Å² had their "
                "Hessian term multiplied by %g",
                state["epoch"],
                int(outliers),
                cfg.hessian_outlier_threshold,
                cfg.hessian_outlier_weight,
            )
    state["log"].append(row)


def _summary(run: Setup, state: dict, resumed_from: int | None) -> dict:
    """The run's summary (summary.json)."""
    cfg = run.cfg
    return {
        "epochs": state["epoch"],
        "steps": state["steps"],
        "best_val_force_mae_meV_A": state["best_val"],
        "teacher_val_force_mae_meV_A": run.teacher_mae,
        "lambda_h_final": state["lambda_h"],
        "lambda_h_schedule_threshold_meV_A": run.hessian_schedule.threshold,
        "lambda_h_halved": state["lambda_h_halved"],
        "hessian_phase_end_epoch": state.get("hessian_phase_end_epoch"),
        "hessian_outliers": state.get("hessian_outliers") if cfg.hessian_outlier_threshold is not None else None,
        "n_params": run.model.n_params,
        "train_time_s": state["elapsed_s"],
        "method": cfg.method,
        "resumed_from_epoch": resumed_from,
        "train_structures": run.train_ds.structures_per_subset(),
        **device_record(run.device),
        "student": run.model.config()
        | {"embedding_init": "teacher table" if "embedding_init" in run.student_cfg else None},
    }


def _to_device(batch, device):
    """Host-to-device copy of a training batch; on CUDA from pinned memory, without blocking the host."""
    if device.type == "cuda":
        return batch.pin_memory().to(device, non_blocking=True)
    return batch.to(device)


def _raise_non_finite(flags: torch.Tensor, order, cfg, ds, epoch: int, sums: dict):
    """A non-finite loss in this epoch: name the batch's structures (split, indices, formulas) and the terms."""
    step = int((~flags.cpu()).nonzero()[0])
    idx = [int(i) for i in order[step * cfg.batch_size : (step + 1) * cfg.batch_size]]
    joined = len(ds.parts) > 1  # then name each structure's subset and index there too
    names = ", ".join(
        f"{i} ({ds.atoms[i].get_chemical_formula()}{': ' + ds.describe(i) if joined else ''})" for i in idx
    )
    terms = ", ".join(k for k, v in sums.items() if not bool(torch.isfinite(torch.as_tensor(v)).all())) or "unknown"
    raise HessdistillError(
        f"file {str(ds.structures_path)!r}: non-finite training loss at epoch {epoch + 1}, step {step + 1}, in the "
        f"batch of structures {names} of split {ds.split!r} (non-finite terms: {terms})\n"
        "  fix: inspect these structures (overlapping atoms, huge forces: drop them with a selector such as "
        "max_force), or lower lr; the last good checkpoint (last.pt) is kept"
    )


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
