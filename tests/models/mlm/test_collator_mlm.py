"""MLM collators on hand-built examples: answer slot layout, targets, masking region, truncation."""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
import pytest
import torch
from omegaconf import OmegaConf

from xlm_core.data.simple_tokenizer import SimpleSpaceTokenizer
from xlm_core.testing import BaseCollatorTests
from xlm_core.testing.typecheck import unchecked
from xlm_mlm.collators_mlm import (
    DefaultMLMCollator,
    MaskingNoise,
    MLMSeq2SeqPredCollator,
    MLMSeq2SeqTrainCollator,
)

TOK = SimpleSpaceTokenizer.for_numbers(50)
PAD, MASK, EOS, BOS, X = 0, 2, 3, 4, -100
CONFIG_DIR = Path(__import__("xlm_mlm").__file__).parent / "configs" / "collator"
EXAMPLES = [
    {"prompt_ids": [10, 11], "input_ids": [20, 21]},
    {"prompt_ids": [12, 13, 14, 15], "input_ids": [22, 23, 24, 25, 26]},  # prompt and answer too long
]


def _t(rows):
    return torch.tensor(rows, dtype=torch.long)


def _b(rows):
    return torch.tensor(rows, dtype=torch.bool)


class TestSeq2SeqTrainCollatorConformance(BaseCollatorTests):
    @pytest.fixture
    def collator(self):
        return MLMSeq2SeqTrainCollator(TOK, block_size=4, input_block_size=4, seed=0)

    @pytest.fixture
    def raw_examples(self):
        return [dict(ex) for ex in EXAMPLES] + [{"prompt_ids": [16], "input_ids": [27]}]


class TestDefaultCollatorConformance(BaseCollatorTests):
    @pytest.fixture
    def collator(self):
        return DefaultMLMCollator(TOK, block_size=5, seed=0)

    @pytest.fixture
    def raw_examples(self):
        return [{"input_ids": [10, 11]}, {"input_ids": [12, 13, 14, 15, 16, 17]}]


def test_seq2seq_clean_layout_with_nothing_masked() -> None:
    collator = MLMSeq2SeqTrainCollator(TOK, block_size=4, input_block_size=4, mask_rate_max=0.0)
    batch = collator(EXAMPLES)
    assert torch.equal(
        batch["input_ids"], _t([[PAD, 10, 11, BOS, 20, 21, EOS, PAD], [13, 14, 15, BOS, 22, 23, 24, 25]])
    )
    assert torch.equal(batch["attention_mask"], _b([[False] + [True] * 7, [True] * 8]))
    # the PAD inside the slot is a real target; the prompt side is never scored
    assert torch.equal(batch["target_ids"], _t([[X, X, X, X, 20, 21, EOS, PAD], [X, X, X, X, 22, 23, 24, 25]]))
    assert torch.equal(batch["token_type_ids"], _t([[0, 0, 0, 0, 1, 1, 1, 1]] * 2))
    assert collator.num_truncated == 1 and collator.num_examples == 2


def test_seq2seq_masks_only_inside_the_answer_slot() -> None:
    collator = MLMSeq2SeqTrainCollator(TOK, block_size=4, input_block_size=4, mask_rate_min=1.0)
    batch = collator(EXAMPLES)
    assert torch.equal(batch["input_ids"][:, 4:], torch.full((2, 4), MASK))
    assert torch.equal(batch["input_ids"][:, :4], _t([[PAD, 10, 11, BOS], [13, 14, 15, BOS]]))
    assert torch.equal(batch["target_ids"][0, 4:], _t([20, 21, EOS, PAD]))


def test_seq2seq_random_masking_keeps_targets_and_prompt() -> None:
    collator = MLMSeq2SeqTrainCollator(TOK, block_size=14, input_block_size=6, seed=3)
    rows = [{"prompt_ids": list(range(7, 12)), "input_ids": list(range(20, 28))} for _ in range(64)]
    batch = collator(rows)
    ids, targets = batch["input_ids"], batch["target_ids"]
    masked = ids == MASK
    assert bool(masked[:, 6:].any()) and not bool(masked[:, :6].any())
    assert torch.equal(ids[:, :6], torch.tensor([[7, 8, 9, 10, 11, BOS]] * 64))
    visible_slot = ~masked[:, 6:]
    assert torch.equal(ids[:, 6:][visible_slot], targets[:, 6:][visible_slot])
    rates = masked[:, 6:].float().mean(dim=1)
    assert 0.2 < rates.mean().item() < 0.8 and rates.std().item() > 0.1  # one rate per row, spread over (0, 1)


def test_seq2seq_seed_makes_batches_reproducible() -> None:
    a = MLMSeq2SeqTrainCollator(TOK, block_size=6, input_block_size=4, seed=7)
    b = MLMSeq2SeqTrainCollator(TOK, block_size=6, input_block_size=4, seed=7)
    assert torch.equal(a(EXAMPLES)["input_ids"], b(EXAMPLES)["input_ids"])


def test_seq2seq_without_prompt_block_pads_to_the_longest_prompt() -> None:
    collator = MLMSeq2SeqTrainCollator(TOK, block_size=3, input_block_size=0, add_bos=None, mask_rate_max=0.0)
    batch = collator([{"prompt_ids": [10], "input_ids": [20]}, {"prompt_ids": [11, 12, 13], "input_ids": []}])
    assert torch.equal(batch["input_ids"], _t([[PAD, PAD, 10, 20, EOS, PAD], [11, 12, 13, EOS, PAD, PAD]]))
    assert torch.equal(batch["target_ids"], _t([[X, X, X, 20, EOS, PAD], [X, X, X, EOS, PAD, PAD]]))
    assert collator.num_truncated == 0


def test_prediction_collator_fills_the_slot_with_masks_and_keeps_the_reference() -> None:
    collator = MLMSeq2SeqPredCollator(TOK, block_size=4, input_block_size=4)
    batch = collator([dict(EXAMPLES[0], answer="x"), dict(EXAMPLES[1], answer="y")])
    assert torch.equal(
        batch["input_ids"], _t([[PAD, 10, 11, BOS, MASK, MASK, MASK, MASK], [13, 14, 15, BOS, MASK, MASK, MASK, MASK]])
    )
    assert torch.equal(batch["attention_mask"], _b([[False] + [True] * 7, [True] * 8]))
    assert torch.equal(batch["target_ids"], _t([[20, 21, EOS, X], [22, 23, 24, 25]]))
    assert batch["metadata"] == {"answer": ["x", "y"]}
    assert collator.num_truncated == 1


def test_default_collator_layout() -> None:
    collator = DefaultMLMCollator(TOK, block_size=5, add_bos=True, mask_rate_max=0.0)
    batch = collator([{"input_ids": [10, 11]}, {"input_ids": [12, 13, 14, 15, 16]}])
    assert torch.equal(batch["input_ids"], _t([[BOS, 10, 11, EOS, PAD], [BOS, 12, 13, 14, 15]]))
    assert torch.equal(batch["target_ids"], _t([[BOS, 10, 11, EOS, X], [BOS, 12, 13, 14, 15]]))
    assert torch.equal(batch["attention_mask"], _b([[True] * 4 + [False], [True] * 5]))
    assert collator.num_truncated == 1
    masked = DefaultMLMCollator(TOK, block_size=5, mask_rate_min=1.0)([{"input_ids": [10, 11]}])
    assert torch.equal(masked["input_ids"], _t([[MASK, MASK, MASK, PAD, PAD]]))


def test_truncation_is_logged(caplog) -> None:
    collator = MLMSeq2SeqTrainCollator(TOK, block_size=4, input_block_size=4)
    with caplog.at_level(logging.WARNING):
        collator(EXAMPLES)
    assert "truncated 1 of 2" in caplog.text


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"block_size": 0}, ValueError, "block_size"),
        ({"block_size": 4, "input_block_size": -1}, ValueError, "input_block_size"),
        ({"block_size": 4, "add_bos": "both"}, ValueError, "add_bos"),
        ({"block_size": 4, "mask_rate_min": 0.6, "mask_rate_max": 0.5}, ValueError, "mask_rate"),
    ],
)
def test_constructor_validation(kwargs, error, message) -> None:
    with unchecked(), pytest.raises(error, match=message):
        MLMSeq2SeqTrainCollator(TOK, **kwargs)


def test_example_validation() -> None:
    collator = MLMSeq2SeqTrainCollator(TOK, block_size=4, input_block_size=4)
    with pytest.raises(KeyError, match="prompt_ids"):
        collator([{"input_ids": [1]}])
    with pytest.raises(ValueError, match="outside"):
        collator([{"prompt_ids": [10], "input_ids": [-100]}])
    with pytest.raises(TypeError, match="tokenize"):
        collator([{"prompt_ids": "1 2", "input_ids": [10]}])
    with pytest.raises(ValueError, match="empty"):
        collator([])


def test_masking_noise_rates() -> None:
    maskable = torch.ones(1000, 10, dtype=torch.bool)
    assert not MaskingNoise(0.0, 0.0, seed=0).sample_mask(maskable).any()
    assert MaskingNoise(1.0, 1.0, seed=0).sample_mask(maskable).all()
    half = MaskingNoise(0.5, 0.5, seed=0).sample_mask(maskable).float().mean().item()
    assert abs(half - 0.5) < 0.02
    assert not MaskingNoise(1.0, 1.0).sample_mask(torch.zeros(2, 3, dtype=torch.bool)).any()


@pytest.mark.parametrize("name", ["seq2seq_mlm", "seq2seq_pred_mlm", "default_mlm"])
def test_collator_configs_instantiate(name: str) -> None:
    cfg = OmegaConf.load(CONFIG_DIR / f"{name}.yaml")
    cfg.block_size, cfg.input_block_size = 4, 4 if "input_block_size" in cfg else None
    if "input_block_size" not in OmegaConf.load(CONFIG_DIR / f"{name}.yaml"):
        del cfg["input_block_size"]
    collator = hydra.utils.instantiate(cfg, tokenizer=TOK)
    batch = collator([{"prompt_ids": [10], "input_ids": [20]}])
    assert batch["input_ids"].shape[0] == 1


def test_fixed_masks_depend_only_on_the_batch_content() -> None:
    collator = MLMSeq2SeqTrainCollator(TOK, block_size=8, input_block_size=4, seed=0, fixed_masks=True)
    first, again = collator(EXAMPLES)["input_ids"], collator(EXAMPLES)["input_ids"]
    assert torch.equal(first, again)
    other = MLMSeq2SeqTrainCollator(TOK, block_size=8, input_block_size=4, seed=1, fixed_masks=True)(EXAMPLES)
    assert not torch.equal(first, other["input_ids"])
    free = MLMSeq2SeqTrainCollator(TOK, block_size=8, input_block_size=4, seed=0)
    assert not all(torch.equal(free(EXAMPLES)["input_ids"], free(EXAMPLES)["input_ids"]) for _ in range(3))
