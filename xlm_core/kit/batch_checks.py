"""Boundary checks a family's loss runs on the batches its collators produce."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from jaxtyping import Bool, Integer
from torch import Tensor as TT

from xlm_core.plugin.names import FamilyNames

__all__ = ["TRAINING_KEYS", "training_tensors"]

_DEFAULT_NAMES = FamilyNames()
TRAINING_KEYS = (_DEFAULT_NAMES.token_key, _DEFAULT_NAMES.mask_key, _DEFAULT_NAMES.target_key)
"""The default keys of a training batch (token ids, key-padding mask, targets); a family declares its own with
``register(names=FamilyNames(...))``."""


def training_tensors(
    batch: Mapping[str, Any], owner: str, names: FamilyNames = _DEFAULT_NAMES
) -> tuple[Integer[TT, "batch seq_len"], Bool[TT, "batch seq_len"], Integer[TT, "batch seq_len"]]:
    """Token ids, key-padding mask (as bool) and targets of a training batch, under the keys of ``names``.

    A missing key or tensors of different shapes is a one-line error naming ``owner`` (the loss), so a
    collator that does not fit the loss fails at the first batch, not somewhere inside the model.
    """
    keys = (names.token_key, names.mask_key, names.target_key)
    missing = [k for k in keys if k not in batch]
    if missing:
        raise KeyError(f"{owner} needs batch keys {', '.join(keys)}; missing {missing}.")
    input_ids, attention_mask, target_ids = (batch[k] for k in keys)
    if not (input_ids.shape == attention_mask.shape == target_ids.shape):
        raise ValueError(
            f"{owner}: {', '.join(keys[:2])} and {keys[2]} must share one (batch, seq_len) shape, got "
            f"{tuple(input_ids.shape)}, {tuple(attention_mask.shape)}, {tuple(target_ids.shape)}."
        )
    return input_ids, attention_mask.bool(), target_ids
