"""Reading what a checkpoint says about itself (its step, the config it was trained with)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

__all__ = ["load_checkpoint", "checkpoint_step"]


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint dict, memory-mapped (tensors are read lazily) and without executing pickled code."""
    return torch.load(path, map_location="cpu", weights_only=True, mmap=True)


def checkpoint_step(path: str | Path) -> int:
    """The optimizer step a checkpoint was saved at."""
    return int(load_checkpoint(path).get("global_step", 0))
