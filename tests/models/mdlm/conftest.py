"""Shared fixtures of the MDLM tests: the numbers tokenizer and tiny seeded models."""

from __future__ import annotations

import pytest
import torch

from xlm_core.data.simple_tokenizer import SimpleSpaceTokenizer
from xlm_core.testing.fixtures import simple_tokenizer, vocab_size  # noqa: F401  (suite fixtures)
from xlm_mdlm.model_mdlm import MDLMModel

# SimpleSpaceTokenizer.for_numbers(50): [PAD]=0 [CLS]=1 [MASK]=2 [EOS]=3 [BOS]=4 ..., word "k" = id k + 7.
TOK = SimpleSpaceTokenizer.for_numbers(50)
VOCAB = len(TOK)
PAD, MASK, EOS, BOS = TOK.pad_token_id, TOK.mask_token_id, TOK.eos_token_id, TOK.bos_token_id


def make_tiny_mdlm_model(seed: int = 0, **overrides: object) -> MDLMModel:
    """A seeded, CPU-cheap MDLM network (dropout off) for the numbers tokenizer."""
    kwargs: dict = dict(
        num_embeddings=VOCAB,
        d_model=32,
        num_layers=2,
        nhead=4,
        padding_idx=PAD,
        mask_idx=MASK,
        dim_feedforward=64,
        dropout=0.0,
        rotary_emb_dim=8,
        max_length=64,
    )
    kwargs.update(overrides)
    torch.manual_seed(seed)
    return MDLMModel(**kwargs)


@pytest.fixture
def make_mdlm_model():
    """Factory for tiny models with overridden constructor arguments: ``make_mdlm_model(seed, **kw)``."""
    return make_tiny_mdlm_model


@pytest.fixture
def tok() -> SimpleSpaceTokenizer:
    return SimpleSpaceTokenizer.for_numbers(50)


@pytest.fixture
def tiny_mdlm_model() -> MDLMModel:
    """vocab 57, d_model 32, 2 layers, 4 heads, dropout 0, both position aids on, in eval mode."""
    return make_tiny_mdlm_model(absolute_positions=True, neighbour_mixing=True).eval()
