"""The options of a training run (:class:`TrainConfig`, checked by :meth:`TrainConfig.from_dict`) and the loss
weights each method implies (:func:`method_weights`).

The workflow's run options (``schemas/config.schema.yaml``, ``$defs/run``) are these fields plus the workflow's own
keys (:data:`hessdistill.workflow.params.RUN_WORKFLOW_KEYS`); tests/test_training_config.py keeps the two in step.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..core.errors import HessdistillError
from .losses import N2N_REDUCTIONS, LossWeights

#: the training methods: the paper's Hessian distillation (rows or random projections) and its baselines
METHODS = ("undistilled", "hessian", "hessian-projection", "n2n", "a2a", "teacher-forces")

#: the learning-rate schedules (:class:`hessdistill.training.schedule.LearningRateSchedule`)
LR_SCHEDULES = ("plateau", "cosine")

#: AdamW's multi-tensor implementation: one kernel per operation over all parameters instead of one per
#: parameter (the same update; on a small student on a CPU the per-parameter loop is a visible part of a step)
OPTIMIZER_OPTIONS = {"foreach": True}


@dataclass
class TrainConfig:
    """The options of one training run (the comments say what each does); :meth:`from_dict` checks them."""

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
    #: names of further subsets whose train split (with the same teacher's labels and Hessian rows) is added to
    #: the training set, in this order after the run's own subset; validation stays the run's own subset's.
    #: The files of each are given to :func:`hessdistill.training.train` as ``extra_train`` (the workflow: its
    #: results of that subset); part of the resume key
    extra_train_subsets: list = field(default_factory=list)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        """The run with options ``d``; unknown options and invalid values raise a HessdistillError."""
        unknown = sorted(set(d) - set(cls.__dataclass_fields__))
        if unknown:
            raise HessdistillError(f"unknown training option(s) {unknown}; valid: {sorted(cls.__dataclass_fields__)}")
        cfg = cls(**d)
        names = cfg.extra_train_subsets
        if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) and n for n in names):
            raise HessdistillError(f"extra_train_subsets must be a list of subset names, got {names!r}")
        if len(set(names)) != len(names):
            raise HessdistillError(f"extra_train_subsets lists a subset more than once: {list(names)}")
        cfg.extra_train_subsets = list(names)
        if cfg.method not in METHODS:
            raise HessdistillError(f"unknown method {cfg.method!r}; choose one of {METHODS}")
        if not 0.0 < cfg.hessian_until <= 1.0:
            raise HessdistillError(
                f"hessian_until must be in (0, 1] (a fraction of the budget), got {cfg.hessian_until}"
            )
        if cfg.lr_schedule not in LR_SCHEDULES:
            raise HessdistillError(f"unknown lr_schedule {cfg.lr_schedule!r}; choose one of {LR_SCHEDULES}")
        if cfg.n2n_reduction not in N2N_REDUCTIONS:
            raise HessdistillError(f"unknown n2n_reduction {cfg.n2n_reduction!r}; choose one of {N2N_REDUCTIONS}")
        if not cfg.adam_eps > 0:
            raise HessdistillError(f"adam_eps must be > 0, got {cfg.adam_eps}")
        if cfg.hessian_outlier_threshold is not None and not cfg.hessian_outlier_threshold > 0:
            raise HessdistillError(
                f"hessian_outlier_threshold must be > 0 (eV/Å²) or None, got {cfg.hessian_outlier_threshold}"
            )
        if not 0.0 <= cfg.hessian_outlier_weight <= 1.0:
            raise HessdistillError(f"hessian_outlier_weight must be in [0, 1], got {cfg.hessian_outlier_weight}")
        return cfg


def method_weights(cfg: TrainConfig) -> LossWeights:
    """Paper defaults per method, overridden by ``cfg.weights``."""
    base = {
        "undistilled": dict(hessian=0.0),
        "hessian": {},
        "hessian-projection": {},
        "n2n": dict(hessian=0.0, n2n=1000.0),
        "a2a": dict(hessian=0.0),
        "teacher-forces": dict(energy=0.0, forces=0.0, hessian=0.0, teacher_forces=100.0),
    }[cfg.method]
    w = LossWeights(**base)
    for k, v in cfg.weights.items():
        if not hasattr(w, k) or k == "extra":
            raise HessdistillError(
                f"unknown loss weight {k!r}; valid: energy, forces, hessian, energy_grad, teacher_forces, n2n"
            )
        setattr(w, k, float(v))
    return w
