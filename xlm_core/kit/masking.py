"""Masking noise for masked families: which positions of a row become the mask token.

A masked family's collator draws, per row, the probability that a maskable position is masked (MLM: a
rate ``t ~ U(min, max)``; MDLM: ``1 - alpha(t)`` of its noise schedule, ``xlm_core.kit.noise``) and masks
each maskable position independently with it. For a validation loss that is comparable across
checkpoints the draws can be a function of the batch's content (:func:`content_generator`), so an
unshuffled validation set gets the same masks at every evaluation.
"""

from __future__ import annotations

import zlib

import torch
from jaxtyping import Bool, Float
from torch import Tensor as TT

__all__ = ["content_generator", "mask_with_probability"]


def content_generator(content: TT, seed: int = 0) -> torch.Generator:
    """A CPU generator seeded by ``seed`` and a checksum of ``content`` (e.g. the clean token ids of a batch).

    The same batch gives the same draws at every call, whatever happened to the other generators before.
    """
    data = content.detach().cpu().contiguous().numpy().tobytes()
    return torch.Generator().manual_seed(zlib.crc32(data, int(seed) & 0xFFFFFFFF))


def mask_with_probability(
    maskable: Bool[TT, "batch seq_len"],
    probability: Float[TT, " batch"],
    generator: torch.Generator | None = None,
) -> Bool[TT, "batch seq_len"]:
    """True where a maskable position is masked: position ``j`` of row ``i`` with probability ``probability[i]``.

    Draws one uniform number per position (``torch.rand((B, L))`` from ``generator``) and compares it with
    the row's probability, so a probability of 0 masks nothing and 1 masks every maskable position.
    """
    draws = torch.rand(maskable.shape, generator=generator, device=maskable.device)
    return maskable & (draws < probability.to(draws.dtype).unsqueeze(-1))
