"""What changes over a training run: the Hessian loss weight λ_H and the learning rate.

:class:`HessianWeightSchedule`: λ_H starts at the method's weight and is multiplied once by
``hessian_schedule_factor`` (halved, by default) after the first epoch whose validation force MAE reaches the
threshold (``hessian_schedule_threshold`` x the teacher's validation force MAE, or the absolute
``hessian_schedule_force_mae``); it is 0 from the first epoch that starts at or past ``hessian_until`` of the
budget.  Its state lives in the run's state dict (``lambda_h``, ``lambda_h_halved``, ``hessian_phase_end_epoch``),
which the training checkpoint saves.  No other loss weight changes during a run.

:class:`LearningRateSchedule`: ``"plateau"`` (ReduceLROnPlateau on the validation force MAE, stepped once per
epoch) or ``"cosine"`` (:func:`cosine_lr` of the budget spent, :func:`budget_fraction`, set before every step).
"""

from __future__ import annotations

import logging
import math

import torch

log = logging.getLogger("hessdistill.jobs.train")


def budget_fraction(cfg, epoch: float, elapsed_s: float) -> float:
    """How much of the run's budget is spent, in [0, 1]: the larger of the epoch and wall-time fractions."""
    frac = epoch / max(cfg.max_epochs, 1)
    if cfg.max_time_s:
        frac = max(frac, elapsed_s / cfg.max_time_s)
    return min(max(frac, 0.0), 1.0)


def cosine_lr(cfg, frac: float) -> float:
    """The cosine schedule's learning rate at budget fraction ``frac``: from ``cfg.lr`` (0) to ``cfg.min_lr`` (1)."""
    return cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1.0 + math.cos(math.pi * frac))


class LearningRateSchedule:
    """The learning rate of ``optimizer`` over a run with options ``cfg`` (its ``lr_schedule``).

    The ReduceLROnPlateau scheduler exists for both schedules (its state is part of every training checkpoint);
    it only acts with ``"plateau"``.
    """

    def __init__(self, cfg, optimizer):
        self.cfg = cfg
        self.optimizer = optimizer
        self.plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="min", factor=cfg.lr_factor, patience=cfg.lr_patience, min_lr=cfg.min_lr
        )

    def before_step(self, epochs_done: float, elapsed_s: float) -> None:
        """Cosine: set the learning rate for a step at ``epochs_done`` (fractional) and ``elapsed_s`` into the run."""
        if self.cfg.lr_schedule == "cosine":
            lr = cosine_lr(self.cfg, budget_fraction(self.cfg, epochs_done, elapsed_s))
            for group in self.optimizer.param_groups:
                group["lr"] = lr

    def after_epoch(self, val_force_mae: float) -> None:
        """Plateau: step the scheduler on the epoch's validation force MAE (meV/Å)."""
        if self.cfg.lr_schedule == "plateau":
            self.plateau.step(val_force_mae)

    def state_dict(self) -> dict:
        return self.plateau.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.plateau.load_state_dict(state)


class HessianWeightSchedule:
    """λ_H over a run with options ``cfg``: see the module docstring.

    ``teacher_mae``: the teacher's validation force MAE (meV/Å) against the reference labels, or None.
    ``initial``: the method's λ_H (0: nothing to schedule, and no warning when the threshold is unknown).
    """

    def __init__(self, cfg, teacher_mae: float | None, initial: float):
        self.cfg = cfg
        self.initial = initial
        #: the validation force MAE (meV/Å) at which λ_H is multiplied by the factor; None: never
        self.threshold = None
        if cfg.hessian_schedule_force_mae is not None:
            self.threshold = float(cfg.hessian_schedule_force_mae)
        elif teacher_mae is not None and teacher_mae > 1e-6:
            self.threshold = cfg.hessian_schedule_threshold * teacher_mae
        elif initial > 0:
            log.warning(
                "lambda_H schedule inactive: the teacher's validation force MAE against the reference labels "
                "is %s (the reference labels are the teacher's own?); set hessian_schedule_force_mae (meV/Å) "
                "for an absolute threshold",
                "unknown" if teacher_mae is None else f"{teacher_mae:.3g} meV/Å",
            )

    def initial_state(self) -> dict:
        """The schedule's entries of a new run's state."""
        return {"lambda_h": self.initial, "lambda_h_halved": False}

    def start_epoch(self, state: dict, epoch: int, elapsed_s: float) -> float:
        """λ_H for ``epoch`` (0-based), starting ``elapsed_s`` into the run: 0 from the end of the Hessian phase on."""
        cfg = self.cfg
        if (
            state["lambda_h"] > 0
            and cfg.hessian_until < 1.0
            and budget_fraction(cfg, epoch, elapsed_s) >= cfg.hessian_until
        ):
            state["lambda_h"] = 0.0
            state["hessian_phase_end_epoch"] = epoch
            log.info(
                "end of the Hessian phase (hessian_until %.2f of the budget) at epoch %d: lambda_H -> 0",
                cfg.hessian_until,
                epoch,
            )
        return state["lambda_h"]

    def end_epoch(self, state: dict, val_force_mae: float) -> None:
        """Multiply λ_H by the factor, once per run, when the epoch's validation force MAE reaches the threshold."""
        if (
            self.threshold is not None
            and not state["lambda_h_halved"]
            and state["lambda_h"] > 0
            and val_force_mae <= self.threshold
        ):
            state["lambda_h"] *= self.cfg.hessian_schedule_factor
            state["lambda_h_halved"] = True
            log.info(
                "val force MAE %.2f <= %.2f (schedule threshold): lambda_H -> %g",
                val_force_mae,
                self.threshold,
                state["lambda_h"],
            )
