"""Next-token cross-entropy over ``target_ids`` (already shifted; -100 ignored), as the ARLM loss."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from xlm_core.kit.positions import positions_from_attention_mask


class TinyLoss:
    def __init__(self, model: torch.nn.Module, tokenizer: Any = None) -> None:
        self.model = model
        self.tokenizer = tokenizer

    def __call__(self, batch, batch_idx=None, dataloader_idx=None, dataloader_name=None) -> dict[str, Any]:
        mask = batch["attention_mask"].bool()
        logits = self.model(batch["input_ids"], mask, positions_from_attention_mask(mask))
        nll = F.cross_entropy(
            logits.flatten(0, 1), batch["target_ids"].flatten(), ignore_index=-100, reduction="none"
        ).view_as(batch["target_ids"])
        valid = batch["target_ids"] != -100
        return {
            "loss": nll[valid].mean(),
            "batch_loss": (nll * valid).sum(1) / valid.sum(1).clamp(min=1),
            "nlls": nll[valid],
        }
