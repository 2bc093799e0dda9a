"""MDLMLoss: the continuous-time negative ELBO of masked diffusion, in nats per scored token.

For a clean sequence ``x`` noised to ``z_t`` at time ``t`` (each token masked with probability
``1 - alpha(t)``), the NELBO is ``E_t [ weight(t) * sum over masked i of -log p(x_i | z_t) ]`` with
``weight(t) = -alpha'(t) / (1 - alpha(t))`` (``1/t`` for the log-linear schedule). Under SUBS a token that is
not masked is carried over and costs nothing, and the mask token has probability 0, so the sum runs over the
masked positions only, with the mask token excluded from the softmax. One draw of ``t`` per row (the
collator's ``noise_t``) gives an unbiased estimate; dividing by the number of scored tokens (the answer
tokens of seq2seq rows, every real token of text rows) gives nats per token, and ``exp`` of it is an upper
bound on the model's perplexity (docs/mdlm.md).
"""

from __future__ import annotations

from typing import Any

import torch

from xlm_core.api import (
    IGNORE_INDEX,
    NoiseSchedule,
    attention_and_positions,
    mask_token_id_of,
    scored_token_nll,
    training_tensors,
)

from .collators_mdlm import schedule_or_default
from .types_mdlm import MDLMLossDict

__all__ = ["MDLMLoss"]


class MDLMLoss:
    """The batch's NELBO per scored token (module docstring).

    Returns ``loss`` (scalar: sum of ``weight(t) * NLL`` over masked scored tokens, divided by the number of
    scored tokens), ``batch_loss`` (B,: each row's NELBO per scored token) and ``nlls`` (one term per scored
    token, row-major: ``weight(t) * NLL`` where masked, 0 where carried over); their mean is the NELBO per
    token, which the core's ``token_nll_metric_update_fn`` and ``Perplexity`` turn into the reported bound.

    With ``fused=True`` (default) and a model that exposes ``forward_hidden`` and ``lm_head``
    (``xlm_core.modules.HiddenStateModel``), only the masked positions go through the head, fused with the
    weighted cross-entropy (``xlm_core.modules.linear_cross_entropy``: the weights are the schedule's,
    the mask token is the excluded class); ``fused=False`` or another model: the plain logits path, equal
    up to summation order. Packed text rows keep attention inside each document.
    """

    def __init__(
        self,
        model: Any = None,
        tokenizer: Any = None,
        noise_schedule: NoiseSchedule | None = None,
        mask_token_id: int | None = None,
        fused: bool = True,
        chunk_size: int | None = None,
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.noise_schedule = schedule_or_default(noise_schedule, "MDLMLoss")
        self.fused = fused
        self.chunk_size = chunk_size
        if mask_token_id is None:
            if tokenizer is None:
                raise ValueError("MDLMLoss needs tokenizer= (for its mask token) or an explicit mask_token_id=.")
            mask_token_id = mask_token_id_of(tokenizer, "MDLMLoss")
        self.mask_token_id = int(mask_token_id)
        model_mask = getattr(getattr(model, "_orig_mod", model), "mask_idx", None)
        if model_mask is not None and int(model_mask) != self.mask_token_id:
            raise ValueError(
                f"the model's mask_idx={model_mask} is not the mask token {self.mask_token_id}; "
                "build the model with the tokenizer's mask token (model.mask_idx: null lets the job fill it)."
            )

    def __call__(
        self,
        batch: dict[str, Any],
        batch_idx: int | None = None,
        dataloader_idx: int | None = None,
        dataloader_name: str | None = None,
    ) -> MDLMLossDict:
        """Run the model on ``z_t`` (``input_ids``) and score the masked tokens, weighted by the schedule."""
        if self.model is None:
            raise ValueError("MDLMLoss has no model: construct it as MDLMLoss(model=..., tokenizer=...).")
        input_ids, attention_mask, target_ids = training_tensors(batch, "MDLMLoss")
        t = batch.get("noise_t")
        if not isinstance(t, torch.Tensor) or t.shape != input_ids.shape[:1]:
            raise KeyError(
                "MDLMLoss needs the batch's diffusion times 'noise_t' (one per row), which the MDLM "
                "collators (xlm_mdlm.collators_mdlm) add; use one of them for this dataloader."
            )
        mask, positions = attention_and_positions(batch, attention_mask)  # packed rows: within documents
        scored = (target_ids != IGNORE_INDEX) & attention_mask & (target_ids != self.mask_token_id)  # (B, L)
        masked = scored & (input_ids == self.mask_token_id)  # (B, L): the positions with a NELBO term
        weights = self.noise_schedule.weight(t.float()).unsqueeze(1).expand(masked.shape)  # (B, L)
        loss_sum, nll = scored_token_nll(
            self.model,
            input_ids,
            mask,
            positions,
            target_ids,
            masked,
            fused=self.fused,
            token_weights=weights,
            excluded_class=self.mask_token_id,
            chunk_size=self.chunk_size,
        )  # nll (B, L): unweighted, 0 where not masked
        terms = nll.detach() * weights  # (B, L): weight(t) * NLL where masked, 0 elsewhere
        n_row = scored.sum(dim=1)  # (B,)
        # An empty batch gives 0 / 1 = 0 that still depends on the model (gradient path, no NaN).
        loss = loss_sum / n_row.sum().clamp(min=1)
        return {"loss": loss, "batch_loss": terms.sum(dim=1) / n_row.clamp(min=1), "nlls": terms[scored]}
