"""Conformance checks for a family's collator (list of examples -> padded batch of tensors)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from xlm_core.testing.batch_utils import assert_batch_unchanged, clone_batch
from xlm_core.testing.registry import NotApplicable, register

__all__ = [
    "CollatorSubject",
    "check_collator_shapes",
    "check_collator_block_size",
    "check_collator_padding",
    "default_block_size",
]

# Per-token fields that must share the (batch, seq_len) shape of input_ids when present.
SEQUENCE_KEYS = ("input_ids", "attention_mask", "target_ids", "token_type_ids", "positions")


@dataclass
class CollatorSubject:
    """What the collator checks need. ``block_size``: the longest ``input_ids`` row the collator may emit.

    ``role="prediction"``: the batch's ``target_ids`` hold the reference apart from the prompt, so they
    are not checked position by position against ``input_ids``.

    ``pad_token_id`` / ``vocab_size`` default to those of ``collator.tokenizer`` when it has one.
    """

    collator: Any
    raw_examples: list[dict[str, Any]]
    block_size: int | None = None
    ignore_index: int = -100
    pad_token_id: int | None = None
    vocab_size: int | None = None
    role: str | None = None

    @property
    def aligned_keys(self) -> tuple[str, ...]:
        """Per-token fields that share input_ids' shape; a prediction batch keeps its targets apart."""
        return tuple(k for k in SEQUENCE_KEYS if not (self.role == "prediction" and k == "target_ids"))

    def __post_init__(self) -> None:
        tokenizer = getattr(self.collator, "tokenizer", None)
        if tokenizer is not None:
            if self.pad_token_id is None:
                self.pad_token_id = tokenizer.pad_token_id
            if self.vocab_size is None:
                self.vocab_size = len(tokenizer)


def default_block_size(collator: Any) -> int | None:
    """The longest row a collator may emit: ``block_size`` plus a positive ``input_block_size``."""
    size = getattr(collator, "block_size", None)
    extra = getattr(collator, "input_block_size", None)
    if size is not None and isinstance(extra, int) and extra > 0:
        size += extra
    return size


def _collate(s: CollatorSubject) -> dict[str, Any]:
    assert s.raw_examples, "raw_examples is empty; give the collator checks at least two examples."
    before = clone_batch(s.raw_examples)
    batch = s.collator(s.raw_examples)
    assert_batch_unchanged(before, s.raw_examples, "raw_examples")
    assert isinstance(batch, dict), f"the collator must return a dict; got {type(batch).__name__}."
    for key in ("input_ids", "attention_mask"):
        assert isinstance(batch.get(key), torch.Tensor), f"the batch has no tensor {key!r} (keys: {sorted(batch)})."
    return batch


@register("collator")
def check_collator_shapes(s: CollatorSubject) -> None:
    """Every tensor has the batch size first; per-token fields share input_ids' (batch, seq_len) shape."""
    batch = _collate(s)
    ids = batch["input_ids"]
    n = len(s.raw_examples)
    assert ids.dim() == 2 and ids.shape[0] == n, f"input_ids has shape {tuple(ids.shape)}; expected ({n}, seq_len)."
    assert not ids.is_floating_point(), f"input_ids must be integer; got {ids.dtype}."
    for key in s.aligned_keys:
        value = batch.get(key)
        if isinstance(value, torch.Tensor):
            assert value.shape == ids.shape, (
                f"batch[{key!r}] has shape {tuple(value.shape)} but input_ids has {tuple(ids.shape)}."
            )
    for key, value in batch.items():
        if isinstance(value, torch.Tensor) and value.dim() > 0:
            assert value.shape[0] == n, f"batch[{key!r}] has {value.shape[0]} rows for {n} examples."


@register("collator")
def check_collator_block_size(s: CollatorSubject) -> None:
    """No row is longer than ``block_size`` (include an example longer than it to test truncation)."""
    if s.block_size is None:
        raise NotApplicable("no block_size given for the collator.")
    length = _collate(s)["input_ids"].shape[1]
    assert length <= s.block_size, f"the collator emitted rows of length {length} > block_size={s.block_size}."


@register("collator")
def check_collator_padding(s: CollatorSubject) -> None:
    """Padding is marked by attention_mask 0, holds the pad id, and its targets are the ignore index."""
    batch = _collate(s)
    ids, mask = batch["input_ids"], batch["attention_mask"]
    values = set(mask.unique().tolist())
    assert values <= {0, 1}, f"attention_mask must hold only 0/1 (or False/True); got values {sorted(values)}."
    pad = ~mask.bool()
    if s.vocab_size is not None:
        assert bool(((ids >= 0) & (ids < s.vocab_size)).all()), f"input_ids outside [0, {s.vocab_size})."
    targets = batch.get("target_ids") if "target_ids" in s.aligned_keys else None
    if isinstance(targets, torch.Tensor) and s.vocab_size is not None:
        ok = (targets == s.ignore_index) | ((targets >= 0) & (targets < s.vocab_size))
        assert bool(ok.all()), f"target_ids hold values outside [0, {s.vocab_size}) other than {s.ignore_index}."
    if not pad.any():
        raise NotApplicable("the batch has no padding; give raw_examples of different lengths.")
    if s.pad_token_id is not None:
        assert bool((ids[pad] == s.pad_token_id).all()), (
            f"padded positions of input_ids hold {sorted(set(ids[pad].tolist()))}, not pad_token_id={s.pad_token_id}."
        )
    if isinstance(targets, torch.Tensor):
        assert bool((targets[pad] == s.ignore_index).all()), (
            f"target_ids at padded positions hold {sorted(set(targets[pad].tolist()))}; they must all be the "
            f"ignore index {s.ignore_index} so the loss skips them."
        )
