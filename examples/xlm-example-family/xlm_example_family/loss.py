"""The example family's loss: mean cross-entropy of the next token over non-ignored targets."""

from __future__ import annotations

from typing import Any

import torch.nn.functional as F


class NextTokenLoss:
    """Teacher-forced next-token loss; ``target_ids`` hold -100 where nothing is predicted."""

    def __init__(self, model: Any = None, tokenizer: Any = None, ignore_index: int = -100) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.ignore_index = ignore_index

    def configure(self, pl_module: Any) -> None:
        """Nothing to cache."""
        return None

    def __call__(
        self,
        batch: dict[str, Any],
        batch_idx: int | None = None,
        dataloader_idx: int | None = None,
        dataloader_name: str | None = None,
    ) -> dict[str, Any]:
        """Return ``loss`` (mean over valid targets) and ``nlls`` (one per valid target)."""
        logits = self.model(batch["input_ids"], batch["attention_mask"].bool())
        targets = batch["target_ids"]
        nll = F.cross_entropy(logits.transpose(1, 2), targets, ignore_index=self.ignore_index, reduction="none")
        valid = targets != self.ignore_index
        return {"loss": nll[valid].sum() / valid.sum().clamp(min=1), "nlls": nll[valid]}
