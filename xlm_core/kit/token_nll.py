"""The per-token NLL of a family's loss: the fused LM head + cross-entropy where the model offers it, else
the model's logits, so every family's loss runs one code path with the same options."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float, Integer
from torch import Tensor as TT

from xlm_core.kit.types import IGNORE_INDEX
from xlm_core.modules.linear_cross_entropy import hidden_state_head, scored_linear_cross_entropy

__all__ = ["scored_token_nll"]


def scored_token_nll(
    model: Any,
    input_ids: Integer[TT, "batch seq_len"],
    attention_mask: Bool[TT, "batch seq_len"] | Bool[TT, "batch seq_len seq_len"] | None,
    positions: Integer[TT, "batch seq_len"] | None,
    targets: Integer[TT, "batch seq_len"],
    scored: Bool[TT, "batch seq_len"],
    *,
    fused: bool = True,
    token_weights: Float[TT, "batch seq_len"] | None = None,
    excluded_class: int | None = None,
    chunk_size: int | None = None,
) -> tuple[Float[TT, ""], Float[TT, "batch seq_len"]]:
    """The loss sum (NLLs of ``targets`` at the ``scored`` positions, times ``token_weights`` if given) and
    the per-position NLLs (fp32, unweighted, 0 where not scored).

    With ``fused`` and a model that follows ``HiddenStateModel``, the vocabulary logits are never
    materialised (``scored_linear_cross_entropy``); otherwise the model's logits are scored in fp32.
    ``excluded_class`` (e.g. the mask token) gets zero probability on both paths.
    """
    head = hidden_state_head(model) if fused else None
    if head is not None:
        forward_hidden, lm_head = head
        hidden = forward_hidden(input_ids, attention_mask, positions)  # (B, L, D)
        return scored_linear_cross_entropy(
            hidden,
            lm_head,
            targets,
            scored,
            token_weights=token_weights,
            excluded_class=excluded_class,
            chunk_size=chunk_size,
        )
    logits = model(input_ids, attention_mask, positions).float()  # (B, L, V)
    if excluded_class is not None:
        excluded = torch.tensor([excluded_class], device=logits.device)
        logits = logits.index_fill(-1, excluded, torch.finfo(logits.dtype).min)
    nll = F.cross_entropy(
        logits.flatten(0, 1),
        targets.masked_fill(~scored, IGNORE_INDEX).flatten(),
        ignore_index=IGNORE_INDEX,
        reduction="none",
    ).view_as(targets)  # (B, L), 0 where not scored
    loss_sum = nll.sum() if token_weights is None else (nll * token_weights).sum()
    return loss_sum, nll
