"""Iterative unmasking for MLM: each step runs the model once and reveals some masked positions.

Which positions (``unmasking_order``): the most confident ones ("confidence", the default, ranked by
``confidence`` = "top_prob", "prob_diff" or "entropy"; ``confidence=None`` ranks at random), the
leftmost or rightmost still masked ("left_to_right", "right_to_left"), or uniformly random ones
("random", drawn from the generator seeded by ``seed``). How many: ``ceil(masked_left / steps_left)``
per row, or with ``threshold`` (confidence order only) every position whose confidence reaches it (at
least one per row per step, and all that are left on the last step). Revealed tokens are never changed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch
from jaxtyping import Bool, Float, Integer
from torch import Tensor as TT

from xlm_core.kit.answer_slot import answer_slot_start, answer_text
from xlm_core.kit.collate import mask_token_id_of
from xlm_core.kit.positions import positions_from_attention_mask
from xlm_core.kit.prediction import prediction_rows
from xlm_core.kit.sampling import SeededGenerators
from xlm_core.kit.unmasking import (
    CONFIDENCES,
    UNMASKING_ORDERS,
    Confidence,
    UnmaskingOrder,
    check_sampling_options,
    confidence_scores,
    order_scores,
    reveal_top,
    sample_tokens,
)

from .types_mlm import MLMPredictionDict

__all__ = ["MLMPredictor", "CONFIDENCES", "UNMASKING_ORDERS", "confidence_scores"]


class MLMPredictor:
    """Fills the masked positions of a prediction batch in at most ``max_steps`` model calls.

    Args:
        max_steps: most model calls per batch; every mask is revealed by then.
        tokenizer: supplies the mask, EOS and PAD ids and decodes the output.
        model: the MLM (may be assigned later as ``predictor.model``); any callable with the
            ``MLMModel`` signature.
        confidence: how the "confidence" order ranks positions (see module docstring).
        threshold: reveal every position whose confidence reaches it (needs a ``confidence`` and
            ``unmasking_order="confidence"``).
        temperature: 0 = greedy (argmax); > 0 samples from ``softmax(logits / temperature)``,
            restricted to the ``top_k`` tokens or the ``top_p`` nucleus when those are set.
        seed: when set, sampling and random position choice use a generator seeded with it (unset:
            torch's global generator, which the jobs seed with the run's ``seed``).
        unmasking_order: which masked positions a step reveals: "confidence", "left_to_right",
            "right_to_left" or "random" (module docstring). Prediction rows record it, and the step
            that revealed each answer-slot position (``reveal_steps``).
    """

    def __init__(
        self,
        max_steps: int,
        tokenizer: Any,
        model: Callable[..., Any] | None = None,
        confidence: Confidence = "top_prob",
        threshold: float | None = None,
        temperature: float = 0.0,
        top_k: int | None = None,
        top_p: float | None = None,
        seed: int | None = None,
        unmasking_order: UnmaskingOrder = "confidence",
    ) -> None:
        if tokenizer is None:
            raise ValueError("MLMPredictor needs a tokenizer (mask/EOS/PAD ids and decoding).")
        if isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1:
            raise ValueError(f"max_steps must be an int >= 1, got {max_steps!r}.")
        if confidence not in CONFIDENCES:
            raise ValueError(f"Unknown confidence {confidence!r}; use one of {CONFIDENCES}.")
        if unmasking_order not in UNMASKING_ORDERS:
            raise ValueError(f"Unknown unmasking_order {unmasking_order!r}; use one of {', '.join(UNMASKING_ORDERS)}.")
        if threshold is not None and confidence is None:
            raise ValueError("threshold needs a confidence measure; set confidence='top_prob' or threshold=null.")
        if threshold is not None and unmasking_order != "confidence":
            raise ValueError(
                f"threshold reveals positions by confidence, but unmasking_order={unmasking_order}; "
                "set threshold=null or unmasking_order=confidence."
            )
        check_sampling_options(temperature, top_k, top_p)
        self.max_steps = max_steps
        self.tokenizer = tokenizer
        self.model = model
        self.confidence = confidence
        self.threshold = threshold
        self.temperature = float(temperature)
        self.top_k, self.top_p = top_k, top_p
        self.seed = seed
        self.unmasking_order = unmasking_order
        self.mask_token_id = mask_token_id_of(tokenizer, "MLMPredictor")
        self.eos_token_id: int | None = tokenizer.eos_token_id
        self.pad_token_id: int | None = tokenizer.pad_token_id
        self._generators = SeededGenerators(seed)

    # ------------------------------------------------------------------ one step
    def sample_tokens(
        self, logits: Float[TT, "batch seq_len vocab"], generator: torch.Generator | None
    ) -> Integer[TT, "batch seq_len"]:
        """Greedy (temperature 0) or sampled token for every position (``xlm_core.kit.unmasking.sample_tokens``)."""
        return sample_tokens(logits, self.temperature, self.top_k, self.top_p, generator)

    def choose_positions(
        self,
        probs: Float[TT, "batch seq_len vocab"],
        masked: Bool[TT, "batch seq_len"],
        steps_left: int,
        generator: torch.Generator | None,
    ) -> Bool[TT, "batch seq_len"]:
        """The masked positions to reveal now (at least one per row that has any), ranked by ``unmasking_order``."""
        scores = order_scores(self.unmasking_order, probs, masked, self.confidence, generator)
        n_masked = masked.sum(dim=-1, keepdim=True)  # (B, 1)
        if self.threshold is not None and steps_left > 1:
            count = (
                (scores.masked_fill(~masked, float("-inf")) >= self.threshold).sum(dim=-1, keepdim=True).clamp(min=1)
            )
        else:
            count = torch.div(n_masked + steps_left - 1, steps_left, rounding_mode="floor")  # ceil
        return reveal_top(scores, masked, count)

    # ------------------------------------------------------------------ prediction
    def _require_model(self) -> Any:
        if self.model is None:
            raise ValueError("MLMPredictor.model is None; pass model= or set predictor.model before predicting.")
        return self.model

    @torch.no_grad()
    def predict(
        self,
        batch: dict[str, Any],
        batch_idx: int | None = None,
        dataloader_idx: int | None = None,
        dataloader_name: str | None = None,
    ) -> MLMPredictionDict:
        """Fill every mask of ``batch["input_ids"]``; return ids, texts of the answer slot and timings."""
        model = self._require_model()
        input_ids: Integer[TT, "B L"] = batch["input_ids"]
        if input_ids.dim() != 2:
            raise ValueError(f"input_ids must be (batch, seq_len), got {tuple(input_ids.shape)}.")
        attention_mask = batch.get("attention_mask")
        attention_mask = (
            torch.ones_like(input_ids, dtype=torch.bool) if attention_mask is None else attention_mask.bool()
        )
        positions = positions_from_attention_mask(attention_mask)
        generator = self._generators.on(input_ids.device)
        started = time.perf_counter()

        ids = input_ids.clone()
        masked = (ids == self.mask_token_id) & attention_mask  # (B, L)
        start = answer_slot_start(batch, masked)
        steps_taken = torch.zeros(ids.shape[0], dtype=torch.long, device=ids.device)
        revealed_at = torch.full_like(ids, -1)  # the step that revealed each position (-1: never masked)
        for step in range(self.max_steps):
            if not bool(masked.any()):
                break
            logits = model(ids, attention_mask, positions).float()  # (B, L, V)
            logits[..., self.mask_token_id] = float("-inf")  # never reveal a mask as a mask
            probs = logits.softmax(dim=-1)
            reveal = self.choose_positions(probs, masked, self.max_steps - step, generator)
            tokens = self.sample_tokens(logits, generator)
            ids = torch.where(reveal, tokens, ids)
            revealed_at = revealed_at.masked_fill(reveal, step)
            steps_taken += masked.any(dim=-1).long()
            masked = masked & ~reveal
        elapsed = time.perf_counter() - started
        return {
            "text": [self._answer_text(row) for row in ids[:, start:].tolist()],
            "text_with_spl_tokens": self.tokenizer.batch_decode(
                [r[m].tolist() for r, m in zip(ids, attention_mask)], skip_special_tokens=False
            ),
            "ids": ids,
            "attention_mask": attention_mask,
            "positions": positions,
            "time_taken": [elapsed / max(ids.shape[0], 1)] * ids.shape[0],
            "steps_taken": steps_taken.tolist(),
            "output_start_idx": start,
            "reveal_steps": revealed_at[:, start:].tolist(),
        }

    def _answer_text(self, slot: list[int]) -> str:
        """The answer slot decoded up to (not including) the first EOS or PAD."""
        return answer_text(self.tokenizer, slot, (self.eos_token_id, self.pad_token_id))

    # ------------------------------------------------------------------ reporting
    def to_dict(
        self,
        batch: dict[str, Any],
        preds: MLMPredictionDict,
        batch_idx: int | None = None,
        dataloader_idx: int | None = None,
        dataloader_name: str | None = None,
    ) -> list[dict[str, Any]]:
        """One JSON row per example with the keys ARLM rows have (``xlm_core.kit.prediction.prediction_rows``):
        text, text_with_spl_tokens, ids, output_start_idx, prompt, time_taken, target (when the batch has
        ``target_ids``), plus each row's ``metadata`` fields; and this predictor's ``unmasking_order`` and, per
        answer-slot position, the step that revealed it (``reveal_steps``)."""
        rows = prediction_rows(batch, preds, self.tokenizer, self.pad_token_id)
        for i, row in enumerate(rows):
            row["unmasking_order"] = self.unmasking_order
            if "reveal_steps" in preds:
                row["reveal_steps"] = preds["reveal_steps"][i]
        return rows
