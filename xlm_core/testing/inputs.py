"""Deterministic random inputs for model checks (and for a family's ``run_forward`` fixture)."""

from __future__ import annotations

import torch
from jaxtyping import Bool, Integer
from torch import Tensor as TT

__all__ = ["make_lm_inputs", "right_padded_mask", "left_padded_mask"]


def right_padded_mask(batch_size: int, seq_len: int) -> Bool[TT, "batch seq_len"]:
    """Key-padding mask with trailing padding: every row has 1..seq_len//2 pads, rows differ in length."""
    lengths = [seq_len - 1 - (i * (seq_len // 2)) // max(batch_size, 1) for i in range(batch_size)]
    lengths = [max(1, n) for n in lengths]
    return torch.arange(seq_len).unsqueeze(0) < torch.tensor(lengths).unsqueeze(1)


def left_padded_mask(batch_size: int, seq_len: int) -> Bool[TT, "batch seq_len"]:
    """Mask with leading padding (prompt-style): row 0 is full, row i has i*2 pads (at most seq_len-1)."""
    pads = [min(2 * i, seq_len - 1) for i in range(batch_size)]
    return torch.arange(seq_len).unsqueeze(0) >= torch.tensor(pads).unsqueeze(1)


def make_lm_inputs(
    batch_size: int,
    seq_len: int,
    vocab_size: int,
    partial_mask: bool = False,
    *,
    seed: int = 0,
    pad_token_id: int = 0,
) -> tuple[Integer[TT, "batch seq_len"], Bool[TT, "batch seq_len"]]:
    """Random ids in ``[0, vocab_size)`` and a bool mask (True = real); padded ids are ``pad_token_id``.

    With ``partial_mask`` the rows are right-padded (see :func:`right_padded_mask`).
    """
    if vocab_size < 2 or batch_size < 1 or seq_len < 2:
        raise ValueError(
            "make_lm_inputs needs vocab_size>=2, batch_size>=1, seq_len>=2; "
            f"got vocab_size={vocab_size}, batch_size={batch_size}, seq_len={seq_len}."
        )
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, vocab_size, (batch_size, seq_len), generator=gen)
    if partial_mask:
        mask = right_padded_mask(batch_size, seq_len)
    else:
        mask = torch.ones(batch_size, seq_len, dtype=torch.bool)
    ids = ids.masked_fill(~mask, pad_token_id)
    return ids, mask
