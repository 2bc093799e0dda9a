"""Shared fixtures of the MDLM tests: the numbers tokenizer and tiny seeded models."""

from __future__ import annotations

import pytest

from xlm_core.data.simple_tokenizer import SimpleSpaceTokenizer
from xlm_core.testing.fixtures import simple_tokenizer, vocab_size  # noqa: F401  (suite fixtures)
from xlm_mdlm.model_mdlm import MDLMModel

from tiny_models import NUMBERS, seeded_tiny_model

TOK = NUMBERS
PAD, MASK, EOS, BOS = TOK.pad_token_id, TOK.mask_token_id, TOK.eos_token_id, TOK.bos_token_id


def make_tiny_mdlm_model(seed: int = 0, **overrides: object) -> MDLMModel:
    """A seeded, CPU-cheap MDLM network (dropout off) for the numbers tokenizer."""
    return seeded_tiny_model(MDLMModel, seed, **{"mask_idx": MASK, **overrides})


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
