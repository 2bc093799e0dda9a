"""The numbers tokenizer and the tiny seeded networks the family test folders build their fixtures on."""

from __future__ import annotations

from typing import Any, TypeVar

import torch

from xlm_core.data.simple_tokenizer import SimpleSpaceTokenizer

# SimpleSpaceTokenizer.for_numbers(50): [PAD]=0 [CLS]=1 [MASK]=2 [EOS]=3 [BOS]=4 ... [UNK]=6, word "k" = id k + 7.
NUMBERS = SimpleSpaceTokenizer.for_numbers(50)
VOCAB = len(NUMBERS)  # 57

# vocabulary 57, d_model 32, 2 layers, 4 heads, FFN 64, dropout off: a CPU forward in milliseconds.
TINY_SIZES: dict[str, Any] = dict(
    num_embeddings=VOCAB,
    d_model=32,
    num_layers=2,
    nhead=4,
    padding_idx=NUMBERS.pad_token_id,
    dim_feedforward=64,
    dropout=0.0,
    rotary_emb_dim=8,
    max_length=64,
)

M = TypeVar("M", bound=torch.nn.Module)


def seeded_tiny_model(model_class: type[M], seed: int = 0, **overrides: Any) -> M:
    """``model_class`` at TINY_SIZES (``overrides`` replace or add constructor arguments), initialised from ``seed``."""
    torch.manual_seed(seed)
    return model_class(**{**TINY_SIZES, **overrides})
