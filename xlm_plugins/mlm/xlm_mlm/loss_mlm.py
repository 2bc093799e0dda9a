"""MLMLoss: cross-entropy at the masked positions of a noised batch."""

from __future__ import annotations

from typing import Any

import torch.nn.functional as F

from xlm_core.kit.batch_checks import training_tensors
from xlm_core.kit.collate import mask_token_id_of
from xlm_core.kit.positions import positions_from_attention_mask
from xlm_mlm.types_mlm import IGNORE_INDEX, MLMLossDict

__all__ = ["MLMLoss"]


class MLMLoss:
    """Mean NLL over the masked positions whose target is not -100.

    Returns ``loss`` (scalar), ``batch_loss`` (B,: each row's mean over its scored positions, 0 for a
    row with none) and ``nlls`` (1-D, one per scored position in row-major order); the last two are
    detached and feed metrics. ``loss_on_visible_tokens`` also scores unmasked positions with a
    target. A batch with no scored position gives ``loss = 0`` that is still connected to every
    parameter (zero gradients, never NaN).
    """

    def __init__(
        self,
        model: Any = None,
        tokenizer: Any = None,
        loss_on_visible_tokens: bool = False,
        mask_token_id: int | None = None,
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.loss_on_visible_tokens = loss_on_visible_tokens
        if mask_token_id is None:
            if tokenizer is None:
                raise ValueError("MLMLoss needs tokenizer= (for its mask token) or an explicit mask_token_id=.")
            mask_token_id = mask_token_id_of(tokenizer, "MLMLoss")
        self.mask_token_id = int(mask_token_id)

    def __call__(
        self,
        batch: dict[str, Any],
        batch_idx: int | None = None,
        dataloader_idx: int | None = None,
        dataloader_name: str | None = None,
    ) -> MLMLossDict:
        return self.loss_fn(batch, batch_idx, dataloader_idx, dataloader_name)

    def loss_fn(
        self,
        batch: dict[str, Any],
        batch_idx: int | None = None,
        dataloader_idx: int | None = None,
        dataloader_name: str | None = None,
    ) -> MLMLossDict:
        """Run the model on the noised ``input_ids`` and score the masked positions."""
        if self.model is None:
            raise ValueError("MLMLoss has no model: construct it as MLMLoss(model=..., tokenizer=...).")
        input_ids, attention_mask, target_ids = training_tensors(batch, "MLMLoss")

        positions = positions_from_attention_mask(attention_mask)  # (B, L)
        logits = self.model(input_ids, attention_mask, positions)  # (B, L, V)
        scored = (target_ids != IGNORE_INDEX) & attention_mask  # (B, L)
        if not self.loss_on_visible_tokens:
            scored = scored & (input_ids == self.mask_token_id)
        targets = target_ids.masked_fill(~scored, IGNORE_INDEX)
        nll = F.cross_entropy(
            logits.float().transpose(1, 2), targets, ignore_index=IGNORE_INDEX, reduction="none"
        )  # (B, L), 0 where not scored
        n_row = scored.sum(dim=1)  # (B,)
        # An empty batch gives 0 / 1 = 0 that still depends on the logits (gradient path, no NaN).
        loss = nll.sum() / n_row.sum().clamp(min=1)
        batch_loss = nll.detach().sum(dim=1) / n_row.clamp(min=1)
        return {"loss": loss, "batch_loss": batch_loss, "nlls": nll.detach()[scored]}
