"""A family written against the reference suite contract runs what it can and skips the rest with the fix.

The reference contract: ``run_forward(batch_size, seq_len, partial_mask)`` builds its own inputs (no
``input_ids``/``attention_mask`` keywords) and there is no ``vocab_size`` fixture. The test writes such a
test module and runs it in a fresh pytest session (pytester), so our fixtures plugin is not loaded.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

TESTING_FAMILY = Path(__file__).resolve().parents[1]

REFERENCE_STYLE_TESTS = f"""
import sys
sys.path.insert(0, {str(TESTING_FAMILY)!r})

import pytest
import torch
from testing_family.collator import TinyCollator
from testing_family.loss import TinyLoss
from testing_family.model import TinyCausalLM
from xlm_core.data.simple_tokenizer import SimpleSpaceTokenizer
from xlm_core.kit.positions import positions_from_attention_mask
from xlm_core.testing import BaseLossTests, BaseModelTests
from xlm_core.testing.inputs import make_lm_inputs

VOCAB = 57


@pytest.fixture
def model():
    torch.manual_seed(0)
    return TinyCausalLM(VOCAB)


@pytest.fixture
def run_forward(model):
    def run_forward(batch_size, seq_len, partial_mask):
        ids, mask = make_lm_inputs(batch_size, seq_len, VOCAB, partial_mask)
        return model(ids, mask, positions_from_attention_mask(mask))
    return run_forward


class TestModel(BaseModelTests):
    causal = True


class TestLoss(BaseLossTests):
    @pytest.fixture
    def loss_fn(self, model):
        return TinyLoss(model, SimpleSpaceTokenizer.for_numbers(50))

    @pytest.fixture
    def batch(self):
        tok = SimpleSpaceTokenizer.for_numbers(50)
        rows = [{{"input_ids": tok.encode(t)}} for t in ("1 2 3 4 5 6 7 8", "9 10 11", "12 13 14 15")]
        return TinyCollator(tok, 6)(rows)
"""


def test_reference_fixture_contract_runs_and_skips_with_reasons(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_reference_family=REFERENCE_STYLE_TESTS)
    result = pytester.runpytest("-rs", "-p", "no:cacheprovider")
    outcomes = result.parseoutcomes()
    assert outcomes.get("errors", 0) == 0 and outcomes.get("failed", 0) == 0, result.stdout.str()
    skipped = "\n".join(line for line in result.stdout.lines if line.startswith("SKIPPED"))
    for check in (
        "check_logits_depend_on_input_ids",
        "check_padding_ids_ignored",
        "check_batch_independence",
        "check_causal",
    ):
        assert f"{check} needs controlled inputs: give run_forward keyword arguments input_ids=None" in skipped
    result.assert_outcomes(passed=10, skipped=4)
