"""The example family passes the core's conformance suites (plus a check of its own targets)."""

from __future__ import annotations

import pytest
import torch

from xlm_core.testing import BaseCollatorTests, BaseLossTests, BaseModelTests, BasePredictorTests, make_lm_inputs
from xlm_example_family.collator import NextTokenCollator, PromptCollator
from xlm_example_family.loss import NextTokenLoss
from xlm_example_family.model import RunningMeanLM
from xlm_example_family.predictor import GreedyPredictor


@pytest.fixture
def model(vocab_size):
    torch.manual_seed(0)
    return RunningMeanLM(num_embeddings=vocab_size, d_model=16)


@pytest.fixture
def run_forward(model, vocab_size):
    def run(batch_size=2, seq_len=16, partial_mask=False, *, input_ids=None, attention_mask=None):
        if input_ids is None:
            input_ids, attention_mask = make_lm_inputs(batch_size, seq_len, vocab_size, partial_mask)
        return model(input_ids, attention_mask)

    return run


@pytest.fixture
def raw_examples():
    # ids 7.. are the words "0".."49" of simple_tokenizer; the last example exceeds block_size 8
    return [
        {"prompt_ids": [7, 8], "input_ids": [9, 10]},
        {"input_ids": [11, 12, 13]},
        {"prompt_ids": [7, 8, 9, 10, 11], "input_ids": [12, 13, 14, 15]},
    ]


@pytest.fixture
def collator(simple_tokenizer, dummy_noise_schedule):
    return NextTokenCollator(simple_tokenizer, block_size=8, noise_schedule=dummy_noise_schedule)


class TestModel(BaseModelTests):
    causal = True


class TestLoss(BaseLossTests):
    @pytest.fixture
    def loss_fn(self, model, simple_tokenizer):
        return NextTokenLoss(model=model, tokenizer=simple_tokenizer)

    @pytest.fixture
    def batch(self, collator, raw_examples):
        return collator(raw_examples)


class TestCollator(BaseCollatorTests):
    def test_targets_are_the_next_target_token(self, collator, simple_tokenizer):
        eos, pad = simple_tokenizer.eos_token_id, simple_tokenizer.pad_token_id
        batch = collator([{"prompt_ids": [7, 8], "input_ids": [9, 10]}, {"input_ids": [11]}])
        assert batch["input_ids"].tolist() == [[7, 8, 9, 10, eos], [11, eos, pad, pad, pad]]
        assert batch["target_ids"].tolist() == [[-100, 9, 10, eos, -100], [eos, -100, -100, -100, -100]]


class TestPredictor(BasePredictorTests):
    expected_output_keys = ("ids", "generated")

    @pytest.fixture
    def predictor(self, model, simple_tokenizer, dummy_noise_schedule):
        return GreedyPredictor(model, simple_tokenizer, dummy_noise_schedule, max_new_tokens=5)

    @pytest.fixture
    def batch(self, simple_tokenizer, raw_examples):
        return PromptCollator(simple_tokenizer, block_size=8)(raw_examples)
