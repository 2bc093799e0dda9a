"""Metrics every family can report: sequence-level exact match, token accuracy and perplexity.

Metric states are sums, so torchmetrics syncs them across DDP ranks before ``compute``.
"""

from __future__ import annotations

from typing import Any

import torch
from jaxtyping import Bool, Float, Integer
from torch import Tensor as TT
from torchmetrics import Metric

__all__ = ["ExactMatch", "TokenAccuracy", "Perplexity"]


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
