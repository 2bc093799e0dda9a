"""MDLM collators: clean rows laid out by the kit, then noised to a time ``t`` drawn from a noise schedule.

- :class:`DiffusionNoise`: one time per row, ``t in [eps, 1]`` (``xlm_core.kit.noise.sample_times``,
  antithetic over the batch by default), and each maskable position masked with probability
  ``1 - alpha(t)`` of the schedule (``xlm_core.kit.noise``). The time goes into the batch as ``noise_t``,
  where the loss reads its NELBO weight.
- :class:`MDLMTextCollator`: text rows (``xlm_core.kit.text_rows``; packed rows with per-document positions
  and attention), every real token noised and scored.
- :class:`MDLMSeq2SeqCollator`: ``prompt side | answer slot`` rows (``xlm_core.kit.answer_slot``), only the
  slot noised and scored; the prompt stays clean.
- :class:`MDLMPredCollator`: the prompt side and a slot of mask tokens to generate into (seq2seq answers, or
  unconditional text of ``block_size`` tokens after ``[BOS] prompt``).

``time_samples: K`` (validation) puts each row into the batch K times at K evenly spread times, a
lower-variance estimate of the NELBO; ``fixed_masks`` draws times and masks from the batch content, so every
evaluation of an unshuffled split sees the same ones and its NELBO is comparable across checkpoints.
``fixed_time: t`` (evaluation only) noises every row to that one time: the loss is then the NELBO's
integrand at ``t``, which for the log-linear schedule is about the model's mean cross-entropy on the masked
tokens when a fraction ``t`` of the row is masked (how much of the bound each masking rate contributes).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import torch
from jaxtyping import Bool, Float
from torch import Tensor as TT

from xlm_core.api import (
    IGNORE_INDEX,
    AnswerSlotCollator,
    LogLinearSchedule,
    NoiseSchedule,
    SlotPredictionCollator,
    TextRowCollator,
    Tokenizer,
    content_generator,
    mask_token_id_of,
    mask_with_probability,
    sample_times,
)

from .types_mdlm import MDLMPredictionBatch, MDLMSeq2SeqBatch, MDLMTextBatch

AddBos = Literal["input", "output"] | None

__all__ = ["DiffusionNoise", "MDLMTextCollator", "MDLMSeq2SeqCollator", "MDLMPredCollator", "schedule_or_default"]


def schedule_or_default(noise_schedule: Any, who: str) -> NoiseSchedule:
    """``noise_schedule`` checked against the ``NoiseSchedule`` protocol; None: the log-linear schedule."""
    if noise_schedule is None:
        return LogLinearSchedule()
    if not isinstance(noise_schedule, NoiseSchedule):
        raise TypeError(
            f"{who}: noise_schedule={noise_schedule!r} is not a noise schedule; give one of xlm_core.kit.noise "
            "(noise_schedule: {_target_: xlm_core.kit.noise.LogLinearSchedule})."
        )
    return noise_schedule


class DiffusionNoise:
    """Draws ``z_t`` for a batch: a time per row and the positions masked at that time (module docstring).

    ``seed`` gives the collator its own generator (reproducible batches); otherwise torch's global generator
    is used (seeded by the training job). ``fixed_masks`` makes times and masks a function of the batch
    content and ``seed`` alone. ``antithetic`` spreads a batch's times evenly over ``[eps, 1]``;
    ``fixed_time`` puts every row at that time instead (a diagnostic, not an estimate of the NELBO).
    """

    def __init__(
        self,
        noise_schedule: NoiseSchedule | None = None,
        antithetic: bool = True,
        seed: int | None = None,
        fixed_masks: bool = False,
        time_samples: int = 1,
        fixed_time: float | None = None,
    ) -> None:
        if fixed_time is not None and not 0.0 < float(fixed_time) <= 1.0:
            raise ValueError(
                f"fixed_time={fixed_time!r} must lie in (0, 1] (the time every row is noised to), or null."
            )
        if isinstance(time_samples, bool) or not isinstance(time_samples, int) or time_samples < 1:
            raise ValueError(f"time_samples={time_samples!r} must be an int >= 1 (times drawn per row).")
        self.schedule = schedule_or_default(noise_schedule, "DiffusionNoise")
        self.antithetic = bool(antithetic)
        self.seed = 0 if seed is None else int(seed)
        self.fixed_masks = bool(fixed_masks)
        self.time_samples = time_samples
        self.fixed_time = None if fixed_time is None else float(fixed_time)
        self.generator = torch.Generator().manual_seed(seed) if seed is not None else None

    def __call__(
        self, clean: TT, maskable: Bool[TT, "batch seq_len"]
    ) -> tuple[Bool[TT, "batch seq_len"], Float[TT, " batch"]]:
        """``(masked, t)``: True where a maskable position of ``clean`` becomes the mask token; each row's time."""
        generator = content_generator(clean, self.seed) if self.fixed_masks else self.generator
        if self.fixed_time is None:
            t = sample_times(maskable.shape[0], self.schedule.eps, self.antithetic, generator)
        else:
            t = torch.full((maskable.shape[0],), self.fixed_time)
        return self.mask_at(maskable, t, generator), t

    def mask_at(
        self, maskable: Bool[TT, "batch seq_len"], t: Float[TT, " batch"], generator: torch.Generator | None = None
    ) -> Bool[TT, "batch seq_len"]:
        """Each maskable position of row ``i`` masked with probability ``1 - alpha(t[i])`` (all at ``t = 1``,
        none at ``t = 0``)."""
        return mask_with_probability(maskable, self.schedule.mask_probability(t), generator)

    def repeat(self, tensor: TT) -> TT:
        """``tensor`` stacked ``time_samples`` times along the batch (copy ``k`` of row ``r`` at row ``k * B + r``;
        with antithetic times the copies of a row sit ``1 / time_samples`` apart in time)."""
        return tensor if self.time_samples == 1 else tensor.repeat(self.time_samples, *([1] * (tensor.dim() - 1)))


class MDLMTextCollator(TextRowCollator):
    """Text rows, every real token noised and scored (``target_ids`` = clean ids, -100 on padding).

    Packed rows (``xlm_core.data.packing.tokenize_and_pack``) already hold BOS and EOS; with
    ``document_positions`` / ``document_attention`` the batch gets per-document ``positions`` and
    ``document_ids`` and the loss keeps attention inside each document.
    """

    def __init__(
        self,
        tokenizer: Tokenizer,
        block_size: int,
        noise_schedule: NoiseSchedule | None = None,
        truncate: Literal["block", "max"] = "block",
        add_bos: bool = False,
        add_eos: bool = False,
        antithetic: bool = True,
        seed: int | None = None,
        fixed_masks: bool = False,
        time_samples: int = 1,
        document_positions: bool = False,
        document_attention: bool = False,
        fixed_time: float | None = None,
    ) -> None:
        super().__init__(tokenizer, block_size, truncate, add_bos, add_eos, document_positions, document_attention)
        self.mask_token_id = mask_token_id_of(tokenizer, type(self).__name__)
        self.noise = DiffusionNoise(noise_schedule, antithetic, seed, fixed_masks, time_samples, fixed_time)

    def __call__(self, examples: Sequence[Mapping[str, Any]]) -> MDLMTextBatch:
        clean, real, fields = self.layout(examples)
        clean, real = self.noise.repeat(clean), self.noise.repeat(real)
        masked, t = self.noise(clean, real)
        return {  # type: ignore[return-value]
            "input_ids": clean.masked_fill(masked, self.mask_token_id),
            "attention_mask": real,
            "target_ids": clean.masked_fill(~real, IGNORE_INDEX),
            "noise_t": t,
            **{key: self.noise.repeat(value) for key, value in fields.items()},
        }


class MDLMSeq2SeqCollator(AnswerSlotCollator):
    """``prompt side | answer slot`` rows (``xlm_core.kit.answer_slot``): the slot is noised and scored, the
    prompt stays clean and is never scored (-100)."""

    def __init__(
        self,
        tokenizer: Tokenizer,
        block_size: int,
        noise_schedule: NoiseSchedule | None = None,
        input_block_size: int | None = None,
        add_bos: AddBos = "output",
        add_eos: bool = True,
        antithetic: bool = True,
        seed: int | None = None,
        fixed_masks: bool = False,
        time_samples: int = 1,
        fixed_time: float | None = None,
    ) -> None:
        super().__init__(tokenizer, block_size, input_block_size, add_bos, add_eos)
        self.mask_token_id = mask_token_id_of(tokenizer, type(self).__name__)
        self.noise = DiffusionNoise(noise_schedule, antithetic, seed, fixed_masks, time_samples, fixed_time)

    def __call__(self, examples: Sequence[Mapping[str, Any]]) -> MDLMSeq2SeqBatch:
        clean, real, _, width = self.layout(examples)
        clean, real = self.noise.repeat(clean), self.noise.repeat(real)
        types = self.token_types(clean.shape[0], width)
        masked, t = self.noise(clean, types.bool())
        return {
            "input_ids": clean.masked_fill(masked, self.mask_token_id),
            "attention_mask": real,
            "target_ids": clean.masked_fill(types == 0, IGNORE_INDEX),
            "token_type_ids": types,
            "noise_t": t,
        }


class MDLMPredCollator(SlotPredictionCollator):
    """Generation rows: ``[BOS?] prompt [BOS?]`` then ``block_size`` mask tokens (``xlm_core.kit.answer_slot``).

    Seq2seq data: the answer slot after the prompt, the reference apart as ``target_ids``. Text: with
    ``add_bos: input`` and ``add_eos: false`` a prompt ``""`` gives ``[BOS]`` and ``block_size`` masks, an
    unconditional sample of a document's first ``block_size + 1`` tokens.
    """

    def __call__(self, examples: Sequence[Mapping[str, Any]]) -> MDLMPredictionBatch:
        return super().__call__(examples)  # type: ignore[return-value]
