"""Typed dictionaries that flow between the MDLM components.

Conventions shared by every MDLM training batch (as in the MLM family, plus the noise time):
- ``input_ids`` is ``z_t``, the noised row: a masked position holds the tokenizer's mask id.
- ``target_ids`` holds the clean token wherever the NELBO scores a token (the answer slot of seq2seq rows,
  every real token of text rows) and -100 elsewhere (prompt, padding). Scored tokens that are not masked
  contribute 0 (SUBS carries them over); the masked ones contribute ``weight(t) * -log p(x | z_t)``.
- ``noise_t`` (batch,) is each row's diffusion time ``t``: the loss reads its NELBO weight from it.
- Packed text rows may add per-document ``positions`` and ``document_ids``; seq2seq rows add
  ``token_type_ids`` (0 prompt side, 1 answer slot).
"""

# No ``from __future__ import annotations`` here: TypedDict reads ``NotRequired`` only from evaluated
# annotations (with string annotations Python 3.11 counts every key as required).
from typing import Any, NotRequired, TypedDict

from jaxtyping import Bool, Float, Integer
from torch import Tensor as TT

from xlm_core.api import LossDict, PackedTrainingBatch, PredictionDict, Seq2SeqTrainingBatch

__all__ = ["MDLMTextBatch", "MDLMSeq2SeqBatch", "MDLMPredictionBatch", "MDLMLossDict", "MDLMPredictionDict"]


class MDLMTextBatch(PackedTrainingBatch):
    """Text batch: ``z_t``, key-padding mask, clean ids (-100 on padding) and each row's time ``noise_t``."""

    noise_t: Float[TT, " batch"]


class MDLMSeq2SeqBatch(Seq2SeqTrainingBatch):
    """Seq2seq batch: clean prompt side, then an answer slot noised to time ``noise_t``; only the slot is scored."""

    noise_t: Float[TT, " batch"]


class MDLMPredictionBatch(TypedDict):
    """Generation batch: the prompt side followed by ``block_size`` mask tokens; the reference apart.

    ``target_ids`` is answer + EOS, right-padded with -100 to ``block_size`` (aligned with the slot).
    """

    input_ids: Integer[TT, " batch seq_len"]
    attention_mask: Bool[TT, " batch seq_len"]
    target_ids: Integer[TT, " batch block_size"]
    token_type_ids: Integer[TT, " batch seq_len"]
    metadata: NotRequired[dict[str, list[Any]]]


MDLMLossDict = LossDict
"""Output of ``MDLMLoss``: ``loss`` (the batch's NELBO in nats per scored token), ``batch_loss`` (each row's) and
``nlls`` (each scored token's NELBO term: ``weight(t) * -log p`` where masked, 0 where carried over)."""


class MDLMPredictionDict(PredictionDict):
    """Output of ``MDLMPredictor.predict``: the core's ``PredictionDict`` and what the sampler cost."""

    num_steps: int  # sampler steps run (at most predictor.num_steps; fewer when every mask was revealed)
    network_calls: int  # model forward passes (the cached sampler skips steps where nothing changed)
    tokens_per_second: float  # tokens revealed per second of sampling
    reveal_steps: list[list[int]]  # per row, per answer-slot position: the step that revealed it (-1: never masked)
