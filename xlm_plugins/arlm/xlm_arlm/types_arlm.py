"""Typed dictionaries that flow between the ARLM components (docs/arlm.md, "Batches").

Conventions shared by every ARLM batch:
- ``attention_mask`` is a **bool** tensor (True = real token, False = padding). The spec table says
  "int"; bool is used so the loss can build ``attention_mask.unsqueeze(1) & tril(...)`` directly,
  and ``cumsum`` on it yields int positions.
- ``target_ids`` uses ``-100`` for every position that must not be scored (prompt, inserted BOS,
  padding, last position).
- ``token_type_ids`` (seq2seq only): 0 for the prompt side (prompt, BOS, padding), 1 for the target
  side (target tokens and the closing EOS).
"""

# No ``from __future__ import annotations`` here: TypedDict reads ``NotRequired`` only from evaluated
# annotations (with string annotations ``metadata`` would count as a required key).
from typing import Any, NotRequired, TypedDict

from jaxtyping import Bool, Integer
from torch import Tensor as TT

from xlm_core.kit.types import IGNORE_INDEX, LossDict, PredictionDict, Seq2SeqTrainingBatch, TrainingBatch
from xlm_core.plugin.protocols import ARLMModel

__all__ = [
    "IGNORE_INDEX",
    "ARLMBatch",
    "ARLMSeq2SeqBatch",
    "ARLMSeq2SeqPredictionBatch",
    "ARLMLossDict",
    "ARLMPredictionDict",
    "ARLMModel",
]


class ARLMBatch(TrainingBatch):
    """Language-model batch: ``target_ids[:, i]`` is the token at ``i + 1`` (or -100).

    Packed rows may add ``positions`` (RoPE positions restarting in each document) and
    ``document_ids`` (attention stays within a document; -1 on padding).
    """

    positions: NotRequired[Integer[TT, " batch seq_len"]]
    document_ids: NotRequired[Integer[TT, " batch seq_len"]]


class ARLMSeq2SeqBatch(Seq2SeqTrainingBatch):
    """Teacher-forced seq2seq batch: prompt + target in one row; only target positions scored."""


class ARLMSeq2SeqPredictionBatch(TypedDict):
    """Generation batch: the left-padded prompt (+BOS) as ``input_ids``; the reference target apart.

    ``target_ids`` is target + EOS, right-padded with -100 to ``target_len`` (not aligned with
    ``input_ids``); it is what the metrics compare generated tokens against. ``metadata`` carries
    each row's scalar non-token fields (e.g. the gold ``answer``) through to the prediction rows.
    """

    input_ids: Integer[TT, " batch prompt_len"]
    attention_mask: Bool[TT, " batch prompt_len"]
    target_ids: Integer[TT, " batch target_len"]
    token_type_ids: Integer[TT, " batch prompt_len"]
    metadata: NotRequired[dict[str, list[Any]]]


ARLMLossDict = LossDict
"""Output of ``ARLMLoss``: the core's :class:`xlm_core.kit.types.LossDict` (loss, batch_loss, nlls)."""


ARLMPredictionDict = PredictionDict
"""Output of ``ARLMPredictor.predict``: the core's :class:`xlm_core.kit.types.PredictionDict`; generated tokens are
``ids[:, output_start_idx:]``."""
