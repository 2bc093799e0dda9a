"""Deliberately broken variants of the testing family: each one violates exactly one contract."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from xlm_core.kit.positions import positions_from_attention_mask

from .collator import TinyCollator
from .loss import TinyLoss
from .model import TinyCausalLM
from .predictor import TinyGreedyPredictor


# --- models -------------------------------------------------------------------------------------
class FutureLeakingLM(TinyCausalLM):
    """Forgets the causal mask: every position attends to the whole (unpadded) sequence."""

    def allowed(self, attention_mask, batch, new, start):
        slots = start + new
        keys = torch.ones(batch, slots, dtype=torch.bool) if attention_mask is None else attention_mask.bool()
        return keys.unsqueeze(1).expand(batch, new, slots)


class PaddingBlindLM(TinyCausalLM):
    """Ignores a (B, L) attention mask: real tokens attend to earlier padding."""

    def allowed(self, attention_mask, batch, new, start):
        return super().allowed(None, batch, new, start)


class WrongVocabLM(TinyCausalLM):
    """Drops the last vocabulary logit."""

    def forward(self, x_t, attention_mask=None, positions=None):
        return super().forward(x_t, attention_mask, positions)[..., :-1]


class BatchNormLM(TinyCausalLM):
    """Normalises over the batch, so a row's output depends on the other rows."""

    def forward(self, x_t, attention_mask=None, positions=None):
        logits = super().forward(x_t, attention_mask, positions)
        return logits - logits.mean(dim=0, keepdim=True)


class NaNOnPaddingLM(TinyCausalLM):
    """Lets masked scores become NaN for real tokens of rows that contain padding."""

    def forward(self, x_t, attention_mask=None, positions=None):
        logits = super().forward(x_t, attention_mask, positions)
        if attention_mask is not None and attention_mask.dim() == 2 and not attention_mask.all():
            logits = logits + torch.where(attention_mask.all(dim=1), 0.0, float("nan"))[:, None, None]
        return logits


class DeadParameterLM(TinyCausalLM):
    """Holds a layer the forward pass never uses (its parameters get no gradient)."""

    def __init__(self, vocab_size: int, d_model: int = 16, max_length: int = 64) -> None:
        super().__init__(vocab_size, d_model, max_length)
        self.unused = nn.Linear(d_model, d_model)


class OverlappingDecayLM(TinyCausalLM):
    """Puts the head weight in both weight-decay groups."""

    def get_named_params_for_no_weight_decay(self) -> Iterator[tuple[str, nn.Parameter]]:
        yield from super().get_named_params_for_no_weight_decay()
        yield "head.weight", self.head.weight


class IncompleteDecayLM(TinyCausalLM):
    """Leaves the LayerNorm parameters out of both weight-decay groups."""

    def get_named_params_for_no_weight_decay(self) -> Iterator[tuple[str, nn.Parameter]]:
        for name, p in super().get_named_params_for_no_weight_decay():
            if not name.startswith("norm."):
                yield name, p


class StaleCacheLM(TinyCausalLM):
    """Writes the KV cache but attends only to the new tokens."""

    def attend(self, q, k, v, allowed, start):
        if self._cache is None:
            return super().attend(q, k, v, allowed, start)
        return super().attend(q, k[:, start:], v[:, start:], allowed[:, :, start:], 0)


# --- losses -------------------------------------------------------------------------------------
class DetachedLoss(TinyLoss):
    """Computes the loss on detached logits and then re-enables grad: it never reaches the model."""

    def __call__(self, batch, batch_idx=None, dataloader_idx=None, dataloader_name=None):
        out = super().__call__(batch)
        return {**out, "loss": out["loss"].detach().clone().requires_grad_(True)}


class TargetBlindLoss(TinyLoss):
    """Rebuilds targets from input_ids instead of reading batch['target_ids']."""

    def __call__(self, batch, batch_idx=None, dataloader_idx=None, dataloader_name=None):
        targets = torch.full_like(batch["input_ids"], -100)
        targets[:, :-1] = batch["input_ids"][:, 1:]
        return super().__call__({**batch, "target_ids": targets.masked_fill(batch["attention_mask"] == 0, -100)})


class PerTokenLoss(TinyLoss):
    """Returns the per-token losses instead of a scalar."""

    def __call__(self, batch, batch_idx=None, dataloader_idx=None, dataloader_name=None):
        out = super().__call__(batch)
        return {**out, "loss": out["nlls"]}


class PaddingCountingLoss(TinyLoss):
    """Treats padded positions as targets (predicting the pad id)."""

    def __call__(self, batch, batch_idx=None, dataloader_idx=None, dataloader_name=None):
        mask = batch["attention_mask"].bool()
        logits = self.model(batch["input_ids"], mask, positions_from_attention_mask(mask))
        targets = batch["input_ids"].roll(-1, dims=1)
        return {"loss": F.cross_entropy(logits.flatten(0, 1), targets.flatten())}


class InPlaceLoss(TinyLoss):
    """Overwrites the batch's target_ids in place."""

    def __call__(self, batch, batch_idx=None, dataloader_idx=None, dataloader_name=None):
        batch["target_ids"].clamp_(min=-100)
        batch["target_ids"][:, 0] = -100
        return super().__call__(batch)


# --- collators ----------------------------------------------------------------------------------
class PadTargetCollator(TinyCollator):
    """Puts the pad id, not -100, into target_ids at padding (the loss would learn to predict padding)."""

    def __call__(self, examples):
        batch = super().__call__(examples)
        pad = batch["attention_mask"] == 0
        batch["target_ids"] = batch["target_ids"].masked_fill(pad, self.tokenizer.pad_token_id)
        return batch


class UntruncatedCollator(TinyCollator):
    """Never truncates to block_size."""

    def __call__(self, examples):
        block_size, self.block_size = self.block_size, 10**9
        try:
            return super().__call__(examples)
        finally:
            self.block_size = block_size


class ShortTargetCollator(TinyCollator):
    """Emits target_ids one position shorter than input_ids."""

    def __call__(self, examples):
        batch = super().__call__(examples)
        batch["target_ids"] = batch["target_ids"][:, :-1]
        return batch


# --- predictors ---------------------------------------------------------------------------------
class SamplingPredictor(TinyGreedyPredictor):
    """Samples instead of taking the argmax."""

    def next_ids(self, logits):
        return torch.multinomial(F.softmax(logits.float(), dim=-1), 1).squeeze(1)


class OutOfVocabPredictor(TinyGreedyPredictor):
    """Ends every row with a home-made "stop" id one past the vocabulary."""

    def predict(self, batch, batch_idx=None, dataloader_idx=None, dataloader_name=None) -> dict[str, Any]:
        preds = super().predict(batch)
        preds["ids"][:, -1] = len(self.tokenizer)
        return preds


class TextlessPredictor(TinyGreedyPredictor):
    """Forgets the 'text' output key."""

    def predict(self, batch, batch_idx=None, dataloader_idx=None, dataloader_name=None) -> dict[str, Any]:
        preds = super().predict(batch)
        preds.pop("text")
        return preds

    def to_dict(self, batch, preds, batch_idx=None, dataloader_idx=None, dataloader_name=None):
        return [{"ids": row.tolist()} for row in preds["ids"]]


class IgnoredTargetScoringLoss(TinyLoss):
    """Scores every real position, reading -100 targets as the pad id (it trains on ignored positions)."""

    def __call__(self, batch, batch_idx=None, dataloader_idx=None, dataloader_name=None):
        mask = batch["attention_mask"].bool()
        logits = self.model(batch["input_ids"], mask, positions_from_attention_mask(mask))
        targets = batch["target_ids"].masked_fill(batch["target_ids"] == -100, self.tokenizer.pad_token_id)
        nll = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="none").view_as(targets)
        return {"loss": nll[mask].mean(), "nlls": nll[mask]}


class InputBlindLM(TinyCausalLM):
    """Returns the same logits whatever the input ids."""

    def forward(self, x_t, attention_mask=None, positions=None):
        return super().forward(torch.zeros_like(x_t), attention_mask, positions)
