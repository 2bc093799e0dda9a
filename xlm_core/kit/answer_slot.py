"""The answer-slot layout of masked families: ``prompt side | answer slot`` rows for seq2seq data.

A masked model fills a fixed slot instead of continuing a prompt token by token, so a row is the prompt side
``[BOS?] prompt [BOS?]`` (``add_bos`` ``input`` / ``output``, as the ARLM collators place it), left-padded or
left-truncated to ``input_block_size`` (0 / None: left-padded to the longest prompt side of the batch), then
an answer slot of exactly ``block_size`` positions: answer, EOS, then PAD up to the slot size. The PADs of the
slot are real tokens (``attention_mask`` True) that the model predicts: that is how it learns where the answer
ends. ``token_type_ids`` is 0 on the prompt side and 1 in the slot. For generation the slot holds mask tokens
and the reference (answer + EOS, right-padded with -100) is kept apart as ``target_ids``.

:class:`AnswerSlotCollator` lays rows out; a family's training collator adds its noise, its prediction
collator calls :meth:`AnswerSlotCollator.prediction_batch` (:class:`SlotPredictionCollator`). :func:`answer_slot_start` and :func:`answer_text`
read the slot back in a predictor.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal, NamedTuple

import torch
from jaxtyping import Bool, Integer
from torch import Tensor as TT

from xlm_core.data.padding import TruncationCounter, pad_list, truncate_list
from xlm_core.kit.collate import (
    TruncationCounting,
    mask_token_id_of,
    required_token_id,
    row_metadata,
    tokenizer_vocab_size,
    validate_examples,
)
from xlm_core.kit.types import IGNORE_INDEX
from xlm_core.plugin.protocols import Tokenizer

__all__ = ["AddBos", "SlotRows", "AnswerSlotCollator", "SlotPredictionCollator", "answer_slot_start", "answer_text"]

AddBos = Literal["input", "output"] | None


class SlotRows(NamedTuple):
    """Clean rows laid out by :meth:`AnswerSlotCollator.layout`."""

    clean: TT  # (B, width + block_size) token ids
    real: TT  # (B, width + block_size) key-padding mask, True = real token
    references: list[list[int]]  # each row's answer + EOS, unpadded
    width: int  # columns of the prompt side


class AnswerSlotCollator(TruncationCounting):
    """Lays seq2seq rows out as ``prompt side | answer slot`` (module docstring); counts truncated rows."""

    def __init__(
        self,
        tokenizer: Tokenizer,
        block_size: int,
        input_block_size: int | None = None,
        add_bos: AddBos = "output",
        add_eos: bool = True,
    ) -> None:
        if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1:
            raise ValueError(f"block_size={block_size!r} (the answer slot) must be an int >= 1.")
        if input_block_size is not None and (not isinstance(input_block_size, int) or input_block_size < 0):
            raise ValueError(f"input_block_size={input_block_size!r} must be an int >= 0 or null.")
        if add_bos not in (None, "input", "output"):
            raise ValueError(f"add_bos={add_bos!r} is not supported; use null, 'input' or 'output'.")
        self.tokenizer = tokenizer
        self.block_size = block_size
        self.input_block_size = input_block_size or None
        self.add_bos, self.add_eos = add_bos, add_eos
        self.pad_token_id = required_token_id(tokenizer, "pad_token_id", "collators pad batches")
        bos = required_token_id(tokenizer, "bos_token_id", f"add_bos={add_bos!r}") if add_bos else None
        self.eos_token_id = required_token_id(tokenizer, "eos_token_id", "add_eos=True") if add_eos else None
        self._head = [bos] if add_bos == "input" else []
        self._tail = [bos] if add_bos == "output" else []
        if self.input_block_size is not None and self.input_block_size < len(self._head) + len(self._tail):
            raise ValueError(f"input_block_size={self.input_block_size} cannot hold the BOS token; raise it.")
        self._vocab_size = tokenizer_vocab_size(tokenizer)
        self.truncation = TruncationCounter(type(self).__name__)

    def _hint(self) -> str:
        prompt = f"input_block_size={self.input_block_size} (prompt) / " if self.input_block_size else ""
        return f"{prompt}block_size={self.block_size} (answer slot)"

    def _prompt_sides(self, rows: list[dict[str, list[int]]]) -> tuple[list[list[int]], list[bool]]:
        """``[BOS?] prompt [BOS?]`` per row, the prompt cut from the left to fit ``input_block_size``."""
        sides, cuts = [], []
        for ex in rows:
            prompt, cut = ex["prompt_ids"], False
            if self.input_block_size is not None:
                prompt, cut = truncate_list(prompt, self.input_block_size - len(self._head) - len(self._tail), "left")
            sides.append(self._head + prompt + self._tail)
            cuts.append(cut)
        return sides, cuts

    def _slot(self, answer: list[int]) -> tuple[list[int], list[int], bool]:
        """The answer slot (answer, EOS, PAD fill) and the reference (answer + EOS, unpadded)."""
        reference = answer + ([self.eos_token_id] if self.add_eos else [])  # type: ignore[list-item]
        reference, cut = truncate_list(reference, self.block_size, side="right")
        return pad_list(reference, self.block_size, self.pad_token_id), reference, cut

    def layout(self, examples: Sequence[Mapping[str, Any]]) -> SlotRows:
        """The clean rows of ``examples`` (rows ``{prompt_ids, input_ids}``), checked and counted."""
        rows = validate_examples(examples, ["prompt_ids", "input_ids"], self._vocab_size)
        sides, cuts = self._prompt_sides(rows)
        width = self.input_block_size if self.input_block_size is not None else max(len(s) for s in sides)
        ids, real, refs, n_cut = [], [], [], 0
        for side, cut_prompt, ex in zip(sides, cuts, rows):
            slot, reference, cut_answer = self._slot(ex["input_ids"])
            ids.append(pad_list(side, width, self.pad_token_id, side="left") + slot)
            real.append([False] * (width - len(side)) + [True] * (len(side) + self.block_size))
            refs.append(reference)
            n_cut += cut_prompt or cut_answer
        self.truncation.update(n_cut, len(rows), self._hint())
        return SlotRows(torch.tensor(ids, dtype=torch.long), torch.tensor(real, dtype=torch.bool), refs, width)

    def token_types(self, batch_size: int, width: int) -> Integer[TT, "batch seq_len"]:
        """0 on the prompt side (``width`` columns), 1 in the answer slot."""
        types = torch.zeros(batch_size, width + self.block_size, dtype=torch.long)
        types[:, width:] = 1
        return types

    def prediction_batch(self, examples: Sequence[Mapping[str, Any]], mask_token_id: int) -> dict[str, Any]:
        """The prompt side then ``block_size`` mask tokens; the reference apart as ``target_ids`` (B, block_size)
        (answer + EOS right-padded with -100: the slot positions the metrics score); rows' scalar fields as
        ``metadata``."""
        clean, real, refs, width = self.layout(examples)
        types = self.token_types(clean.shape[0], width)
        targets = [pad_list(r, self.block_size, IGNORE_INDEX) for r in refs]
        batch: dict[str, Any] = {
            "input_ids": clean.masked_fill(types == 1, mask_token_id),
            "attention_mask": real,
            "target_ids": torch.tensor(targets, dtype=torch.long).reshape(len(refs), self.block_size),
            "token_type_ids": types,
        }
        metadata = row_metadata(examples)
        if metadata:
            batch["metadata"] = metadata
        return batch


def answer_slot_start(batch: Mapping[str, Any], masked: Bool[TT, "batch seq_len"]) -> int:
    """The first column of the answer slot: where ``token_type_ids`` turns 1, else the first masked column."""
    types = batch.get("token_type_ids")
    if isinstance(types, torch.Tensor) and types.shape == masked.shape and bool(types.any()):
        return int(types.any(dim=0).nonzero()[0])
    cols = masked.any(dim=0).nonzero()
    return int(cols[0]) if cols.numel() else masked.shape[1]


def answer_text(tokenizer: Tokenizer, slot: Sequence[int], stop_ids: Sequence[int | None]) -> str:
    """The filled slot decoded up to (not including) the first of ``stop_ids`` (e.g. EOS and PAD)."""
    stops = {t for t in stop_ids if t is not None}
    end = next((i for i, t in enumerate(slot) if t in stops), len(slot))
    return tokenizer.decode(list(slot[:end]), skip_special_tokens=True)


class SlotPredictionCollator(AnswerSlotCollator):
    """Generation batches of a masked family: the prompt side then ``block_size`` mask tokens, the reference
    apart as ``target_ids`` (:meth:`AnswerSlotCollator.prediction_batch`). Prompts of the generate job arrive
    as ``{prompt_ids, input_ids: []}``: the slot is then all mask tokens and every target -100."""

    def __init__(
        self,
        tokenizer: Tokenizer,
        block_size: int,
        input_block_size: int | None = None,
        add_bos: AddBos = "output",
        add_eos: bool = True,
    ) -> None:
        super().__init__(tokenizer, block_size, input_block_size, add_bos, add_eos)
        self.mask_token_id = mask_token_id_of(tokenizer, type(self).__name__)

    def __call__(self, examples: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        return self.prediction_batch(examples, self.mask_token_id)
