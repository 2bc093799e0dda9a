"""Metric update functions of ARLM's own (docs/arlm.md, "Metrics"); the shared ones are the core's.

Exact match, token accuracy, mean loss, token NLL and perplexity are ``xlm_core.kit.metrics``'s update
functions, which every family's configs name. What is left here reads ARLM's teacher-forced batches:
``sequence_length_metric_update_fn`` and ``valid_tokens_metric_update_fn``. Each ``*_update_fn(batch,
loss_dict, tokenizer=None)`` returns the keyword arguments of one torchmetrics ``update`` call.

The old names of the shared functions (``seq2seq_exact_match_update_fn``, ``align_generated_to_target``, ...)
still resolve here, with a DeprecationWarning naming their ``xlm_core.kit.metrics`` path.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from jaxtyping import Float
from torch import Tensor as TT

from xlm_core.kit.renamed import moved_attributes
from xlm_core.plugin.protocols import Tokenizer

from .types_arlm import IGNORE_INDEX

__all__ = ["sequence_length_metric_update_fn", "valid_tokens_metric_update_fn"]

__getattr__ = moved_attributes(
    __name__,
    {
        "align_generated_to_target": "xlm_core.kit.metrics.align_to_target",
        "seq2seq_exact_match_update_fn": "xlm_core.kit.metrics.exact_match_update_fn",
        "seq2seq_token_accuracy_update_fn": "xlm_core.kit.metrics.token_accuracy_update_fn",
        "mean_metric_update_fn": "xlm_core.kit.metrics.mean_metric_update_fn",
        "perplexity_metric_update_fn": "xlm_core.kit.metrics.perplexity_metric_update_fn",
        "token_nll_metric_update_fn": "xlm_core.kit.metrics.token_nll_metric_update_fn",
    },
    removed_in="xlm-arlm 0.3",
)


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
