"""Right-padding LM collator: truncate to block_size, pad to the batch maximum, shift targets by one."""

from __future__ import annotations

from typing import Any

import torch


class TinyCollator:
    def __init__(self, tokenizer: Any, block_size: int) -> None:
        self.tokenizer = tokenizer
        self.block_size = block_size

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        rows = [list(ex["input_ids"])[: self.block_size] for ex in examples]
        length = max(len(r) for r in rows)
        pad = self.tokenizer.pad_token_id
        input_ids = torch.full((len(rows), length), pad, dtype=torch.long)
        attention_mask = torch.zeros((len(rows), length), dtype=torch.long)
        target_ids = torch.full((len(rows), length), -100, dtype=torch.long)
        for i, r in enumerate(rows):
            input_ids[i, : len(r)] = torch.tensor(r)
            attention_mask[i, : len(r)] = 1
            target_ids[i, : len(r) - 1] = torch.tensor(r[1:])
        return {"input_ids": input_ids, "attention_mask": attention_mask, "target_ids": target_ids}


class TinyPromptCollator:
    """Left-pads each example's ``prompt_ids`` (the last ``block_size``) for generation."""

    def __init__(self, tokenizer: Any, block_size: int) -> None:
        self.tokenizer = tokenizer
        self.block_size = block_size

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        rows = [list(ex["prompt_ids"])[-self.block_size :] or [self.tokenizer.bos_token_id] for ex in examples]
        length = max(len(r) for r in rows)
        input_ids = torch.full((len(rows), length), self.tokenizer.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((len(rows), length), dtype=torch.long)
        for i, r in enumerate(rows):
            input_ids[i, length - len(r) :] = torch.tensor(r)
            attention_mask[i, length - len(r) :] = 1
        return {"input_ids": input_ids, "attention_mask": attention_mask}
