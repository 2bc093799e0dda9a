"""Boundary checks a family's loss runs on the batches its collators produce."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from jaxtyping import Bool, Integer
from torch import Tensor as TT

__all__ = ["TRAINING_KEYS", "training_tensors"]

TRAINING_KEYS = ("input_ids", "attention_mask", "target_ids")


def training_tensors(
    batch: Mapping[str, Any], owner: str
) -> tuple[Integer[TT, "batch seq_len"], Bool[TT, "batch seq_len"], Integer[TT, "batch seq_len"]]:
    """``input_ids``, ``attention_mask`` (as bool) and ``target_ids`` of a training batch.

    A missing key or tensors of different shapes is a one-line error naming ``owner`` (the loss), so a
    collator that does not fit the loss fails at the first batch, not somewhere inside the model.
    """
    missing = [k for k in TRAINING_KEYS if k not in batch]
    if missing:
        raise KeyError(f"{owner} needs batch keys {', '.join(TRAINING_KEYS)}; missing {missing}.")
    input_ids, attention_mask, target_ids = batch["input_ids"], batch["attention_mask"], batch["target_ids"]
    if not (input_ids.shape == attention_mask.shape == target_ids.shape):
        raise ValueError(
            f"{owner}: input_ids, attention_mask and target_ids must share one (batch, seq_len) shape, got "
            f"{tuple(input_ids.shape)}, {tuple(attention_mask.shape)}, {tuple(target_ids.shape)}."
        )
    return input_ids, attention_mask.bool(), target_ids
