"""MLMLoss: cross-entropy at the masked positions of a noised batch."""

from __future__ import annotations

from typing import Any

from xlm_core.kit.batch_checks import training_tensors
from xlm_core.kit.collate import mask_token_id_of
from xlm_core.kit.documents import attention_and_positions
from xlm_core.kit.positions import positions_from_attention_mask  # noqa: F401  (re-exported, tests import it)
from xlm_core.kit.token_nll import scored_token_nll
from xlm_mlm.types_mlm import IGNORE_INDEX, MLMLossDict

__all__ = ["MLMLoss"]


class MLMLoss:
    """Mean NLL over the masked positions whose target is not -100.

    Returns ``loss`` (scalar), ``batch_loss`` (B,: each row's mean over its scored positions, 0 for a
    row with none) and ``nlls`` (1-D, one per scored position in row-major order); the last two are
    detached and feed metrics. ``loss_on_visible_tokens`` also scores unmasked positions with a
    target. A batch with no scored position gives ``loss = 0`` that is still connected to every
    parameter (zero gradients, never NaN).

    With ``fused=True`` (default) and a model that exposes ``forward_hidden`` and ``lm_head``
    (``xlm_core.modules.HiddenStateModel``), only the scored positions go through the head, fused
    with the cross-entropy over blocks of tokens (``xlm_core.modules.linear_cross_entropy``; the
    model's ``mask_idx`` is the excluded class, as in its logits); the loss equals the plain path's
    up to floating-point summation order. Other models, or ``fused=False``, take the plain path.
    Packed text rows with ``positions`` / ``document_ids`` (``DefaultMLMCollator``'s document options) are
    scored with attention inside each document (``xlm_core.kit.documents.attention_and_positions``).
    """

    def __init__(
        self,
        model: Any = None,
        tokenizer: Any = None,
        loss_on_visible_tokens: bool = False,
        mask_token_id: int | None = None,
        fused: bool = True,
        chunk_size: int | None = None,
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.loss_on_visible_tokens = loss_on_visible_tokens
        self.fused = fused
        self.chunk_size = chunk_size
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

        mask, positions = attention_and_positions(batch, attention_mask)  # packed rows: within documents
        scored = (target_ids != IGNORE_INDEX) & attention_mask  # (B, L)
        if not self.loss_on_visible_tokens:
            scored = scored & (input_ids == self.mask_token_id)
        loss_sum, nll = scored_token_nll(
            self.model,
            input_ids,
            mask,
            positions,
            target_ids,
            scored,
            fused=self.fused,
            excluded_class=getattr(self.model, "mask_idx", None),
            chunk_size=self.chunk_size,
        )  # nll (B, L), 0 where not scored
        n_row = scored.sum(dim=1)  # (B,)
        # An empty batch gives 0 / 1 = 0 that still depends on the model (gradient path, no NaN).
        loss = loss_sum / n_row.sum().clamp(min=1)
        batch_loss = nll.detach().sum(dim=1) / n_row.clamp(min=1)
        return {"loss": loss, "batch_loss": batch_loss, "nlls": nll.detach()[scored]}
