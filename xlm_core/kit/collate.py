"""What every family's collators do before laying out a batch: check the dataset rows, read the
tokenizer's special ids, carry the rows' scalar fields to the prediction rows and count truncation.

The rows are those of the core's datamodules: ``{"input_ids": [...]}`` for language modelling and
``{"prompt_ids": [...], "input_ids": [...]}`` (plus scalar fields such as a gold ``answer``) for seq2seq
data and for the prompts the generate job tokenizes. A bad row fails here with a message naming the
example and the field, not somewhere inside ``torch.tensor``.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from typing import Any

from xlm_core.data.padding import TruncationCounter
from xlm_core.plugin.protocols import Tokenizer

__all__ = [
    "TOKEN_FIELDS",
    "as_ids",
    "validate_examples",
    "tokenizer_vocab_size",
    "required_token_id",
    "mask_token_id_of",
    "row_metadata",
    "TruncationCounting",
]

TOKEN_FIELDS = frozenset({"prompt_ids", "input_ids", "attention_mask", "token_type_ids", "target_ids"})
"""Per-token fields of a row; :func:`row_metadata` passes on every other scalar field."""
_SCALAR_TYPES = (str, bool, int, float, type(None))


def as_ids(value: Any, key: str, index: int, vocab_size: int | None) -> list[int]:
    """``value`` (a list, tuple or 1-D array/tensor of ints) as a list of token ids in ``[0, vocab_size)``.

    Raises TypeError / ValueError naming example ``index`` and field ``key``: text that was not tokenized,
    floats or bools, a 2-D value, a negative id (e.g. -100 labels) or one past the vocabulary.
    """
    if hasattr(value, "tolist") and not isinstance(value, list):
        if getattr(value, "ndim", 1) != 1:
            raise ValueError(f"Example {index}: {key!r} must be 1-D, got shape {tuple(value.shape)}.")
        value = value.tolist()
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise TypeError(
            f"Example {index}: {key!r} must be a list of int token ids, got {type(value).__name__}; "
            "tokenize the text before collating."
        )
    ids = list(value)
    for tok in ids:
        if isinstance(tok, bool) or not isinstance(tok, numbers.Integral):
            raise TypeError(f"Example {index}: {key!r} holds {tok!r} ({type(tok).__name__}); token ids must be ints.")
    if ids and (min(ids) < 0 or (vocab_size is not None and max(ids) >= vocab_size)):
        bad = min(ids) if min(ids) < 0 else max(ids)
        raise ValueError(
            f"Example {index}: {key!r} holds token id {bad}, outside [0, {vocab_size}); "
            "was it built with another tokenizer, or does it contain -100 labels?"
        )
    return [int(t) for t in ids]


def validate_examples(
    examples: Sequence[Mapping[str, Any]], keys: Sequence[str], vocab_size: int | None
) -> list[dict[str, list[int]]]:
    """The ``keys`` of every example as lists of token ids (:func:`as_ids`); an empty list of examples, a row
    that is not a dict or one that lacks a key is an error naming the example."""
    if len(examples) == 0:
        raise ValueError("Cannot collate an empty list of examples.")
    out = []
    for i, ex in enumerate(examples):
        if not isinstance(ex, Mapping):
            raise TypeError(f"Example {i} must be a dict, got {type(ex).__name__}.")
        missing = [k for k in keys if k not in ex]
        if missing:
            raise KeyError(f"Example {i} lacks {missing} (has {sorted(ex)}); this collator needs {list(keys)}.")
        out.append({k: as_ids(ex[k], k, i, vocab_size) for k in keys})
    return out


def tokenizer_vocab_size(tokenizer: Tokenizer) -> int | None:
    """``len(tokenizer)`` (special tokens included), or None for a tokenizer without a length."""
    try:
        return len(tokenizer)
    except TypeError:
        return None


def required_token_id(tokenizer: Tokenizer, attr: str, why: str) -> int:
    """The tokenizer's ``attr`` (e.g. ``"pad_token_id"``); its absence is an error saying ``why`` it is needed."""
    value = getattr(tokenizer, attr, None)
    if value is None:
        raise ValueError(
            f"The tokenizer has no {attr} but {why}; add that special token to the tokenizer "
            "or change the collator setting."
        )
    return int(value)


def mask_token_id_of(tokenizer: Any, who: str) -> int:
    """The tokenizer's ``mask_token_id``, or an error naming the component ``who`` needs it."""
    mask_id = getattr(tokenizer, "mask_token_id", None)
    if mask_id is None:
        raise ValueError(
            f"{who} needs a tokenizer with a mask token; add one (e.g. special_tokens: {{mask_token: '<|mask|>'}})."
        )
    return int(mask_id)


def row_metadata(examples: Sequence[Mapping[str, Any]]) -> dict[str, list[Any]]:
    """Each scalar non-token field that every example has (e.g. the gold ``answer``), as one list per field.

    A prediction collator puts it in the batch as ``metadata``; the predictor copies it into the prediction
    rows, where post-hoc evaluators read it.
    """
    if not examples:
        return {}
    keys = [k for k in examples[0] if k not in TOKEN_FIELDS]
    return {
        key: [ex[key] for ex in examples]
        for key in keys
        if all(key in ex and isinstance(ex[key], _SCALAR_TYPES) for ex in examples)
    }


class TruncationCounting:
    """Mixin exposing a collator's truncation counts (``num_truncated`` / ``num_examples``) from its
    ``truncation`` (an ``xlm_core.data.padding.TruncationCounter``, which logs the cuts)."""

    truncation: TruncationCounter

    @property
    def num_truncated(self) -> int:
        """Examples cut to fit so far."""
        return self.truncation.num_truncated

    @property
    def num_examples(self) -> int:
        """Examples collated so far."""
        return self.truncation.num_examples
