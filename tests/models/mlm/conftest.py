"""Shared fixtures of the MLM tests."""

from __future__ import annotations

import pytest

from xlm_core.data.simple_tokenizer import SimpleSpaceTokenizer
from xlm_core.testing.fixtures import simple_tokenizer, vocab_size  # noqa: F401  (suite fixtures)
from xlm_mlm.model_mlm import RotaryTransformerMLMModel

from tiny_models import NUMBERS, seeded_tiny_model

TOK = NUMBERS
PAD, MASK, EOS, BOS = TOK.pad_token_id, TOK.mask_token_id, TOK.eos_token_id, TOK.bos_token_id


def make_tiny_mlm_model(seed: int = 0, **overrides: object) -> RotaryTransformerMLMModel:
    """A seeded, CPU-cheap MLM (dropout off) matching the numbers tokenizer's vocabulary."""
    return seeded_tiny_model(RotaryTransformerMLMModel, seed, **{"mask_idx": MASK, **overrides})


@pytest.fixture
def make_mlm_model():
    """Factory for tiny models with overridden constructor arguments: ``make_mlm_model(seed, **kw)``."""
    return make_tiny_mlm_model


@pytest.fixture
def tiny_mlm_model() -> RotaryTransformerMLMModel:
    """vocab 57, d_model 32, 2 layers, 4 heads, dropout 0, both position aids on, in eval mode."""
    return make_tiny_mlm_model(absolute_positions=True, neighbour_mixing=True).eval()


@pytest.fixture
def tok() -> SimpleSpaceTokenizer:
    return SimpleSpaceTokenizer.for_numbers(50)
