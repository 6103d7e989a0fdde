"""Device names: "cpu", "cuda", "cuda:1", or "auto"/None (cuda when torch sees a GPU, else cpu).

A job asked for a GPU it cannot use fails at its start, saying which setting asked for it and how to fix
it, instead of dying later inside torch ("Torch not compiled with CUDA enabled").
"""

from __future__ import annotations

import os

import torch

from .errors import HessdistillError

#: where a CUDA device is requested, for error messages
CUDA_SETTINGS = ("the workflow config's use_gpu: true (with gpu_device: cuda), a run's device: cuda, "
                 "or a --device cuda option")


def resolve_device(device) -> torch.device:
    """The torch device for ``device``; "auto" and None pick cuda when available, else cpu.

    Raises :class:`HessdistillError` for a CUDA device that this torch build or this machine cannot provide."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise HessdistillError(f"unknown device {device!r} ({exc})\n  fix: use cpu, cuda, cuda:<index> or auto") from None
    if dev.type == "cuda":
        _check_cuda(dev)
    return dev


def _check_cuda(dev: torch.device) -> None:
    if torch.version.cuda is None and not torch.cuda.is_available():
        problem = f"this PyTorch ({torch.__version__}) is a CPU-only build"
        fix = ("install a CUDA build of the same torch version in this job's environment (PyTorch's CUDA wheel index, "
               "with the constraints file), or set use_gpu: false / device: cpu (or gpu_device: auto to fall back to "
               "the CPU where no GPU is usable)")
    elif not torch.cuda.is_available():
        problem = (f"PyTorch {torch.__version__} (CUDA {torch.version.cuda}) sees no GPU "
                   f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')})")
        fix = ("run the job where a GPU is allocated (Slurm: the config's gpu_request, e.g. {gpu: 1}), check the "
               "driver with nvidia-smi, or set use_gpu: false / gpu_device: auto")
    elif dev.index is not None and dev.index >= torch.cuda.device_count():
        problem = f"cuda:{dev.index} does not exist here ({torch.cuda.device_count()} GPU(s) visible)"
        fix = "use cuda (the first visible GPU) or an index below the number of visible GPUs"
    else:
        return
    raise HessdistillError(f"device {str(dev)!r} was requested ({CUDA_SETTINGS}) but {problem}\n  fix: {fix}")
