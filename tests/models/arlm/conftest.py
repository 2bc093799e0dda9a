"""Shared fixtures of the ARLM tests (others may add theirs here)."""

from __future__ import annotations

import pytest
import torch

from xlm_arlm.model_arlm import RotaryTransformerARLMModel
from xlm_core.testing.fixtures import simple_tokenizer, vocab_size  # noqa: F401  (suite fixtures)

from tiny_models import NUMBERS, VOCAB, seeded_tiny_model

TINY_VOCAB_SIZE = VOCAB
PAD_ID = NUMBERS.pad_token_id


def make_tiny_arlm_model(seed: int = 0, **overrides: object) -> RotaryTransformerARLMModel:
    """A seeded, CPU-cheap ARLM (dropout off) matching the numbers tokenizer's vocabulary."""
    return seeded_tiny_model(RotaryTransformerARLMModel, seed, **overrides)


@pytest.fixture
def make_arlm_model():
    """Factory for tiny models with overridden constructor arguments: ``make_arlm_model(seed, **kw)``."""
    return make_tiny_arlm_model


@pytest.fixture
def tiny_arlm_model() -> RotaryTransformerARLMModel:
    """vocab len(SimpleSpaceTokenizer.for_numbers(50)) = 57, d_model 32, 2 layers, 4 heads,
    dropout 0, in eval mode."""
    return make_tiny_arlm_model().eval()


@pytest.fixture
def arlm_batch() -> dict[str, torch.Tensor]:
    """A right-padded LM batch as DefaultARLMCollator builds it: target = input[1:] + [-100].

    Rows hold 6, 4 and 5 real tokens (ids 7..56); padding is PAD (0) with target -100.
    """
    rows = [[7, 12, 30, 8, 55, 21], [9, 9, 40, 17], [56, 7, 33, 20, 11]]
    L = 6
    input_ids = torch.full((3, L), PAD_ID, dtype=torch.long)
    attention_mask = torch.zeros(3, L, dtype=torch.bool)
    target_ids = torch.full((3, L), -100, dtype=torch.long)
    for i, row in enumerate(rows):
        n = len(row)
        input_ids[i, :n] = torch.tensor(row)
        attention_mask[i, :n] = True
        target_ids[i, : n - 1] = torch.tensor(row[1:])
    return {"input_ids": input_ids, "attention_mask": attention_mask, "target_ids": target_ids}
