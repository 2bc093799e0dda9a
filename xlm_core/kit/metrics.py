"""Metrics every family can report, and the update functions that feed them.

Classes: sequence-level exact match, token accuracy and perplexity. Their states are sums, so
torchmetrics syncs them across DDP ranks before ``compute``.

Update functions ``fn(batch, outputs, tokenizer=None) -> dict`` map a batch and what the family's loss
(``lm`` dataloaders) or predictor (``prediction`` dataloaders) returned to the keyword arguments of one
``metric.update`` call; a config names them as ``update_fn`` in ``reported_metrics``:

- on a loss's output (:class:`xlm_core.kit.types.LossDict`): :func:`mean_metric_update_fn` (the batch's
  loss), :func:`token_nll_metric_update_fn` (every scored token's NLL) and
  :func:`perplexity_metric_update_fn` (the batch's ``exp(mean NLL)``), all for ``torchmetrics.MeanMetric``;
- on a predictor's output: :func:`exact_match_update_fn` (:class:`ExactMatch`) and
  :func:`token_accuracy_update_fn` (:class:`TokenAccuracy`), which compare the generated tokens
  ``ids[:, output_start_idx:]`` with the batch's reference ``target_ids`` (:func:`align_to_target`).

A batch with no scored token adds nothing to a ``MeanMetric``: its update value is an empty tensor, which
``MeanMetric.update`` skips (no NaN, and no made-up value that would pull the mean).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from jaxtyping import Bool, Float, Integer
from torch import Tensor as TT
from torchmetrics import Metric

from xlm_core.kit.types import IGNORE_INDEX

__all__ = [
    "ExactMatch",
    "TokenAccuracy",
    "Perplexity",
    "align_to_target",
    "exact_match_update_fn",
    "token_accuracy_update_fn",
    "mean_metric_update_fn",
    "token_nll_metric_update_fn",
    "perplexity_metric_update_fn",
    "UPDATE_FUNCTIONS",
]


def _check_same_shape(pred: TT, target: TT, metric: str) -> None:
    if pred.shape != target.shape:
        raise ValueError(
            f"{metric}: pred has shape {tuple(pred.shape)} but target has shape {tuple(target.shape)}; "
            "the update function must return tensors of the same shape (slice or pad one of them)."
        )


class _RatioMetric(Metric):
    """``correct / total`` kept as two summed integer counts (exact under DDP reduction)."""

    full_state_update = False
    higher_is_better = True

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_state("correct", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("total", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def compute(self) -> TT:
        return self.correct.double().div(self.total.clamp(min=1).double()).float()


class ExactMatch(_RatioMetric):
    """Fraction of sequences whose prediction equals the target exactly.

    With ``pred_length``/``target_length`` only the first ``length`` positions of each row are
    compared and rows whose lengths differ count as wrong.
    """

    def update(
        self,
        pred: Integer[TT, " batch seq_len"],
        target: Integer[TT, " batch seq_len"],
        pred_length: Integer[TT, " batch"] | None = None,
        target_length: Integer[TT, " batch"] | None = None,
    ) -> None:
        _check_same_shape(pred, target, "ExactMatch")
        equal = pred == target
        if pred_length is not None or target_length is not None:
            if pred_length is None or target_length is None:
                raise ValueError("ExactMatch: give both pred_length and target_length, or neither.")
            positions = torch.arange(pred.shape[-1], device=pred.device)
            compared = positions < target_length.to(pred.device).unsqueeze(-1)
            row_ok = (equal | ~compared).all(dim=-1) & (pred_length.to(pred.device) == target_length.to(pred.device))
        else:
            row_ok = equal.all(dim=-1)
        self.correct += row_ok.sum()
        self.total += row_ok.numel()


class TokenAccuracy(_RatioMetric):
    """Fraction of predicted target tokens (positions where ``pred_mask`` is true) that are correct,
    counted over all tokens of all sequences (micro average)."""

    def update(
        self,
        pred: Integer[TT, " batch seq_len"],
        target: Integer[TT, " batch seq_len"],
        pred_mask: Bool[TT, " batch seq_len"] | None = None,
    ) -> None:
        _check_same_shape(pred, target, "TokenAccuracy")
        mask = torch.ones_like(pred, dtype=torch.bool) if pred_mask is None else pred_mask.to(torch.bool)
        _check_same_shape(pred, mask, "TokenAccuracy (pred_mask)")
        self.correct += ((pred == target) & mask).sum()
        self.total += mask.sum()


class Perplexity(Metric):
    """``exp`` of the mean NLL over every scored token seen (not a mean of per-batch perplexities).

    Fed per-token NLLs (natural log), e.g. by an update function returning ``{"value": nlls}``;
    the states are sums, so DDP reduction gives the perplexity of the whole split.
    """

    full_state_update = False
    higher_is_better = False

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_state("nll_sum", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, value: Float[TT, " num_tokens"]) -> None:
        value = value.detach().reshape(-1)
        self.nll_sum += value.double().sum()
        self.count += value.numel()

    def compute(self) -> TT:
        if int(self.count) == 0:
            return torch.tensor(float("nan"))
        return torch.exp(self.nll_sum / self.count).float()


# region: update functions


def mean_metric_update_fn(
    batch: Mapping[str, Any], outputs: Mapping[str, Any], tokenizer: Any = None
) -> dict[str, Float[TT, ""]]:
    """``MeanMetric`` input: the batch's scalar ``loss``."""
    return {"value": outputs["loss"].detach()}


def token_nll_metric_update_fn(
    batch: Mapping[str, Any], outputs: Mapping[str, Any], tokenizer: Any = None
) -> dict[str, Float[TT, " num_scored"]]:
    """``MeanMetric`` input: every scored token's NLL (``nlls``), so the mean is token-weighted."""
    return {"value": outputs["nlls"].detach()}


def perplexity_metric_update_fn(
    batch: Mapping[str, Any], outputs: Mapping[str, Any], tokenizer: Any = None
) -> dict[str, Float[TT, ""] | Float[TT, " 0"]]:
    """``MeanMetric`` input: the batch's ``exp(mean token NLL)``; empty when the batch scores no token."""
    nlls: TT = outputs["nlls"].detach().float()
    if nlls.numel() == 0:
        return {"value": nlls}
    return {"value": torch.exp(nlls.mean())}


def align_to_target(
    batch: Mapping[str, Any],
    preds: Mapping[str, Any],
    tokenizer: Any = None,
    *,
    ids_key: str = "ids",
    target_key: str = "target_ids",
) -> tuple[Integer[TT, " batch target_len"], Integer[TT, " batch target_len"], Bool[TT, " batch target_len"]]:
    """``(pred, target, scored)`` aligned position by position over the reference answer.

    The generated tokens ``preds[ids_key][:, preds["output_start_idx"]:]`` are cut, or padded with the
    tokenizer's pad id (-1 without one), to the width of ``batch[target_key]`` (the reference, right-padded
    with -100). ``scored`` marks where the reference is not -100; elsewhere ``pred`` and ``target`` are both
    -100, so a row is an exact match when every reference token (the closing EOS included) was generated in
    its place, and whatever a row generates after it is never held against it.
    """
    for key in (ids_key, "output_start_idx"):
        if key not in preds:
            raise KeyError(f"Exact match / token accuracy need {key!r} in the prediction dict (keys: {sorted(preds)}).")
    if target_key not in batch:
        raise KeyError(f"Exact match / token accuracy need {target_key!r} in the batch (keys: {sorted(batch)}).")
    target: TT = batch[target_key]
    generated: TT = preds[ids_key][:, int(preds["output_start_idx"]) :]
    if generated.shape[0] != target.shape[0]:
        raise ValueError(f"Generated ids have {generated.shape[0]} rows but {target_key} has {target.shape[0]}.")
    width = target.shape[1]
    fill = -1
    if tokenizer is not None and getattr(tokenizer, "pad_token_id", None) is not None:
        fill = int(tokenizer.pad_token_id)
    pred = generated[:, :width].to(device=target.device, dtype=target.dtype)
    if pred.shape[1] < width:
        pred = torch.cat([pred, pred.new_full((pred.shape[0], width - pred.shape[1]), fill)], dim=1)
    scored = target != IGNORE_INDEX
    return pred.masked_fill(~scored, IGNORE_INDEX), target, scored


def exact_match_update_fn(
    batch: Mapping[str, Any], preds: Mapping[str, Any], tokenizer: Any = None
) -> dict[str, Integer[TT, " batch target_len"]]:
    """:class:`ExactMatch` input: a row counts when every reference token, EOS included, was generated in place."""
    pred, target, _ = align_to_target(batch, preds, tokenizer)
    return {"pred": pred, "target": target}


def token_accuracy_update_fn(
    batch: Mapping[str, Any], preds: Mapping[str, Any], tokenizer: Any = None
) -> dict[str, Integer[TT, " batch target_len"] | Bool[TT, " batch target_len"]]:
    """:class:`TokenAccuracy` input: the fraction of reference positions generated correctly."""
    pred, target, scored = align_to_target(batch, preds, tokenizer)
    return {"pred": pred, "target": target, "pred_mask": scored}


UPDATE_FUNCTIONS = (
    exact_match_update_fn,
    token_accuracy_update_fn,
    mean_metric_update_fn,
    token_nll_metric_update_fn,
    perplexity_metric_update_fn,
)
"""The update functions above, for a family's ``register(metrics=[...])`` (what ``xlm families -v`` lists)."""
