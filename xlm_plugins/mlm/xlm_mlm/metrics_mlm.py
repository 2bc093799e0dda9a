"""Metric update functions for MLM: map (batch, loss or prediction dict) to torchmetrics inputs.

Each ``*_update_fn(batch, loss_dict, tokenizer=None)`` returns the keyword arguments of one
``metric.update`` call, with the names the ARLM family reports so one summary fits both.

Answer-slot alignment (exact match, token accuracy): the filled slot ``ids[:, output_start_idx:]``
is compared with the reference ``batch["target_ids"]`` (answer + EOS, -100 after it). Scored
positions are those where the reference is not -100, so a row matches exactly iff every answer
token and the EOS were predicted in place; whatever the slot holds after the EOS is not scored.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
from jaxtyping import Bool, Float, Integer
from torch import Tensor as TT

from xlm_core.plugin.protocols import Tokenizer

from .types_mlm import IGNORE_INDEX

__all__ = [
    "align_slot_to_target",
    "seq2seq_exact_match_update_fn",
    "seq2seq_token_accuracy_update_fn",
    "mean_metric_update_fn",
    "token_nll_metric_update_fn",
    "perplexity_metric_update_fn",
]


def align_slot_to_target(
    batch: Mapping[str, Any], preds: Mapping[str, Any], tokenizer: Tokenizer | None = None
) -> tuple[Integer[TT, " batch slot"], Integer[TT, " batch slot"], Bool[TT, " batch slot"]]:
    """``(pred, target, scored)`` over the answer slot; unscored positions are -100 in both."""
    for key in ("ids", "output_start_idx"):
        if key not in preds:
            raise KeyError(f"Answer-slot metrics need {key!r} in the prediction dict (keys: {sorted(preds)}).")
    if "target_ids" not in batch:
        raise KeyError(f"Answer-slot metrics need 'target_ids' in the batch (keys: {sorted(batch)}).")
    target: TT = batch["target_ids"]
    slot: TT = preds["ids"][:, int(preds["output_start_idx"]) :]
    if slot.shape[0] != target.shape[0]:
        raise ValueError(f"Predicted ids have {slot.shape[0]} rows but target_ids has {target.shape[0]}.")
    width = target.shape[1]
    fill = -1
    if tokenizer is not None and getattr(tokenizer, "pad_token_id", None) is not None:
        fill = int(tokenizer.pad_token_id)  # type: ignore[arg-type]
    pred = slot[:, :width].to(device=target.device, dtype=target.dtype)
    if pred.shape[1] < width:
        pred = torch.cat([pred, pred.new_full((pred.shape[0], width - pred.shape[1]), fill)], dim=1)
    scored = target != IGNORE_INDEX
    return pred.masked_fill(~scored, IGNORE_INDEX), target, scored


def seq2seq_exact_match_update_fn(
    batch: Mapping[str, Any], loss_dict: Mapping[str, Any], tokenizer: Tokenizer | None = None
) -> dict[str, Any]:
    """ExactMatch inputs: a row is correct iff its answer and EOS were all predicted in place."""
    pred, target, _ = align_slot_to_target(batch, loss_dict, tokenizer)
    return {"pred": pred, "target": target, "pred_length": None, "target_length": None}


def seq2seq_token_accuracy_update_fn(
    batch: Mapping[str, Any], loss_dict: Mapping[str, Any], tokenizer: Tokenizer | None = None
) -> dict[str, Any]:
    """TokenAccuracy inputs: per-position match over the answer and its EOS."""
    pred, target, scored = align_slot_to_target(batch, loss_dict, tokenizer)
    return {"pred": pred, "target": target, "pred_mask": scored}


def mean_metric_update_fn(
    batch: Mapping[str, Any], loss_dict: Mapping[str, Any], tokenizer: Tokenizer | None = None
) -> dict[str, Float[TT, ""]]:
    """MeanMetric input: the batch's scalar loss."""
    return {"value": loss_dict["loss"].detach()}


def token_nll_metric_update_fn(
    batch: Mapping[str, Any], loss_dict: Mapping[str, Any], tokenizer: Tokenizer | None = None
) -> dict[str, Float[TT, " num_tokens"]]:
    """MeanMetric input: every scored (masked) token's NLL, so the mean is token-weighted."""
    return {"value": loss_dict["nlls"].detach()}


def perplexity_metric_update_fn(
    batch: Mapping[str, Any], loss_dict: Mapping[str, Any], tokenizer: Tokenizer | None = None
) -> dict[str, Float[TT, ""]]:
    """MeanMetric input: ``exp(mean NLL)`` of the batch's masked tokens (1 when none is masked)."""
    nlls: TT = loss_dict["nlls"].detach().float()
    return {"value": torch.exp(nlls.mean()) if nlls.numel() else torch.ones((), device=nlls.device)}

