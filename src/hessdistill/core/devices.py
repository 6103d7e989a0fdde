"""Device names: "cpu", "cuda", "cuda:1", or "auto"/None (cuda when torch sees a GPU, else cpu).

A job asked for a GPU it cannot use fails at its start, saying which setting asked for it and how to fix
it, instead of dying later inside torch ("Torch not compiled with CUDA enabled").  ``auto`` that falls back
to the CPU although the scheduler gave the job a GPU says so in the log.

Resolving a device also pins float32 matrix products to full precision (``torch.set_float32_matmul_precision
("highest")``, TF32 off for matmul and cuDNN): on Ampere and later GPUs a TF32 default, or an environment that
enables it, would silently cut float32 teacher Hessians and the Hessian loss to ~10 mantissa bits.
:func:`device_record` is what every output records about where it was computed.
"""

from __future__ import annotations

import logging
import os

import torch

from .errors import HessdistillError

#: where a CUDA device is requested, for error messages
CUDA_SETTINGS = (
    "the workflow config's use_gpu: true (with gpu_device: cuda), a run's device: cuda, or a --device cuda option"
)


log = logging.getLogger(__name__)

#: float32 matmul precision hessdistill runs with (see the module docstring)
FLOAT32_MATMUL_PRECISION = "highest"


def pin_float32_precision() -> None:
    """Full float32 precision for matrix products on every backend (no TF32)."""
    torch.set_float32_matmul_precision(FLOAT32_MATMUL_PRECISION)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False


def _scheduler_gave_gpus() -> str | None:
    """The environment variable by which a scheduler says this process was given GPUs, if any."""
    for var in ("SLURM_JOB_GPUS", "SLURM_STEP_GPUS", "CUDA_VISIBLE_DEVICES"):
        v = os.environ.get(var, "").strip()
        if v and v not in ("-1", "NoDevFiles", "none"):
            return f"{var}={v}"
    return None


def resolve_device(device) -> torch.device:
    """The torch device for ``device``; "auto" and None pick cuda when available, else cpu.

    Raises :class:`HessdistillError` for a CUDA device that this torch build or this machine cannot provide.
    Pins float32 matmul precision (module docstring)."""
    pin_float32_precision()
    if device in (None, "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        given = _scheduler_gave_gpus()
        if given:
            log.warning(
                "device 'auto' falls back to the CPU although this job was given GPU(s) (%s): this PyTorch "
                "(%s, CUDA %s) cannot use them; install a CUDA build of torch, or set gpu_device: cuda to "
                "make this an error",
                given,
                torch.__version__,
                torch.version.cuda,
            )
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise HessdistillError(
            f"unknown device {device!r} ({exc})\n  fix: use cpu, cuda, cuda:<index> or auto"
        ) from None
    if dev.type == "cuda":
        _check_cuda(dev)
    return dev


def _check_cuda(dev: torch.device) -> None:
    if torch.version.cuda is None and not torch.cuda.is_available():
        problem = f"this PyTorch ({torch.__version__}) is a CPU-only build"
        fix = (
            "install a CUDA build of the same torch version in this job's environment (PyTorch's CUDA wheel index, "
            "with the constraints file), or set use_gpu: false / device: cpu (or gpu_device: auto to fall back to "
            "the CPU where no GPU is usable)"
        )
    elif not torch.cuda.is_available():
        problem = (
            f"PyTorch {torch.__version__} (CUDA {torch.version.cuda}) sees no GPU "
            f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')})"
        )
        fix = (
            "run the job where a GPU is allocated (Slurm: the config's gpu_request, e.g. {gpu: 1}), check the "
            "driver with nvidia-smi, or set use_gpu: false / gpu_device: auto"
        )
    elif dev.index is not None and dev.index >= torch.cuda.device_count():
        problem = f"cuda:{dev.index} does not exist here ({torch.cuda.device_count()} GPU(s) visible)"
        fix = "use cuda (the first visible GPU) or an index below the number of visible GPUs"
    else:
        return
    raise HessdistillError(f"device {str(dev)!r} was requested ({CUDA_SETTINGS}) but {problem}\n  fix: {fix}")


def device_record(device) -> dict:
    """Where a result was computed: device, GPU name, torch/CUDA versions, float32 precision, determinism."""
    dev = torch.device(device)
    gpu = None
    if dev.type == "cuda" and torch.cuda.is_available():
        gpu = torch.cuda.get_device_name(dev)
    return {
        "device": str(dev),
        "gpu_name": gpu,
        "torch": str(torch.__version__),
        "cuda": torch.version.cuda,
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
        "tf32": bool(torch.backends.cuda.matmul.allow_tf32 or torch.backends.cudnn.allow_tf32),
        "deterministic": torch.are_deterministic_algorithms_enabled(),
    }
