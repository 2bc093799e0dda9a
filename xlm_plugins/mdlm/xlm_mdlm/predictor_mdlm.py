"""MDLM samplers: reverse the masking process from an all-masked slot in ``num_steps`` steps.

The steps walk the time grid ``1 = t_0 > t_1 > ... > t_T = 0`` (``T = num_steps``). From ``t`` to the next
``s`` every still-masked position is revealed with the probability the schedule gives,
``(alpha(s) - alpha(t)) / (1 - alpha(t))`` (``NoiseSchedule.reveal_probability``; 1 on the last step, so the
slot is full at the end). Two ways to choose the positions (``unmasking``):

- ``ancestral``: each masked position independently, with that probability (the MDLM sampler);
- ``confidence``: the ``ceil(n_masked * probability)`` first masked positions of each row in the order
  ``unmasking_order`` gives (``xlm_core.kit.unmasking``, the MLM family's orders): the most confident
  (``confidence``, the default; ``confidence`` picks the measure), the leftmost (``left_to_right``), the
  rightmost (``right_to_left``) or random ones (``random``). With the log-linear schedule the count is
  ``ceil(n_masked / steps_left)``, the MLM family's rule.

A revealed position gets a token drawn from the model's SUBS distribution at that position (greedy with
``temperature: 0``, else temperature / top-k / top-p; the mask token has probability 0), and is never
changed afterwards. ``cache: true`` reuses the model's last output while no position changed since it was
computed (the network has no time input, so the output would be identical): with many more steps than
tokens most steps reveal nothing and cost no network call. Cached and plain samplers consume the same random
numbers, so with the same seed they return the same tokens (tested). Each batch reports its steps, network
calls and tokens per second.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Literal

import torch
from jaxtyping import Bool, Float, Integer
from torch import Tensor as TT

from xlm_core.api import (
    CONFIDENCES,
    UNMASKING_ORDERS,
    NoiseSchedule,
    SeededGenerators,
    answer_slot_start,
    answer_text,
    check_sampling_options,
    mask_token_id_of,
    order_scores,
    positions_from_attention_mask,
    prediction_rows,
    reveal_top,
    sample_tokens,
)

from .collators_mdlm import schedule_or_default
from .types_mdlm import MDLMPredictionDict

__all__ = ["MDLMPredictor", "UNMASKINGS"]

Unmasking = Literal["ancestral", "confidence"]
Confidence = Literal["top_prob", "prob_diff", "entropy"] | None
UNMASKINGS = ("ancestral", "confidence")


class MDLMPredictor:
    """Fills the mask tokens of a prediction batch by reverse diffusion (module docstring).

    Args:
        tokenizer: supplies the mask, EOS and PAD ids and decodes the output.
        num_steps: steps of the time grid (``T``); every mask is revealed by the last one.
        model: the MDLM network (may be assigned later as ``predictor.model``).
        noise_schedule: the schedule of the reveal probabilities (default log-linear); the one the model was
            trained with.
        unmasking: ``ancestral`` (independent reveals) or ``confidence`` (the schedule's share of the
            positions, first in ``unmasking_order``).
        unmasking_order: with ``unmasking: confidence``, which masked positions come first: confidence (the
            default), left_to_right, right_to_left or random.
        confidence: the measure of the ``confidence`` order: top_prob, prob_diff, entropy (null: random).
        cache: skip the network while nothing changed since its last output.
        temperature: 0 = greedy; > 0 samples from ``softmax(logits / temperature)``, restricted to the
            ``top_k`` tokens or the ``top_p`` nucleus when one is set.
        seed: when set, reveals and tokens are drawn from a generator seeded with it (unset: torch's global
            generator, which the jobs seed with the run's ``seed``).
    """

    def __init__(
        self,
        tokenizer: Any,
        num_steps: int = 128,
        model: Callable[..., Any] | None = None,
        noise_schedule: NoiseSchedule | None = None,
        unmasking: str = "ancestral",  # an Unmasking; a str so a bad value meets our one-line error
        confidence: str | None = "top_prob",  # a Confidence
        cache: bool = True,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        seed: int | None = None,
        unmasking_order: str = "confidence",  # an UnmaskingOrder
    ) -> None:
        if tokenizer is None:
            raise ValueError("MDLMPredictor needs a tokenizer (mask/EOS/PAD ids and decoding).")
        if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 1:
            raise ValueError(f"num_steps={num_steps!r} must be an int >= 1 (sampler steps).")
        if unmasking not in UNMASKINGS:
            raise ValueError(f"unmasking={unmasking!r} is not supported; use one of {', '.join(UNMASKINGS)}.")
        if confidence not in CONFIDENCES:
            raise ValueError(f"confidence={confidence!r} is not supported; use one of {CONFIDENCES}.")
        if unmasking_order not in UNMASKING_ORDERS:
            raise ValueError(
                f"unmasking_order={unmasking_order!r} is not supported; use one of {', '.join(UNMASKING_ORDERS)}."
            )
        if unmasking == "ancestral" and unmasking_order != "confidence":
            raise ValueError(
                f"unmasking_order={unmasking_order} orders the positions of unmasking=confidence, but ancestral "
                "unmasking reveals independent random positions; set predictor.unmasking=confidence."
            )
        check_sampling_options(temperature, top_k, top_p)
        self.tokenizer = tokenizer
        self.num_steps = num_steps
        self.model = model
        self.noise_schedule = schedule_or_default(noise_schedule, "MDLMPredictor")
        self.unmasking = unmasking
        self.unmasking_order = unmasking_order
        self.confidence = confidence
        self.cache = bool(cache)
        self.temperature = float(temperature)
        self.top_k, self.top_p = top_k, top_p
        self.seed = seed
        self.mask_token_id = mask_token_id_of(tokenizer, "MDLMPredictor")
        self.eos_token_id: int | None = tokenizer.eos_token_id
        self.pad_token_id: int | None = tokenizer.pad_token_id
        self._generators = SeededGenerators(seed)

    # ------------------------------------------------------------------ one step
    def _network(
        self, ids: Integer[TT, "B L"], attention_mask: Bool[TT, "B L"], positions: Integer[TT, "B L"]
    ) -> tuple[Float[TT, "B L V"], Float[TT, "B L"] | None]:
        """The model's logits with the mask token at probability 0 (SUBS), and the confidence scores."""
        if self.model is None:
            raise ValueError("MDLMPredictor.model is None; pass model= or set predictor.model before predicting.")
        logits = self.model(ids, attention_mask, positions).float()  # (B, L, V)
        logits[..., self.mask_token_id] = float("-inf")
        scores = None
        if self.unmasking == "confidence" and self.unmasking_order == "confidence" and self.confidence is not None:
            scores = order_scores("confidence", logits.softmax(dim=-1), attention_mask, self.confidence)
        return logits, scores

    def choose(
        self,
        masked: Bool[TT, "B L"],
        probability: Float[TT, ""],
        scores: Float[TT, "B L"] | None,
        generator: torch.Generator | None,
    ) -> Bool[TT, "B L"]:
        """The masked positions revealed at this step: independently with ``probability`` (ancestral), or the
        ``ceil(n_masked * probability)`` first ones of each row in ``unmasking_order`` (``scores``: the
        confidence order's, from the network; the other orders are drawn or fixed here, every step)."""
        if self.unmasking == "ancestral":
            draws = torch.rand(masked.shape, generator=generator, device=masked.device)
            return masked & (draws < probability.to(draws.dtype))
        if scores is None:  # a fixed or random order (confidence=None is random too)
            scores = order_scores(self.unmasking_order, None, masked, self.confidence, generator)
        n_masked = masked.sum(dim=-1, keepdim=True).to(torch.float64)  # (B, 1)
        count = torch.ceil(n_masked * probability.double() - 1e-9).long()  # the schedule's share, at least 1
        return reveal_top(scores, masked, count)

    # ------------------------------------------------------------------ prediction
    @torch.no_grad()
    def predict(
        self,
        batch: dict[str, Any],
        batch_idx: int | None = None,
        dataloader_idx: int | None = None,
        dataloader_name: str | None = None,
    ) -> MDLMPredictionDict:
        """Fill every mask of ``batch["input_ids"]``; return ids, texts of the slot and what sampling cost."""
        input_ids: Integer[TT, "B L"] = batch["input_ids"]
        if input_ids.dim() != 2:
            raise ValueError(f"input_ids must be (batch, seq_len), got {tuple(input_ids.shape)}.")
        attention_mask = batch.get("attention_mask")
        attention_mask = (
            torch.ones_like(input_ids, dtype=torch.bool) if attention_mask is None else attention_mask.bool()
        )
        positions = positions_from_attention_mask(attention_mask)
        generator = self._generators.on(input_ids.device)
        times = torch.linspace(1.0, 0.0, self.num_steps + 1, dtype=torch.float64, device=input_ids.device)
        started = time.perf_counter()

        ids = input_ids.clone()
        masked = (ids == self.mask_token_id) & attention_mask  # (B, L)
        start = answer_slot_start(batch, masked)
        revealed_at = torch.full_like(ids, -1)  # the step that revealed each position (-1: never masked)
        output: tuple[TT, TT | None] | None = None
        steps = calls = revealed = 0
        for step in range(self.num_steps):
            if not bool(masked.any()):
                break
            if output is None:  # the input changed since the last network call (or there was none)
                output = self._network(ids, attention_mask, positions)
                calls += 1
            logits, scores = output
            probability = self.noise_schedule.reveal_probability(times[step], times[step + 1])
            reveal = self.choose(masked, probability, scores, generator)
            if bool(reveal.any()):
                ids[reveal] = sample_tokens(logits[reveal], self.temperature, self.top_k, self.top_p, generator)
                revealed_at = revealed_at.masked_fill(reveal, step)
                revealed += int(reveal.sum())
                masked = masked & ~reveal
                output = None
            elif not self.cache:
                output = None
            steps += 1
        elapsed = time.perf_counter() - started
        return {
            "text": [
                answer_text(self.tokenizer, row, (self.eos_token_id, self.pad_token_id))
                for row in ids[:, start:].tolist()
            ],
            "text_with_spl_tokens": self.tokenizer.batch_decode(
                [r[m].tolist() for r, m in zip(ids, attention_mask)], skip_special_tokens=False
            ),
            "ids": ids,
            "attention_mask": attention_mask,
            "positions": positions,
            "time_taken": [elapsed / max(ids.shape[0], 1)] * ids.shape[0],
            "output_start_idx": start,
            "num_steps": steps,
            "network_calls": calls,
            "tokens_per_second": revealed / max(elapsed, 1e-9),
            "reveal_steps": revealed_at[:, start:].tolist(),
        }

    # ------------------------------------------------------------------ reporting
    def to_dict(
        self,
        batch: dict[str, Any],
        preds: MDLMPredictionDict,
        batch_idx: int | None = None,
        dataloader_idx: int | None = None,
        dataloader_name: str | None = None,
    ) -> list[dict[str, Any]]:
        """One JSON row per example (``xlm_core.kit.prediction.prediction_rows``: text, ids, prompt, target, ...)
        plus the sampler's settings (``unmasking``, ``unmasking_order``, ``num_steps``, ``cache``), what the batch cost
        (``steps_run``, ``network_calls``, ``tokens_per_second``) and, per slot position, ``reveal_steps``."""
        rows = prediction_rows(batch, preds, self.tokenizer, self.pad_token_id)
        for i, row in enumerate(rows):
            row.update(
                unmasking=self.unmasking,
                unmasking_order=self.unmasking_order,
                num_steps=self.num_steps,
                cache=self.cache,
                steps_run=preds["num_steps"],
                network_calls=preds["network_calls"],
                tokens_per_second=float(preds["tokens_per_second"]),
                reveal_steps=preds["reveal_steps"][i],
            )
        return rows
