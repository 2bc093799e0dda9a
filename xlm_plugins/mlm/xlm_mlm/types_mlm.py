"""Typed dictionaries that flow between the MLM components.

Conventions shared by every MLM batch:
- ``attention_mask`` is bool (True = real token). Inside a seq2seq answer slot every position is
  real, including the PAD tokens that fill the slot after EOS: they are tokens to predict.
- ``input_ids`` holds the noised row: masked positions carry the tokenizer's mask id.
- ``target_ids`` holds the clean token at every position the loss may score and -100 elsewhere
  (prompt, padding). The loss scores a position only where it is masked and not -100.
- ``token_type_ids`` (seq2seq only): 0 for the prompt side, 1 for the answer slot.
"""

# No ``from __future__ import annotations`` here: TypedDict reads ``NotRequired`` only from evaluated
# annotations (with string annotations Python 3.11 counts every key as required).
from typing import Any, NotRequired, TypedDict

from jaxtyping import Bool, Integer
from torch import Tensor as TT

from xlm_core.kit.types import IGNORE_INDEX, LossDict, PackedTrainingBatch, PredictionDict, Seq2SeqTrainingBatch
from xlm_core.plugin.protocols import MLMModel

__all__ = [
    "IGNORE_INDEX",
    "MLMBatch",
    "MLMSeq2SeqBatch",
    "MLMSeq2SeqPredictionBatch",
    "MLMLossDict",
    "MLMPredictionDict",
    "MLMModel",
]


class MLMBatch(PackedTrainingBatch):
    """Pre-training batch: noised ids, key-padding mask and the clean ids (-100 on padding); packed rows may add
    per-document ``positions`` and ``document_ids``."""


class MLMSeq2SeqBatch(Seq2SeqTrainingBatch):
    """Training batch: visible prompt, then an answer slot of ``block_size`` positions, some masked."""


class MLMSeq2SeqPredictionBatch(TypedDict):
    """Prediction batch: the prompt side followed by ``block_size`` mask tokens; the reference apart.

    ``target_ids`` is answer + EOS, right-padded with -100 to ``block_size`` (aligned with the answer
    slot, not with ``input_ids``): what the metrics compare the filled slot against.
    ``metadata`` carries each row's scalar non-token fields (e.g. a gold ``answer``) to the rows.
    """

    input_ids: Integer[TT, " batch seq_len"]
    attention_mask: Bool[TT, " batch seq_len"]
    target_ids: Integer[TT, " batch block_size"]
    token_type_ids: Integer[TT, " batch seq_len"]
    metadata: NotRequired[dict[str, list[Any]]]


MLMLossDict = LossDict
"""Output of ``MLMLoss``: the core's :class:`xlm_core.kit.types.LossDict` (loss, batch_loss, nlls)."""


class MLMPredictionDict(PredictionDict):
    """Output of ``MLMPredictor.predict``: the core's ``PredictionDict`` (the filled answer slot is
    ``ids[:, output_start_idx:]``) and the model calls each row took."""

    steps_taken: list[int]
    reveal_steps: NotRequired[list[list[int]]]  # per row, per answer-slot position: the step that revealed it
