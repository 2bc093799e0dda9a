"""Greedy generation from left-padded prompts, recomputing the whole prefix each step."""

from __future__ import annotations

from typing import Any

import torch

from xlm_core.kit.positions import positions_from_attention_mask


class TinyGreedyPredictor:
    def __init__(self, model: torch.nn.Module, tokenizer: Any, max_new_tokens: int = 4) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.max_new_tokens = max_new_tokens

    def next_ids(self, logits: torch.Tensor) -> torch.Tensor:
        return logits.argmax(dim=-1)

    def predict(self, batch, batch_idx=None, dataloader_idx=None, dataloader_name=None) -> dict[str, Any]:
        ids, mask = batch["input_ids"], batch["attention_mask"].bool()
        start = ids.shape[1]
        for _ in range(self.max_new_tokens):
            logits = self.model(ids, mask, positions_from_attention_mask(mask))
            nxt = self.next_ids(logits[:, -1])
            ids = torch.cat([ids, nxt.unsqueeze(1)], dim=1)
            mask = torch.cat([mask, torch.ones_like(nxt, dtype=torch.bool).unsqueeze(1)], dim=1)
        return {
            "ids": ids,
            "attention_mask": mask,
            "text": self.tokenizer.batch_decode(ids[:, start:], skip_special_tokens=True),
            "output_start_idx": start,
        }

    def to_dict(self, batch, preds, batch_idx=None, dataloader_idx=None, dataloader_name=None) -> list[dict[str, Any]]:
        return [
            {"text": text, "ids": row.tolist()}
            for text, row in zip(preds["text"], preds["ids"][:, preds["output_start_idx"] :])
        ]
