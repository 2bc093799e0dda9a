"""Metric update functions for ARLM (docs/arlm.md, "Metrics"): map (batch, loss/prediction dict) to metric inputs.

Each ``*_update_fn(batch, loss_dict, tokenizer=None)`` returns the keyword arguments of one
torchmetrics ``update`` call.

Seq2seq alignment (exact match, token accuracy): the generated part ``ids[:, output_start_idx:]``
is cut or padded (with ``pad_token_id``, or -1 without a tokenizer) to the width of the reference
``batch["target_ids"]`` (target + EOS, right-padded with -100). Scored positions are those where
the reference is not -100; at the other positions ``pred`` and ``target`` are both set to -100,
so a row matches exactly iff every target token *including EOS* was generated at its place.
Generating past the EOS position is never penalised (the predictor fills finished rows with PAD).
So plain row equality of the returned ``pred``/``target`` is exact match. The bool mask of scored
positions is the ``pred_mask`` of token accuracy (``ones_like(pred)`` equals it
whenever the batch has no target padding). Returned dicts hold exactly the keyword arguments of
the metric's ``update`` so the harness can call ``metric.update(**out)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from jaxtyping import Bool, Float, Integer
from torch import Tensor as TT

from xlm_core.plugin.protocols import Tokenizer

from .types_arlm import IGNORE_INDEX

__all__ = [
    "align_generated_to_target",
    "seq2seq_exact_match_update_fn",
    "seq2seq_token_accuracy_update_fn",
    "mean_metric_update_fn",
    "perplexity_metric_update_fn",
    "token_nll_metric_update_fn",
    "sequence_length_metric_update_fn",
    "valid_tokens_metric_update_fn",
]


def align_generated_to_target(
    batch: Mapping[str, Any], loss_dict: Mapping[str, Any], tokenizer: Tokenizer | None = None
) -> tuple[Integer[TT, " batch target_len"], Integer[TT, " batch target_len"], Bool[TT, " batch target_len"]]:
    """Return ``(pred, target, target_mask)`` aligned position by position (see module docstring)."""
    for key in ("ids", "output_start_idx"):
        if key not in loss_dict:
            raise KeyError(f"Seq2seq metrics need {key!r} in the prediction dict (keys: {sorted(loss_dict)}).")
    if "target_ids" not in batch:
        raise KeyError(f"Seq2seq metrics need 'target_ids' in the batch (keys: {sorted(batch)}).")
    target: TT = batch["target_ids"]
    generated: TT = loss_dict["ids"][:, int(loss_dict["output_start_idx"]) :]
    if generated.shape[0] != target.shape[0]:
        raise ValueError(
            f"Generated ids have {generated.shape[0]} rows but target_ids has {target.shape[0]}."
        )
    width = target.shape[1]
    fill = -1
    if tokenizer is not None and getattr(tokenizer, "pad_token_id", None) is not None:
        fill = int(tokenizer.pad_token_id)  # type: ignore[arg-type]
    pred = generated[:, :width].to(device=target.device, dtype=target.dtype)
    if pred.shape[1] < width:
        extra = pred.new_full((pred.shape[0], width - pred.shape[1]), fill)
        pred = torch.cat([pred, extra], dim=1)
    target_mask = target != IGNORE_INDEX
    pred = pred.masked_fill(~target_mask, IGNORE_INDEX)
    return pred, target, target_mask


def seq2seq_exact_match_update_fn(
    batch: Mapping[str, Any], loss_dict: Mapping[str, Any], tokenizer: Tokenizer | None = None
) -> dict[str, Any]:
    """ExactMatch inputs: a row is correct iff all its target tokens (incl. EOS) were generated."""
    pred, target, _ = align_generated_to_target(batch, loss_dict, tokenizer)
    return {"pred": pred, "target": target, "pred_length": None, "target_length": None}


def seq2seq_token_accuracy_update_fn(
    batch: Mapping[str, Any], loss_dict: Mapping[str, Any], tokenizer: Tokenizer | None = None
) -> dict[str, Any]:
    """TokenAccuracy inputs: per-position match over every scored target position."""
    pred, target, target_mask = align_generated_to_target(batch, loss_dict, tokenizer)
    return {"pred": pred, "target": target, "pred_mask": target_mask}


def mean_metric_update_fn(
    batch: Mapping[str, Any], loss_dict: Mapping[str, Any], tokenizer: Tokenizer | None = None
) -> dict[str, Float[TT, ""]]:
    """MeanMetric input: the batch's scalar loss."""
    return {"value": loss_dict["loss"].detach()}


def perplexity_metric_update_fn(
    batch: Mapping[str, Any], loss_dict: Mapping[str, Any], tokenizer: Tokenizer | None = None
) -> dict[str, Float[TT, ""]]:
    """MeanMetric input: ``exp(mean token NLL)`` of the batch."""
    nlls: TT = loss_dict["nlls"].detach()
    return {"value": torch.exp(nlls.float().mean())}


def token_nll_metric_update_fn(
    batch: Mapping[str, Any], loss_dict: Mapping[str, Any], tokenizer: Tokenizer | None = None
) -> dict[str, Float[TT, " num_tokens"]]:
    """MeanMetric input: every scored token's NLL (a token-weighted mean)."""
    return {"value": loss_dict["nlls"].detach()}


def sequence_length_metric_update_fn(
    batch: Mapping[str, Any], loss_dict: Mapping[str, Any], tokenizer: Tokenizer | None = None
) -> dict[str, Float[TT, " batch"]]:
    """MeanMetric input: number of real (non-padding) tokens of each example."""
    return {"value": batch["attention_mask"].sum(dim=1).float()}


def valid_tokens_metric_update_fn(
    batch: Mapping[str, Any], loss_dict: Mapping[str, Any], tokenizer: Tokenizer | None = None
) -> dict[str, Float[TT, " batch"]]:
    """MeanMetric input: tokens per example that are real and carry a target (not -100)."""
    mask: TT = batch["attention_mask"]
    target: TT = batch["target_ids"]
    if mask.shape != target.shape:
        raise ValueError(
            f"valid_tokens needs aligned attention_mask {tuple(mask.shape)} and target_ids "
            f"{tuple(target.shape)}; use it on 'lm' (teacher-forced) batches, not prediction batches."
        )
    return {"value": (mask.bool() & (target != IGNORE_INDEX)).sum(dim=1).float()}
