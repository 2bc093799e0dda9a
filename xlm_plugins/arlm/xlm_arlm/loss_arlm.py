"""ARLMLoss: next-token cross-entropy over the scored (non -100) targets (docs/arlm.md, "Loss")."""

from __future__ import annotations

from typing import Any

import torch
from jaxtyping import Bool, Integer
from torch import Tensor as TT

from xlm_arlm.types_arlm import IGNORE_INDEX, ARLMLossDict
from xlm_core.data.packing import same_document_mask
from xlm_core.kit.batch_checks import training_tensors
from xlm_core.kit.positions import positions_from_attention_mask
from xlm_core.kit.token_nll import scored_token_nll

__all__ = ["ARLMLoss", "causal_attention_mask", "document_causal_mask"]


def causal_attention_mask(
    attention_mask: Bool[TT, " batch seq_len"] | Integer[TT, " batch seq_len"],
) -> Bool[TT, " batch seq_len seq_len"]:
    """The reference 3-D mask ``mask.unsqueeze(1) & tril(ones(L, L))`` (query i, key j) of a bool or 0/1 mask."""
    L = attention_mask.shape[1]
    tril = torch.ones(L, L, dtype=torch.bool, device=attention_mask.device).tril()
    return attention_mask.bool().unsqueeze(1) & tril


def document_causal_mask(
    document_ids: Integer[TT, " batch seq_len"], attention_mask: Bool[TT, " batch seq_len"]
) -> Bool[TT, " batch seq_len seq_len"]:
    """Causal attention restricted to the query's own document (packed rows), padding keys excluded."""
    return causal_attention_mask(attention_mask) & same_document_mask(document_ids)


class ARLMLoss:
    """Mean next-token NLL over every target that is not -100.

    Returns ``loss`` (scalar, mean over scored tokens), ``batch_loss`` (B,: each example's mean over
    its scored tokens) and ``nlls`` (1-D, one per scored token, row-major order). ``batch_loss`` and
    ``nlls`` are detached (they feed metrics); only ``loss`` carries the graph.

    A batch with no scored token gives ``loss = 0.0`` that still requires grad and is connected to
    every parameter (all gradients zero, so DDP does not wait for missing gradients), ``batch_loss``
    zeros and an empty ``nlls``. A row with no scored token gets ``batch_loss`` 0.

    The model receives exactly the attention of the reference (B, L, L) mask
    ``attention_mask.unsqueeze(1) & tril``; it is passed as the equivalent (B, L) key-padding mask
    (the model adds the causal part), or, for right-padded batches whose padding is never scored,
    as no mask at all so SDPA's causal fast path runs. ``use_3d_mask=True`` builds that mask
    literally.

    Packed batches may carry ``positions`` (used as the RoPE positions instead of the ones derived
    from ``attention_mask``) and ``document_ids`` (a (B, L, L) mask keeps each query inside its
    own document, see ``document_causal_mask``).

    With ``fused=True`` (default) and a model that exposes ``forward_hidden`` and ``lm_head``
    (``xlm_core.modules.HiddenStateModel``), the head and the cross-entropy run fused over blocks of
    the scored tokens (``xlm_core.modules.linear_cross_entropy``): the (B, L, V) logits are never
    formed, and the loss equals the plain path's up to floating-point summation order.
    ``chunk_size`` sets the tokens per block (default: ~128 MiB of fp32 logits). Other models, or
    ``fused=False``, take the plain path (the model's logits, then cross-entropy).
    """

    def __init__(
        self,
        model: Any = None,
        tokenizer: Any = None,
        use_3d_mask: bool = False,
        fused: bool = True,
        chunk_size: int | None = None,
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.use_3d_mask = use_3d_mask
        self.fused = fused
        self.chunk_size = chunk_size

    def __call__(
        self,
        batch: dict[str, Any],
        batch_idx: int | None = None,
        dataloader_idx: int | None = None,
        dataloader_name: str | None = None,
    ) -> ARLMLossDict:
        return self.loss_fn(batch, batch_idx, dataloader_idx, dataloader_name)

    def loss_fn(
        self,
        batch: dict[str, Any],
        batch_idx: int | None = None,
        dataloader_idx: int | None = None,
        dataloader_name: str | None = None,
    ) -> ARLMLossDict:
        """Run the model on ``input_ids`` and score ``target_ids`` (already shifted by one)."""
        if self.model is None:
            raise ValueError("ARLMLoss has no model: construct it as ARLMLoss(model=..., tokenizer=...).")
        input_ids, attention_mask, target_ids = training_tensors(batch, "ARLMLoss")

        positions = batch.get("positions")
        if positions is None:
            positions = positions_from_attention_mask(attention_mask)  # (B, L)
        valid = target_ids != IGNORE_INDEX  # (B, L)
        document_ids = batch.get("document_ids")
        if document_ids is not None:
            mask = document_causal_mask(document_ids, attention_mask)  # (B, L, L)
        else:
            mask = self._model_mask(attention_mask, valid)
        loss_sum, nll = scored_token_nll(
            self.model, input_ids, mask, positions, target_ids, valid, fused=self.fused, chunk_size=self.chunk_size
        )  # nll (B, L), 0 at ignored positions
        n_valid_row = valid.sum(dim=1)  # (B,)
        # sum / count equals cross_entropy(reduction="mean"); clamp makes an all-ignored batch give 0.
        loss = loss_sum / n_valid_row.sum().clamp(min=1)
        batch_loss = nll.detach().sum(dim=1) / n_valid_row.clamp(min=1)
        nlls = nll.detach()[valid]
        return {"loss": loss, "batch_loss": batch_loss, "nlls": nlls}

    def _model_mask(
        self, attention_mask: Bool[TT, "B L"], valid: Bool[TT, "B L"]
    ) -> Bool[TT, "B L L"] | Bool[TT, "B L"] | None:
        """The cheapest mask giving the scored positions the reference attention (see class docstring)."""
        if self.use_3d_mask:
            return causal_attention_mask(attention_mask)
        right_padded = (attention_mask[:, 1:] <= attention_mask[:, :-1]).all()
        padding_scored = (valid & ~attention_mask).any()
        if bool(right_padded & ~padding_scored):
            return None  # real query i sees keys 0..i, all real: identical to the 3-D mask
        return attention_mask
