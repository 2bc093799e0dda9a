"""Small helpers shared by the checks: cloning and comparing batches of tensors."""

from __future__ import annotations

import copy
from typing import Any

import torch

__all__ = ["clone_batch", "assert_batch_unchanged"]


def clone_batch(batch: Any) -> Any:
    """Deep copy of a batch (dicts / lists of tensors and plain values)."""
    return copy.deepcopy(batch)


def assert_batch_unchanged(before: Any, after: Any, what: str) -> None:
    """Fail when a component mutated its input in place (a classic source of silent bugs)."""
    if isinstance(before, torch.Tensor):
        assert isinstance(after, torch.Tensor) and before.shape == after.shape and torch.equal(before, after), (
            f"{what} was modified in place."
        )
    elif isinstance(before, dict):
        assert isinstance(after, dict) and set(before) == set(after), (
            f"{what}: keys changed from {sorted(before)} to {sorted(after) if isinstance(after, dict) else after}."
        )
        for key in before:
            assert_batch_unchanged(before[key], after[key], f"{what}[{key!r}]")
    elif isinstance(before, (list, tuple)):
        assert isinstance(after, (list, tuple)) and len(before) == len(after), f"{what} changed length."
        for i, (b, a) in enumerate(zip(before, after)):
            assert_batch_unchanged(b, a, f"{what}[{i}]")
    else:
        assert before == after, f"{what} changed from {before!r} to {after!r}."
