"""The example family's collators: teacher-forced training batches and left-padded prompts for generation."""

from __future__ import annotations

from typing import Any

import torch

IGNORE_INDEX = -100


class NextTokenCollator:
    """``[prompt][target][EOS]`` right-padded to the batch maximum (at most ``block_size``).

    ``target_ids[i]`` is the token at ``i+1`` when that token belongs to the target (or is the EOS),
    else -100. Examples are ``{"input_ids": [...]}`` with an optional ``"prompt_ids": [...]``; a
    sequence longer than ``block_size`` loses tokens from the left (prompt first).
    """

    def __init__(self, tokenizer: Any, block_size: int, noise_schedule: Any = None) -> None:
        if block_size < 2:
            raise ValueError(f"block_size must be >= 2; got {block_size}")
        self.tokenizer = tokenizer
        self.block_size = block_size
        self.noise_schedule = noise_schedule

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        rows: list[tuple[list[int], int]] = []  # (sequence, index of its first target token)
        for ex in examples:
            prompt = list(ex.get("prompt_ids", []))
            seq = prompt + list(ex["input_ids"]) + [self.tokenizer.eos_token_id]
            start = len(prompt)
            cut = max(0, len(seq) - self.block_size)
            rows.append((seq[cut:], max(0, start - cut)))
        length = max(len(seq) for seq, _ in rows)
        input_ids = torch.full((len(rows), length), self.tokenizer.pad_token_id, dtype=torch.long)
        target_ids = torch.full((len(rows), length), IGNORE_INDEX, dtype=torch.long)
        attention_mask = torch.zeros((len(rows), length), dtype=torch.bool)
        for r, (seq, start) in enumerate(rows):
            input_ids[r, : len(seq)] = torch.tensor(seq)
            attention_mask[r, : len(seq)] = True
            first = max(start - 1, 0)  # the position predicting the first target token
            if len(seq) > 1:
                target_ids[r, first : len(seq) - 1] = torch.tensor(seq[first + 1 :])
        return {"input_ids": input_ids, "attention_mask": attention_mask, "target_ids": target_ids}


class PromptCollator:
    """Left-padded prompts (``input_ids``) for generation, with the gold target apart in ``gold_ids``."""

    def __init__(self, tokenizer: Any, block_size: int, noise_schedule: Any = None) -> None:
        self.tokenizer = tokenizer
        self.block_size = block_size
        self.noise_schedule = noise_schedule

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        prompts = [list(ex.get("prompt_ids", []))[-self.block_size :] for ex in examples]
        golds = [list(ex["input_ids"]) + [self.tokenizer.eos_token_id] for ex in examples]
        width, gold_width = max(1, max(map(len, prompts))), max(map(len, golds))
        input_ids = torch.full((len(examples), width), self.tokenizer.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((len(examples), width), dtype=torch.bool)
        gold_ids = torch.full((len(examples), gold_width), IGNORE_INDEX, dtype=torch.long)
        for r, (prompt, gold) in enumerate(zip(prompts, golds)):
            if prompt:
                input_ids[r, width - len(prompt) :] = torch.tensor(prompt)
                attention_mask[r, width - len(prompt) :] = True
            gold_ids[r, : len(gold)] = torch.tensor(gold)
        return {"input_ids": input_ids, "attention_mask": attention_mask, "gold_ids": gold_ids}
