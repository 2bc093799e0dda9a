"""Conformance checks for a family's collator (list of examples -> padded batch of tensors)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from xlm_core.plugin.names import FamilyNames
from xlm_core.testing.batch_utils import assert_batch_unchanged, clone_batch
from xlm_core.testing.registry import NotApplicable, register

__all__ = [
    "CollatorSubject",
    "check_collator_shapes",
    "check_collator_block_size",
    "check_collator_padding",
    "default_block_size",
]

# Per-token fields besides the family's token / mask / target keys that must share the (batch, seq_len) shape of
# the token ids when present.
SEQUENCE_KEYS = ("token_type_ids", "positions")


@dataclass
class CollatorSubject:
    """What the collator checks need. ``block_size``: the longest row of token ids the collator may emit.

    ``names``: the family's declared keys (token ids, mask, targets; ``register(names=FamilyNames(...))``).
    ``role="prediction"``: the batch's targets hold the reference apart from the prompt, so they are not
    checked position by position against the token ids.

    ``ignore_index`` defaults to ``names.ignore_index``; ``pad_token_id`` / ``vocab_size`` to those of
    ``collator.tokenizer`` when it has one.
    """

    collator: Any
    raw_examples: list[dict[str, Any]]
    block_size: int | None = None
    ignore_index: int | None = None
    pad_token_id: int | None = None
    vocab_size: int | None = None
    role: str | None = None
    names: FamilyNames = field(default_factory=FamilyNames)

    @property
    def aligned_keys(self) -> tuple[str, ...]:
        """Per-token fields that share the token ids' shape; a prediction batch keeps its targets apart."""
        n = self.names
        keys = (n.token_key, n.mask_key, n.target_key, *SEQUENCE_KEYS)
        return tuple(k for k in keys if not (self.role == "prediction" and k == n.target_key))

    def __post_init__(self) -> None:
        if self.ignore_index is None:
            self.ignore_index = self.names.ignore_index
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
    for key, field_name, what in (
        (s.names.token_key, "token_key", "token ids"),
        (s.names.mask_key, "mask_key", "key-padding mask"),
    ):
        assert isinstance(batch.get(key), torch.Tensor), (
            f"the batch has no tensor {key!r} (keys: {sorted(batch)}); declare the key of the batch's {what} with "
            f"register(..., names=FamilyNames({field_name}=...))."
        )
    return batch


@register("collator")
def check_collator_shapes(s: CollatorSubject) -> None:
    """Every tensor has the batch size first; per-token fields share the token ids' (batch, seq_len) shape."""
    batch = _collate(s)
    token_key = s.names.token_key
    ids = batch[token_key]
    n = len(s.raw_examples)
    assert ids.dim() == 2 and ids.shape[0] == n, f"{token_key} has shape {tuple(ids.shape)}; expected ({n}, seq_len)."
    assert not ids.is_floating_point(), f"{token_key} must be integer; got {ids.dtype}."
    for key in s.aligned_keys:
        value = batch.get(key)
        if isinstance(value, torch.Tensor):
            assert value.shape == ids.shape, (
                f"batch[{key!r}] has shape {tuple(value.shape)} but {token_key} has {tuple(ids.shape)}."
            )
    for key, value in batch.items():
        if isinstance(value, torch.Tensor) and value.dim() > 0:
            assert value.shape[0] == n, f"batch[{key!r}] has {value.shape[0]} rows for {n} examples."


@register("collator")
def check_collator_block_size(s: CollatorSubject) -> None:
    """No row is longer than ``block_size`` (include an example longer than it to test truncation)."""
    if s.block_size is None:
        raise NotApplicable("no block_size given for the collator.")
    length = _collate(s)[s.names.token_key].shape[1]
    assert length <= s.block_size, f"the collator emitted rows of length {length} > block_size={s.block_size}."


@register("collator")
def check_collator_padding(s: CollatorSubject) -> None:
    """Padding is marked by mask 0, holds the pad id, and its targets are the ignore index."""
    batch = _collate(s)
    token_key, mask_key, target_key = s.names.token_key, s.names.mask_key, s.names.target_key
    ids, mask = batch[token_key], batch[mask_key]
    values = set(mask.unique().tolist())
    assert values <= {0, 1}, f"{mask_key} must hold only 0/1 (or False/True); got values {sorted(values)}."
    pad = ~mask.bool()
    if s.vocab_size is not None:
        assert bool(((ids >= 0) & (ids < s.vocab_size)).all()), f"{token_key} outside [0, {s.vocab_size})."
    targets = batch.get(target_key) if target_key in s.aligned_keys else None
    if isinstance(targets, torch.Tensor) and s.vocab_size is not None:
        ok = (targets == s.ignore_index) | ((targets >= 0) & (targets < s.vocab_size))
        assert bool(ok.all()), f"{target_key} hold values outside [0, {s.vocab_size}) other than {s.ignore_index}."
    if not pad.any():
        raise NotApplicable("the batch has no padding; give raw_examples of different lengths.")
    if s.pad_token_id is not None:
        assert bool((ids[pad] == s.pad_token_id).all()), (
            f"padded positions of {token_key} hold {sorted(set(ids[pad].tolist()))}, not pad_token_id={s.pad_token_id}."
        )
    if isinstance(targets, torch.Tensor):
        assert bool((targets[pad] == s.ignore_index).all()), (
            f"{target_key} at padded positions hold {sorted(set(targets[pad].tolist()))}; they must all be the "
            f"ignore index {s.ignore_index} so the loss skips them."
        )
