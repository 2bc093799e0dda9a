"""Types every family's components pass around: the ignored-target value and the loss's output."""

# No ``from __future__ import annotations`` here: TypedDict reads its fields from evaluated annotations.
from typing import NotRequired, TypedDict

from jaxtyping import Bool, Float, Integer
from torch import Tensor as TT

__all__ = ["IGNORE_INDEX", "TrainingBatch", "PackedTrainingBatch", "Seq2SeqTrainingBatch", "LossDict", "PredictionDict"]

IGNORE_INDEX = -100
"""Target value that the losses and the metrics skip (prompt, padding, the positions nothing is scored at)."""


class TrainingBatch(TypedDict):
    """A training batch under the default names (``FamilyNames()``): token ids, key-padding mask (True = real
    token) and the targets, -100 wherever nothing is scored; a family's batch types extend it."""

    input_ids: Integer[TT, " batch seq_len"]
    attention_mask: Bool[TT, " batch seq_len"]
    target_ids: Integer[TT, " batch seq_len"]


class PackedTrainingBatch(TrainingBatch):
    """A training batch of text rows that may hold several documents (``xlm_core.kit.documents``): ``positions``
    restart at 0 in each document, ``document_ids`` (-1 on padding) keep attention inside a document."""

    positions: NotRequired[Integer[TT, " batch seq_len"]]
    document_ids: NotRequired[Integer[TT, " batch seq_len"]]


class Seq2SeqTrainingBatch(TrainingBatch):
    """A training batch of prompt -> answer rows: ``token_type_ids`` is 0 on the prompt side, 1 on the answer side."""

    token_type_ids: Integer[TT, " batch seq_len"]


class LossDict(TypedDict):
    """What a family's loss returns: the scalar it minimises and what the metric update functions read.

    ``loss`` is the mean NLL over the scored tokens and carries the graph; ``batch_loss`` (each row's mean
    over its scored tokens, 0 for a row with none) and ``nlls`` (one NLL per scored token, row-major) are
    detached. ``xlm_core.kit.metrics`` reads ``loss`` (mean) and ``nlls`` (token NLL, perplexity).
    """

    loss: Float[TT, ""]
    batch_loss: Float[TT, " batch"]
    nlls: Float[TT, " num_scored"]


class PredictionDict(TypedDict):
    """What a predictor's ``predict()`` returns (both families; a family may add keys in a TypedDict of its own).

    ``ids`` holds each whole row (prompt, then what was generated from ``output_start_idx`` on), ``text`` the
    generated part decoded, ``text_with_spl_tokens`` the whole row decoded with special tokens,
    ``attention_mask`` / ``positions`` the row's real tokens and their positions, ``time_taken`` the seconds
    per row. ``xlm_core.kit.metrics`` and ``xlm_core.kit.prediction`` read it.
    """

    text: list[str]
    text_with_spl_tokens: list[str]
    ids: Integer[TT, " batch seq_len"]
    attention_mask: Bool[TT, " batch seq_len"]
    positions: Integer[TT, " batch seq_len"]
    time_taken: list[float]
    output_start_idx: int
