"""Shared pytest fixtures for family test suites. Enable with one line in your top-level conftest.py:

pytest_plugins = ["xlm_core.testing.fixtures"]
"""

from __future__ import annotations

import pytest

from xlm_core.data.simple_tokenizer import SimpleSpaceTokenizer


@pytest.fixture
def simple_tokenizer() -> SimpleSpaceTokenizer:
    """Fresh ``SimpleSpaceTokenizer.for_numbers(50)``: words "0".."49" at ids 7..56, 57 ids in all."""
    return SimpleSpaceTokenizer.for_numbers(50)


@pytest.fixture
def vocab_size(simple_tokenizer: SimpleSpaceTokenizer) -> int:
    """Number of logits / embedding rows the suites expect: ``simple_tokenizer.full_vocab_size`` (57)."""
    return simple_tokenizer.full_vocab_size


@pytest.fixture
def batch_size() -> int:
    """Rows per test batch."""
    return 3
