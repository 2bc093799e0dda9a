"""MDLM collators: which positions get noised, the batch's times (drawn, repeated, fixed), reproducible masks."""

from __future__ import annotations

import pytest
import torch

from xlm_core.data.simple_tokenizer import SimpleSpaceTokenizer
from xlm_mdlm.collators_mdlm import MDLMSeq2SeqCollator, MDLMTextCollator

TOK = SimpleSpaceTokenizer.for_numbers(50)  # [PAD]=0 [MASK]=2 [EOS]=3 [BOS]=4, word "k" = id k + 7
MASK = TOK.mask_token_id
ROW = {"input_ids": [4, *range(10, 40), 3]}  # a packed text row of 32 tokens
SEQ2SEQ = [{"prompt_ids": [10, 11, 12], "input_ids": [13, 14]}, {"prompt_ids": [15], "input_ids": [16, 17, 18, 19]}]


def test_fixed_time_one_masks_every_text_token_and_sets_every_time() -> None:
    batch = MDLMTextCollator(TOK, block_size=32, fixed_time=1.0)([ROW, ROW])
    assert batch["noise_t"].tolist() == [1.0, 1.0]
    assert bool((batch["input_ids"] == MASK).all())
    assert batch["target_ids"][0].tolist() == ROW["input_ids"]


def test_fixed_time_masks_about_that_fraction_of_every_copy() -> None:
    collate = MDLMTextCollator(TOK, block_size=32, fixed_time=0.5, time_samples=4, seed=0)
    batch = collate([ROW] * 64)
    assert batch["input_ids"].shape == (256, 32) and batch["noise_t"].unique().tolist() == [0.5]
    fraction = (batch["input_ids"] == MASK).float().mean().item()
    assert fraction == pytest.approx(0.5, abs=0.02)  # 8,192 Bernoulli(0.5) draws: std 0.0055


def test_fixed_time_in_the_answer_slot_leaves_the_prompt_clean() -> None:
    batch = MDLMSeq2SeqCollator(TOK, block_size=6, input_block_size=6, fixed_time=1.0)(SEQ2SEQ)
    prompt, slot = batch["token_type_ids"] == 0, batch["token_type_ids"] != 0
    assert bool((batch["input_ids"][slot] == MASK).all())
    assert not bool((batch["input_ids"][prompt] == MASK).any())
    assert batch["noise_t"].tolist() == [1.0, 1.0]


@pytest.mark.parametrize("bad", [0.0, -0.1, 1.5])
def test_a_fixed_time_outside_zero_one_is_refused(bad: float) -> None:
    with pytest.raises(ValueError, match=f"fixed_time={bad!r} must lie in \\(0, 1\\]"):
        MDLMTextCollator(TOK, block_size=32, fixed_time=bad)


def test_fixed_masks_give_the_same_noise_for_the_same_rows() -> None:
    collate = MDLMSeq2SeqCollator(TOK, block_size=6, input_block_size=6, fixed_masks=True, seed=5)
    first, second = collate(SEQ2SEQ), collate(SEQ2SEQ)
    assert torch.equal(first["input_ids"], second["input_ids"])
    assert torch.equal(first["noise_t"], second["noise_t"])


def test_drawn_times_spread_over_the_batch() -> None:
    batch = MDLMTextCollator(TOK, block_size=32, seed=1)([ROW] * 8)
    t = batch["noise_t"].sort().values
    gaps = t[1:] - t[:-1]
    assert torch.allclose(gaps, torch.full_like(gaps, (1 - 1e-3) / 8), atol=1e-5)  # antithetic: evenly spaced
