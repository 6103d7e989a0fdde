"""Device names: "cpu", "cuda", "cuda:1", or "auto"/None (cuda when torch sees a GPU, else cpu)."""

from __future__ import annotations

import torch


def resolve_device(device) -> torch.device:
    """The torch device for ``device``; "auto" and None pick cuda when available, else cpu."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)
