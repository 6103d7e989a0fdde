"""Training checkpoints: ``last.pt``, written atomically after every epoch, and what may resume from it.

``last.pt`` holds the run's settings (``config``), the model, the EMA weights and their update count, the optimiser,
the learning-rate scheduler, the n2n projection (or None), the Hessian-row sampler, the CPU (and CUDA) RNG states,
the run's state (epoch, best validation MAE, λ_H schedule, log, elapsed time, steps) and its provenance (content
fingerprints of the train and val splits, the training code's hash).  A checkpoint is resumed only when it was made
with the same settings (:func:`resume_key`: budget and how the run executes aside), from the same data and by the
same code (:func:`mismatch`); :func:`resumable_checkpoint` otherwise discards it or refuses.

Student checkpoints (``best.pt``, ``model.pt``: weights for use, not for resuming) are written and read by
:mod:`hessdistill.students.checkpoint`.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from ..core.atomic import atomic_torch_save
from ..core.errors import HessdistillError

log = logging.getLogger("hessdistill.jobs.train")

#: options that may differ between a checkpoint and the run resuming it: the budget (which may be extended) and
#: how the run executes (thread count; device: a GPU checkpoint resumes on a CPU node and back; deterministic kernels)
NOT_IN_RESUME_KEY = ("max_epochs", "max_time_s", "threads", "device", "deterministic")


def resume_key(cfgd: dict) -> dict:
    """The settings (a TrainConfig as a dict) that must match to resume: all but :data:`NOT_IN_RESUME_KEY`."""
    return {k: v for k, v in cfgd.items() if k not in NOT_IN_RESUME_KEY}


def mismatch(ck: dict, cfgd: dict, provenance: dict) -> str | None:
    """Why checkpoint ``ck`` cannot be resumed by a run with settings ``cfgd`` on ``provenance``; None if it can."""
    old, new = resume_key(ck.get("config", {})), resume_key(cfgd)
    if old != new:
        keys = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
        return "its settings differ (" + ", ".join(f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in keys) + ")"
    if "inputs" not in ck:
        return "it predates input tracking (no data fingerprint recorded)"
    keys = sorted(set(provenance["inputs"]) | set(ck["inputs"]))
    changed = [s for s in keys if ck["inputs"].get(s) != provenance["inputs"].get(s)]
    if changed:
        return (
            f"its training data differ (split(s) {', '.join(changed)}: structures, labels or Hessian rows "
            "changed since the checkpoint was written)"
        )
    if ck.get("code") != provenance["code"]:
        return f"the training code changed (code hash {ck.get('code')} -> {provenance['code']})"
    return None


def resumable_checkpoint(out: Path, cfgd: dict, provenance: dict, on_mismatch: str):
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
        why = mismatch(ck, cfgd, provenance)
    if why is None and not (out / "best.pt").exists():
        why = "best.pt (the best weights so far) is missing beside it"
    if why is None:
        return ck
    if on_mismatch == "error":
        raise HessdistillError(
            f"file {str(last)!r} cannot be resumed: {why}\n  fix: delete {last} and "
            f"{out / 'best.pt'} to start this run over, or restore the settings and data it was made "
            "with"
        )
    log.warning("not resuming from %s: %s; starting this run over", last, why)
    for name in ("last.pt", "best.pt"):
        (out / name).unlink(missing_ok=True)
    return None


def save_checkpoint(
    path, *, cfgd: dict, model, ema, optimizer, lr_schedule, projection, sampler, device, state: dict, provenance: dict
) -> None:
    """Write the training checkpoint (``last.pt``) atomically; the RNG states are read now."""
    atomic_torch_save(
        path,
        {
            "config": cfgd,
            "model": model.state_dict(),
            "ema": ema.shadow.state_dict(),
            "ema_updates": ema.num_updates,
            "optimizer": optimizer.state_dict(),
            "scheduler": lr_schedule.state_dict(),
            "projection": projection.state_dict() if projection is not None else None,
            "sampler": sampler.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
            "state": state,
            **provenance,
        },
    )


def restore_checkpoint(ck: dict, *, model, ema, optimizer, lr_schedule, projection, sampler, device) -> dict:
    """Load checkpoint ``ck`` (from :func:`resumable_checkpoint`) into the run's objects and the RNGs; returns its
    run state."""
    model.load_state_dict(ck["model"])
    ema.shadow.load_state_dict(ck["ema"])
    ema.num_updates = int(ck["ema_updates"])
    optimizer.load_state_dict(ck["optimizer"])
    lr_schedule.load_state_dict(ck["scheduler"])
    if projection is not None:
        projection.load_state_dict(ck["projection"])
    sampler.load_state_dict(ck["sampler"])
    torch.set_rng_state(ck["torch_rng"])
    if device.type == "cuda" and ck.get("cuda_rng") is not None:
        torch.cuda.set_rng_state(ck["cuda_rng"], device)
    return ck["state"]
