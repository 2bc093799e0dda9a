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

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import torch

from xlm_core.kit.answer_slot import AddBos, AnswerSlotCollator
from xlm_core.kit.collate import mask_token_id_of
from xlm_core.kit.masking import content_generator, mask_with_probability
from xlm_core.kit.text_rows import TextRowCollator
from xlm_core.plugin.protocols import Tokenizer

from .types_mlm import IGNORE_INDEX, MLMBatch, MLMSeq2SeqBatch, MLMSeq2SeqPredictionBatch

__all__ = [
    "DefaultMLMCollator",
    "MLMSeq2SeqTrainCollator",
    "MLMSeq2SeqPredCollator",
    "MaskingNoise",
]

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
            raise ValueError(f"Need 0 <= mask_rate_min <= mask_rate_max <= 1, got {mask_rate_min} and {mask_rate_max}.")
        self.mask_rate_min = float(mask_rate_min)
        self.mask_rate_max = float(mask_rate_max)
        self.seed = 0 if seed is None else int(seed)
        self.fixed_masks = fixed_masks
        self.generator = torch.Generator().manual_seed(seed) if seed is not None else None

    def sample_mask(self, maskable: torch.Tensor, content: torch.Tensor | None = None) -> torch.Tensor:
        """Bool (B, L): True where a maskable position is masked (``content``: the clean rows)."""
        generator = self.generator
        if self.fixed_masks:
            generator = content_generator(content if content is not None else maskable, self.seed)
        span = self.mask_rate_max - self.mask_rate_min
        t = self.mask_rate_min + span * torch.rand(maskable.shape[0], generator=generator)  # (B,)
        return mask_with_probability(maskable, t, generator)


# region: collators


class DefaultMLMCollator(TextRowCollator):
    """Pre-training on plain sequences: ``[BOS?] ids [EOS?]`` right-padded, any real position maskable
    (``xlm_core.kit.text_rows``).

    Packed rows (``xlm_core.data.packing.tokenize_and_pack``) carry ``document_lengths``; with
    ``document_positions`` the batch gets ``positions`` restarting at 0 in each document, with
    ``document_attention`` it gets ``document_ids`` (the loss then keeps attention inside a document;
    ``xlm_core.kit.documents``). Padding gets position 0 and document id -1.
    """

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
        document_positions: bool = False,
        document_attention: bool = False,
    ) -> None:
        super().__init__(tokenizer, block_size, truncate, add_bos, add_eos, document_positions, document_attention)
        self.mask_token_id = mask_token_id_of(tokenizer, type(self).__name__)
        self.noise = MaskingNoise(mask_rate_min, mask_rate_max, seed, fixed_masks)

    def __call__(self, examples: Sequence[Mapping[str, Any]]) -> MLMBatch:
        clean, real, fields = self.layout(examples)
        masked = self.noise.sample_mask(real, clean)
        return {  # type: ignore[return-value]
            "input_ids": clean.masked_fill(masked, self.mask_token_id),
            "attention_mask": real,
            "target_ids": clean.masked_fill(~real, IGNORE_INDEX),
            **fields,
        }


class MLMSeq2SeqTrainCollator(AnswerSlotCollator):
    """Training rows ``prompt_side answer_slot`` (``xlm_core.kit.answer_slot``) with only the answer slot noised
    and scored."""

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
        super().__init__(tokenizer, block_size, input_block_size, add_bos, add_eos)
        self.mask_token_id = mask_token_id_of(tokenizer, type(self).__name__)
        self.noise = MaskingNoise(mask_rate_min, mask_rate_max, seed, fixed_masks)

    def __call__(self, examples: Sequence[Mapping[str, Any]]) -> MLMSeq2SeqBatch:
        clean, real, _, width = self.layout(examples)
        types = self.token_types(clean.shape[0], width)
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
        return self.prediction_batch(examples, self.mask_token_id)  # type: ignore[return-value]
