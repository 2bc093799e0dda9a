"""Which masked positions a masked family's sampler reveals at a step, and what it writes there.

A masked model generates by filling mask tokens over several steps; each step ranks the still-masked
positions and reveals some of them. Ranks come from :func:`order_scores` (``unmasking_order``:
``confidence`` ranks by a confidence measure of the model's distribution, :func:`confidence_scores`;
``left_to_right`` / ``right_to_left`` by column; ``random`` by a uniform draw) and :func:`reveal_top`
reveals the ``count`` best of each row. :func:`sample_tokens` draws the tokens written there (greedy,
temperature, top-k or top-p, :mod:`xlm_core.kit.sampling`), and :func:`check_sampling_options` validates
those options at construction.
"""

from __future__ import annotations

from typing import Literal

import torch
from jaxtyping import Bool, Float, Integer
from torch import Tensor as TT

from xlm_core.kit.sampling import sample_from_logits, sample_from_top_k, sample_from_top_p

__all__ = [
    "CONFIDENCES",
    "UNMASKING_ORDERS",
    "Confidence",
    "UnmaskingOrder",
    "check_sampling_options",
    "confidence_scores",
    "order_scores",
    "reveal_top",
    "sample_tokens",
]

Confidence = Literal["top_prob", "prob_diff", "entropy"] | None
CONFIDENCES = (None, "top_prob", "prob_diff", "entropy")
UnmaskingOrder = Literal["confidence", "left_to_right", "right_to_left", "random"]
UNMASKING_ORDERS = ("confidence", "left_to_right", "right_to_left", "random")


def check_sampling_options(temperature: float, top_k: int | None, top_p: float | None) -> None:
    """One-line errors for a bad temperature (0 = greedy), ``top_k`` or ``top_p`` (at most one of the two)."""
    if not temperature >= 0:
        raise ValueError(f"temperature must be >= 0 (0 = greedy), got {temperature!r}.")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
        raise ValueError(f"top_k must be an int >= 1 or null, got {top_k!r}.")
    if top_p is not None and not 0.0 < top_p <= 1.0:
        raise ValueError(f"top_p must lie in (0, 1] or be null, got {top_p!r}.")
    if top_k is not None and top_p is not None:
        raise ValueError("Set at most one of top_k and top_p.")


def sample_tokens(
    logits: Float[TT, "*batch vocab"],
    temperature: float = 0.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
) -> Integer[TT, "*batch"]:
    """Greedy (``temperature`` 0: argmax, no randomness used) or sampled token for every row of ``logits``,
    restricted to the ``top_k`` tokens or the ``top_p`` nucleus when one is set."""
    if temperature == 0:
        return logits.argmax(dim=-1)
    if top_k is not None:
        return sample_from_top_k(top_k, logits, temperature, generator)
    if top_p is not None:
        return sample_from_top_p(top_p, logits, temperature, generator)
    return sample_from_logits(logits, temperature, generator)


def confidence_scores(probs: Float[TT, "batch seq_len vocab"], confidence: str) -> Float[TT, "batch seq_len"]:
    """Higher = more confident: top probability, top-1 minus top-2 probability, or minus the entropy."""
    if confidence == "top_prob":
        return probs.max(dim=-1).values
    if confidence == "prob_diff":
        top2 = probs.topk(min(2, probs.shape[-1]), dim=-1).values
        return top2[..., 0] - (top2[..., 1] if top2.shape[-1] > 1 else 0.0)
    if confidence == "entropy":
        return (probs * probs.clamp_min(1e-30).log()).sum(dim=-1)
    raise ValueError(f"Unknown confidence {confidence!r}; use one of {CONFIDENCES}.")


def order_scores(
    order: str,
    probs: Float[TT, "batch seq_len vocab"] | None,
    masked: Bool[TT, "batch seq_len"],
    confidence: Confidence = "top_prob",
    generator: torch.Generator | None = None,
) -> Float[TT, "batch seq_len"]:
    """Scores of ``unmasking_order`` (higher = revealed first): confidence (``confidence=None``: random),
    the leftmost / rightmost column, or a uniform draw from ``generator`` (``random``). Only the confidence
    order reads ``probs``; the others may pass None."""
    if order == "random" or (order == "confidence" and confidence is None):
        return torch.rand(masked.shape, generator=generator, device=masked.device)
    if order == "confidence":
        if probs is None:
            raise ValueError("order_scores: the confidence order needs the model's probabilities (probs).")
        return confidence_scores(probs, confidence)
    if order not in UNMASKING_ORDERS:
        raise ValueError(f"Unknown unmasking_order {order!r}; use one of {', '.join(UNMASKING_ORDERS)}.")
    dtype = probs.dtype if probs is not None else torch.float32
    columns = torch.arange(masked.shape[-1], device=masked.device, dtype=dtype).expand(masked.shape)
    return -columns if order == "left_to_right" else columns


def reveal_top(
    scores: Float[TT, "batch seq_len"], masked: Bool[TT, "batch seq_len"], count: Integer[TT, "batch 1"]
) -> Bool[TT, "batch seq_len"]:
    """The ``count[i]`` highest-scoring masked positions of each row (ties: the leftmost first)."""
    scores = scores.masked_fill(~masked, float("-inf"))
    order = scores.argsort(dim=-1, descending=True, stable=True)  # best first
    arange = torch.arange(order.shape[-1], device=order.device).expand_as(order)
    rank = torch.empty_like(order).scatter_(-1, order, arange)
    return masked & (rank < count)
