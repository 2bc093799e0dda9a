"""MLM collators: clean rows are laid out, then positions of the maskable region are noised.

Layout decisions (see also types_mlm.py):
- ``DefaultMLMCollator``: ``[BOS?] ids [EOS?]`` right-padded to ``block_size``; every real position
  may be masked; ``target_ids`` = clean ids, -100 on padding.
- Seq2seq rows are ``prompt_side answer_slot``. The prompt side is ``[BOS?] prompt [BOS?]``
  (``add_bos`` as in the ARLM collators), left-padded / left-truncated to ``input_block_size`` (or,
  when that is 0/None, left-padded to the longest prompt side of the batch). The answer slot has
  exactly ``block_size`` positions: answer, EOS, then PAD tokens up to the slot size. Slot PADs are
  real tokens (``attention_mask`` True, target PAD): the model learns where the answer ends.
- Noise: each row draws a mask rate ``t ~ U(mask_rate_min, mask_rate_max)`` and masks every
  maskable position with probability ``t``. The prompt is never masked and never scored (-100).
- Truncation is counted on each collator (``num_truncated`` / ``num_examples``) and logged.
"""

from __future__ import annotations

import zlib
from typing import Any, Literal, Mapping, Sequence

import torch

from xlm_core.data.padding import TruncationCounter, pad_list, truncate_list
from xlm_core.kit.collate import (
    TruncationCounting,
    mask_token_id_of,
    required_token_id,
    row_metadata,
    tokenizer_vocab_size,
    validate_examples,
)
from xlm_core.plugin.protocols import Tokenizer

from .types_mlm import IGNORE_INDEX, MLMBatch, MLMSeq2SeqBatch, MLMSeq2SeqPredictionBatch

__all__ = [
    "DefaultMLMCollator",
    "MLMSeq2SeqTrainCollator",
    "MLMSeq2SeqPredCollator",
    "MaskingNoise",
]

AddBos = Literal["input", "output"] | None

# region: noise


class MaskingNoise:
    """Draws which maskable positions of each row become the mask token.

    Per row a rate ``t ~ U(mask_rate_min, mask_rate_max)``; each maskable position is masked with
    probability ``t``. ``seed`` gives the collator its own generator (reproducible batches);
    otherwise torch's global generator is used (seeded by the training job). ``fixed_masks`` makes
    the masks a function of the batch content and ``seed`` alone, so an unshuffled validation set
    gets the same masks at every evaluation and its loss is comparable across checkpoints.
    """

    def __init__(
        self,
        mask_rate_min: float = 0.0,
        mask_rate_max: float = 1.0,
        seed: int | None = None,
        fixed_masks: bool = False,
    ) -> None:
        if not 0.0 <= mask_rate_min <= mask_rate_max <= 1.0:
            raise ValueError(
                f"Need 0 <= mask_rate_min <= mask_rate_max <= 1, got {mask_rate_min} and {mask_rate_max}."
            )
        self.mask_rate_min = float(mask_rate_min)
        self.mask_rate_max = float(mask_rate_max)
        self.seed = 0 if seed is None else int(seed)
        self.fixed_masks = fixed_masks
        self.generator = torch.Generator().manual_seed(seed) if seed is not None else None

    def sample_mask(self, maskable: torch.Tensor, content: torch.Tensor | None = None) -> torch.Tensor:
        """Bool (B, L): True where a maskable position is masked (``content``: the clean rows)."""
        B, L = maskable.shape
        generator = self.generator
        if self.fixed_masks:
            data = (content if content is not None else maskable).contiguous().numpy().tobytes()
            generator = torch.Generator().manual_seed(zlib.crc32(data, self.seed & 0xFFFFFFFF))
        span = self.mask_rate_max - self.mask_rate_min
        t = self.mask_rate_min + span * torch.rand(B, 1, generator=generator)  # (B, 1)
        return maskable & (torch.rand(B, L, generator=generator) < t)


# region: collators


class DefaultMLMCollator(TruncationCounting):
    """Pre-training on plain sequences: ``[BOS?] ids [EOS?]`` right-padded, any real position maskable."""

    def __init__(
        self,
        tokenizer: Tokenizer,
        block_size: int,
        truncate: Literal["block", "max"] = "block",
        add_bos: bool = False,
        add_eos: bool = True,
        mask_rate_min: float = 0.0,
        mask_rate_max: float = 1.0,
        seed: int | None = None,
        fixed_masks: bool = False,
    ) -> None:
        if truncate not in ("block", "max"):
            raise ValueError(f"truncate={truncate!r} is not supported; use 'block' or 'max'.")
        if not isinstance(block_size, int) or block_size < 1:
            raise ValueError(f"block_size={block_size!r} must be an int >= 1.")
        self.tokenizer = tokenizer
        self.block_size = block_size
        self.truncate = truncate
        self.add_bos, self.add_eos = add_bos, add_eos
        self.pad_token_id = required_token_id(tokenizer, "pad_token_id", "collators pad batches")
        self.mask_token_id = mask_token_id_of(tokenizer, type(self).__name__)
        self.bos_token_id = required_token_id(tokenizer, "bos_token_id", "add_bos=True") if add_bos else None
        self.eos_token_id = required_token_id(tokenizer, "eos_token_id", "add_eos=True") if add_eos else None
        self.noise = MaskingNoise(mask_rate_min, mask_rate_max, seed, fixed_masks)
        self._vocab_size = tokenizer_vocab_size(tokenizer)
        self.truncation = TruncationCounter(type(self).__name__)

    def __call__(self, examples: Sequence[Mapping[str, Any]]) -> MLMBatch:
        rows = validate_examples(examples, ["input_ids"], self._vocab_size)
        seqs, n_cut = [], 0
        for ex in rows:
            seq = ([self.bos_token_id] if self.add_bos else []) + ex["input_ids"]
            seq += [self.eos_token_id] if self.add_eos else []
            seq, cut = truncate_list(seq, self.block_size, side="right")
            n_cut += cut
            seqs.append(seq)
        self.truncation.update(n_cut, len(rows), f"block_size={self.block_size}")
        width = self.block_size if self.truncate == "block" else max(len(s) for s in seqs)
        clean = torch.tensor([pad_list(s, width, self.pad_token_id) for s in seqs], dtype=torch.long)
        real = torch.tensor([[True] * len(s) + [False] * (width - len(s)) for s in seqs], dtype=torch.bool)
        masked = self.noise.sample_mask(real, clean)
        return {
            "input_ids": clean.masked_fill(masked, self.mask_token_id),
            "attention_mask": real,
            "target_ids": clean.masked_fill(~real, IGNORE_INDEX),
        }


class MLMSeq2SeqTrainCollator(TruncationCounting):
    """Training rows ``prompt_side answer_slot`` with only the answer slot noised and scored."""

    def __init__(
        self,
        tokenizer: Tokenizer,
        block_size: int,
        input_block_size: int | None = None,
        add_bos: AddBos = "output",
        add_eos: bool = True,
        mask_rate_min: float = 0.0,
        mask_rate_max: float = 1.0,
        seed: int | None = None,
        fixed_masks: bool = False,
    ) -> None:
        if not isinstance(block_size, int) or block_size < 1:
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
        self.mask_token_id = mask_token_id_of(tokenizer, type(self).__name__)
        bos = required_token_id(tokenizer, "bos_token_id", f"add_bos={add_bos!r}") if add_bos else None
        self.eos_token_id = required_token_id(tokenizer, "eos_token_id", "add_eos=True") if add_eos else None
        self._head = [bos] if add_bos == "input" else []
        self._tail = [bos] if add_bos == "output" else []
        if self.input_block_size is not None and self.input_block_size < len(self._head) + len(self._tail):
            raise ValueError(f"input_block_size={self.input_block_size} cannot hold the BOS token; raise it.")
        self.noise = MaskingNoise(mask_rate_min, mask_rate_max, seed, fixed_masks)
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

    def _layout(
        self, examples: Sequence[Mapping[str, Any]]
    ) -> tuple[torch.Tensor, torch.Tensor, list[list[int]], int]:
        """Clean rows (B, P + S), their key-padding mask, each row's reference and the prompt width P."""
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
        return torch.tensor(ids, dtype=torch.long), torch.tensor(real, dtype=torch.bool), refs, width

    def _token_types(self, batch_size: int, width: int) -> torch.Tensor:
        types = torch.zeros(batch_size, width + self.block_size, dtype=torch.long)
        types[:, width:] = 1
        return types

    def __call__(self, examples: Sequence[Mapping[str, Any]]) -> MLMSeq2SeqBatch:
        clean, real, _, width = self._layout(examples)
        types = self._token_types(clean.shape[0], width)
        masked = self.noise.sample_mask(types.bool(), clean)
        return {
            "input_ids": clean.masked_fill(masked, self.mask_token_id),
            "attention_mask": real,
            "target_ids": clean.masked_fill(types == 0, IGNORE_INDEX),
            "token_type_ids": types,
        }


class MLMSeq2SeqPredCollator(MLMSeq2SeqTrainCollator):
    """Prediction rows: the prompt side then ``block_size`` mask tokens; the reference kept apart.

    ``target_ids`` (B, block_size) = answer + EOS right-padded with -100: the positions of the slot
    that the metrics score (up to and including EOS).
    """

    def __call__(self, examples: Sequence[Mapping[str, Any]]) -> MLMSeq2SeqPredictionBatch:  # type: ignore[override]
        clean, real, refs, width = self._layout(examples)
        types = self._token_types(clean.shape[0], width)
        targets = [pad_list(r, self.block_size, IGNORE_INDEX) for r in refs]
        batch: MLMSeq2SeqPredictionBatch = {
            "input_ids": clean.masked_fill(types == 1, self.mask_token_id),
            "attention_mask": real,
            "target_ids": torch.tensor(targets, dtype=torch.long).reshape(len(refs), self.block_size),
            "token_type_ids": types,
        }
        metadata = row_metadata(examples)
        if metadata:
            batch["metadata"] = metadata
        return batch
