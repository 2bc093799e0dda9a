"""A right-to-left auto-regressive test family that names everything its own way.

Batches hold ``tokens`` / ``loss_mask`` / ``labels`` (not ``input_ids`` / ``attention_mask`` / ``target_ids``),
``predict()`` returns the generated ids as ``seq`` (not ``ids``), and the metrics are logged under
``{split}/r2l/...``. Declared once (``NAMES``, passed to ``register``), these names are all ``xlm check``
and the harness need. Right to left: the answer is generated last token first.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from xlm_core.data.padding import TruncationCounter, pad_list, truncate_list
from xlm_core.kit.batch_checks import training_tensors
from xlm_core.kit.collate import TruncationCounting, row_metadata, tokenizer_vocab_size, validate_examples
from xlm_core.kit.metrics import align_to_target
from xlm_core.kit.positions import positions_from_attention_mask
from xlm_core.kit.types import IGNORE_INDEX
from xlm_core.modules import (
    RotaryEmbedding,
    RotaryTransformerFinalLayer,
    RotaryTransformerLayer,
    build_attention_mask,
    linear_weights,
)
from xlm_core.plugin.names import FamilyNames

__all__ = [
    "NAMES",
    "R2LModel",
    "R2LLoss",
    "R2LCollator",
    "R2LPredictionCollator",
    "R2LPredictor",
    "r2l_exact_match_update_fn",
    "r2l_token_accuracy_update_fn",
]

NAMES = FamilyNames(token_key="tokens", mask_key="loss_mask", target_key="labels", predicted_ids_key="seq")


class R2LModel(nn.Module):
    """One causal rotary Transformer layer over token embeddings."""

    def __init__(
        self,
        num_embeddings: int,
        d_model: int = 32,
        nhead: int = 2,
        max_length: int = 64,
        padding_idx: int | None = None,
    ) -> None:
        super().__init__()
        self.embed = nn.Embedding(num_embeddings, d_model, padding_idx=padding_idx)
        self.rotary = RotaryEmbedding(d_model // nhead, max_length=max_length)
        self.layer = RotaryTransformerLayer(d_model, nhead, dim_feedforward=2 * d_model, dropout=0.0)
        self.final = RotaryTransformerFinalLayer(d_model, num_embeddings)

    def forward(
        self, tokens: torch.Tensor, mask: torch.Tensor | None = None, positions: torch.Tensor | None = None
    ) -> torch.Tensor:
        batch, length = tokens.shape
        if positions is None:
            positions = torch.arange(length, device=tokens.device).expand(batch, length)
        attn, is_causal = build_attention_mask(mask, length, causal=True, device=tokens.device)
        cos, sin = self.rotary.cos_sin(positions)
        return self.final(self.layer(self.embed(tokens), cos, sin, attn_mask=attn, is_causal=is_causal))

    def get_named_params_for_weight_decay(self) -> Iterator[tuple[str, nn.Parameter]]:
        decay = {id(p) for _, p in linear_weights(self)}
        return ((n, p) for n, p in self.named_parameters() if id(p) in decay)

    def get_named_params_for_no_weight_decay(self) -> Iterator[tuple[str, nn.Parameter]]:
        decay = {id(p) for _, p in linear_weights(self)}
        return ((n, p) for n, p in self.named_parameters() if id(p) not in decay)


class R2LLoss:
    """Next-token cross-entropy over ``labels`` (-100 = unscored)."""

    def __init__(self, model: Any = None, tokenizer: Any = None) -> None:
        self.model, self.tokenizer = model, tokenizer

    def __call__(
        self,
        batch: dict[str, Any],
        batch_idx: int | None = None,
        dataloader_idx: int | None = None,
        dataloader_name: str | None = None,
    ) -> dict[str, torch.Tensor]:
        tokens, mask, labels = training_tensors(batch, "R2LLoss", NAMES)
        logits = self.model(tokens, mask, positions_from_attention_mask(mask))
        nll = F.cross_entropy(logits.transpose(1, 2), labels, ignore_index=IGNORE_INDEX, reduction="none")
        scored = labels != IGNORE_INDEX
        per_row = scored.sum(dim=1)
        return {
            "loss": nll.sum() / per_row.sum().clamp(min=1),
            "batch_loss": nll.detach().sum(dim=1) / per_row.clamp(min=1),
            "nlls": nll.detach()[scored],
        }


class _Collator(TruncationCounting):
    def __init__(self, tokenizer: Any, block_size: int) -> None:
        self.tokenizer, self.block_size = tokenizer, block_size
        self.truncation = TruncationCounter(type(self).__name__)

    def rows(self, examples: Sequence[Mapping[str, Any]]) -> list[dict[str, list[int]]]:
        return validate_examples(examples, ("prompt_ids", "input_ids"), tokenizer_vocab_size(self.tokenizer))


class R2LCollator(_Collator):
    """``[prompt] [BOS] reversed(answer) [EOS]``, right-padded; ``labels`` score the answer and EOS."""

    def __call__(self, examples: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        tok = self.tokenizer
        rows, starts, cut = [], [], 0
        for ex in self.rows(examples):
            answer, cut_a = truncate_list([*reversed(ex["input_ids"]), tok.eos_token_id], self.block_size - 1)
            prompt, cut_p = truncate_list(ex["prompt_ids"], self.block_size - 1 - len(answer), side="left")
            rows.append([*prompt, tok.bos_token_id, *answer])
            starts.append(len(prompt) + 1)
            cut += cut_a or cut_p
        self.truncation.update(cut, len(rows), f"block_size={self.block_size}")
        width = max(map(len, rows))
        labels = [
            [row[i + 1] if start <= i + 1 < len(row) else IGNORE_INDEX for i in range(width)]
            for row, start in zip(rows, starts)
        ]
        return {
            "tokens": torch.tensor([pad_list(r, width, tok.pad_token_id) for r in rows]),
            "loss_mask": torch.tensor([pad_list([True] * len(r), width, False) for r in rows]),
            "labels": torch.tensor(labels),
        }


class R2LPredictionCollator(_Collator):
    """``[prompt] [BOS]`` left-padded; ``labels``: the reversed answer + EOS, right-padded with -100."""

    def __call__(self, examples: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        tok = self.tokenizer
        prompts, answers = [], []
        for ex in self.rows(examples):
            prompts.append([*ex["prompt_ids"][-(self.block_size - 1) :], tok.bos_token_id])
            answers.append([*reversed(ex["input_ids"]), tok.eos_token_id])
        self.truncation.update(0, len(prompts), f"block_size={self.block_size}")
        width, answer_width = max(map(len, prompts)), max(map(len, answers))
        batch: dict[str, Any] = {
            "tokens": torch.tensor([pad_list(p, width, tok.pad_token_id, side="left") for p in prompts]),
            "loss_mask": torch.tensor([pad_list([True] * len(p), width, False, side="left") for p in prompts]),
            "labels": torch.tensor([pad_list(a, answer_width, IGNORE_INDEX) for a in answers]),
        }
        metadata = row_metadata(examples)
        if metadata:
            batch["metadata"] = metadata
        return batch


class R2LPredictor:
    """Greedy: generates the reversed answer; ``text`` is it read back left to right."""

    def __init__(self, model: Any = None, tokenizer: Any = None, max_new_tokens: int = 8) -> None:
        self.model, self.tokenizer, self.max_new_tokens = model, tokenizer, max_new_tokens

    @torch.no_grad()
    def predict(
        self,
        batch: dict[str, Any],
        batch_idx: int | None = None,
        dataloader_idx: int | None = None,
        dataloader_name: str | None = None,
    ) -> dict[str, Any]:
        seq, mask = batch["tokens"], batch["loss_mask"].bool()
        start, eos, pad = seq.shape[1], self.tokenizer.eos_token_id, self.tokenizer.pad_token_id
        done = torch.zeros(seq.shape[0], dtype=torch.bool, device=seq.device)
        for _ in range(self.max_new_tokens):
            nxt = self.model(seq, mask, positions_from_attention_mask(mask))[:, -1].argmax(dim=-1)
            nxt = torch.where(done, pad, nxt)
            seq, mask = torch.cat([seq, nxt[:, None]], dim=1), torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
            done |= nxt == eos
        generated = [[t for t in row if t not in (eos, pad)] for row in seq[:, start:].tolist()]
        text = self.tokenizer.batch_decode([row[::-1] for row in generated], skip_special_tokens=True)
        return {"seq": seq, "output_start_idx": start, "text": text}

    def to_dict(
        self,
        batch: dict[str, Any],
        preds: dict[str, Any],
        batch_idx: int | None = None,
        dataloader_idx: int | None = None,
        dataloader_name: str | None = None,
    ) -> list[dict[str, Any]]:
        metadata = batch.get("metadata") or {}
        return [{**{k: v[i] for k, v in metadata.items()}, "text": text} for i, text in enumerate(preds["text"])]


def r2l_exact_match_update_fn(batch: Mapping[str, Any], preds: Mapping[str, Any], tokenizer: Any = None) -> dict:
    """The core's exact match over this family's keys (``seq`` against ``labels``)."""
    pred, target, _ = align_to_target(batch, preds, tokenizer, ids_key="seq", target_key="labels")
    return {"pred": pred, "target": target}


def r2l_token_accuracy_update_fn(batch: Mapping[str, Any], preds: Mapping[str, Any], tokenizer: Any = None) -> dict:
    """The core's token accuracy over this family's keys."""
    pred, target, scored = align_to_target(batch, preds, tokenizer, ids_key="seq", target_key="labels")
    return {"pred": pred, "target": target, "pred_mask": scored}
