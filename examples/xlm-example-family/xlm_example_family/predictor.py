"""The example family's predictor: greedy decoding, recomputing the whole prefix each step."""

from __future__ import annotations

from typing import Any

import torch


class GreedyPredictor:
    """Appends ``max_new_tokens`` argmax tokens to left-padded prompts; rows stop at EOS (then PAD)."""

    def __init__(self, model: Any = None, tokenizer: Any = None, noise_schedule: Any = None, max_new_tokens: int = 16) -> None:
        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1; got {max_new_tokens}")
        self.model = model
        self.tokenizer = tokenizer
        self.noise_schedule = noise_schedule
        self.max_new_tokens = max_new_tokens

    @torch.no_grad()
    def predict(
        self,
        batch: dict[str, Any],
        batch_idx: int | None = None,
        dataloader_idx: int | None = None,
        dataloader_name: str | None = None,
    ) -> dict[str, Any]:
        """Return ``ids`` (prompt + generated) and ``generated`` (the new tokens only)."""
        ids, mask = batch["input_ids"], batch["attention_mask"].bool()
        done = torch.zeros(ids.shape[0], dtype=torch.bool, device=ids.device)
        pad, eos = self.tokenizer.pad_token_id, self.tokenizer.eos_token_id
        new = []
        for _ in range(self.max_new_tokens):
            nxt = self.model(ids, mask)[:, -1].argmax(dim=-1)
            nxt = torch.where(done, torch.full_like(nxt, pad), nxt)
            new.append(nxt)
            ids = torch.cat([ids, nxt[:, None]], dim=1)
            mask = torch.cat([mask, ~done[:, None]], dim=1)
            done |= nxt == eos
            if bool(done.all()):
                break
        return {"ids": ids, "generated": torch.stack(new, dim=1)}

    def to_dict(
        self,
        batch: dict[str, Any],
        preds: dict[str, Any],
        batch_idx: int | None = None,
        dataloader_idx: int | None = None,
        dataloader_name: str | None = None,
    ) -> list[dict[str, Any]]:
        """One row per example: the prompt and generated text (and the gold text when present)."""
        rows = []
        for r in range(preds["generated"].shape[0]):
            prompt = batch["input_ids"][r][batch["attention_mask"][r].bool()]
            row = {
                "prompt": self.tokenizer.decode(prompt.tolist(), skip_special_tokens=True),
                "text": self.tokenizer.decode(preds["generated"][r].tolist(), skip_special_tokens=True),
            }
            if "gold_ids" in batch:
                gold = batch["gold_ids"][r]
                row["gold"] = self.tokenizer.decode(gold[gold != -100].tolist(), skip_special_tokens=True)
            rows.append(row)
        return rows
