"""ARLM collators, prefix helper, empty dataset and batch printer on hand-built examples.

Tokenizer: SimpleSpaceTokenizer.for_numbers(50): PAD=0, EOS=3, BOS=4, word "k" = id k + 7.
"""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
import pytest
import torch
from omegaconf import OmegaConf
from torch.utils.data import DataLoader

from xlm_arlm.collators_arlm import (
    ARLMEmptyDataset,
    ARLMSeq2SeqCollator,
    ARLMSeq2SeqPredCollator,
    DefaultARLMCollator,
    prepare_prefix_ids_arlm,
    print_batch_arlm,
)
from xlm_core.data.simple_tokenizer import SimpleSpaceTokenizer
from xlm_core.testing.mixins import BaseCollatorTests
from xlm_core.testing.typecheck import unchecked

PAD, EOS, BOS, X = 0, 3, 4, -100
CONFIG_DIR = Path(__import__("xlm_arlm").__file__).parent / "configs" / "collator"


@pytest.fixture
def tok() -> SimpleSpaceTokenizer:
    return SimpleSpaceTokenizer.for_numbers(50)


def _t(rows: list[list[int]]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.long)


def _b(rows: list[list[int]]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.bool)


def assert_batch(batch: dict, **expected: torch.Tensor) -> None:
    assert set(batch) == set(expected), sorted(batch)
    for key, value in expected.items():
        assert batch[key].dtype == value.dtype, (key, batch[key].dtype)
        assert torch.equal(batch[key], value), (key, batch[key], value)


def assert_targets_are_next_target_tokens(batch: dict) -> None:
    """ARLM seq2seq invariant: a scored position predicts the next token, which is on the target side."""
    ids, targets, types, mask = (batch[k] for k in ("input_ids", "target_ids", "token_type_ids", "attention_mask"))
    assert bool((targets != X).any()), "the batch scores no token"
    assert bool((targets[:, -1] == X).all())
    rows, cols = torch.nonzero(targets != X, as_tuple=True)
    assert torch.equal(targets[rows, cols], ids[rows, cols + 1])
    assert bool((types[rows, cols + 1] == 1).all()) and bool(mask[rows, cols].all())
    assert bool((targets[~mask] == X).all()), "padding positions must carry the ignore index"


# region: conformance suites


class TestDefaultCollatorConformance(BaseCollatorTests):
    @pytest.fixture
    def collator(self, tok: SimpleSpaceTokenizer) -> DefaultARLMCollator:
        return DefaultARLMCollator(tok, block_size=6, add_eos=True)

    @pytest.fixture
    def raw_examples(self) -> list[dict]:
        return [{"input_ids": [7, 8, 9]}, {"input_ids": list(range(10, 19))}, {"input_ids": [20]}]


class TestSeq2SeqCollatorConformance(BaseCollatorTests):
    @pytest.fixture
    def collator(self, tok: SimpleSpaceTokenizer) -> ARLMSeq2SeqCollator:
        return ARLMSeq2SeqCollator(tok, block_size=4, input_block_size=4, add_bos="output", add_eos=True)

    @pytest.fixture
    def raw_examples(self) -> list[dict]:
        return [
            {"prompt_ids": [10, 11], "input_ids": [20, 21]},
            {"prompt_ids": [10, 11, 12, 13, 14, 15], "input_ids": [20, 21, 22, 23, 24]},
            {"prompt_ids": [], "input_ids": [25]},
        ]


class TestSeq2SeqWholeBlockCollatorConformance(TestSeq2SeqCollatorConformance):
    @pytest.fixture
    def collator(self, tok: SimpleSpaceTokenizer) -> ARLMSeq2SeqCollator:
        return ARLMSeq2SeqCollator(tok, block_size=7, input_block_size=0, add_bos="output", add_eos=True)


# region: DefaultARLMCollator


def test_default_collator_pads_right_and_shifts(tok: SimpleSpaceTokenizer) -> None:
    collator = DefaultARLMCollator(tok, block_size=6)
    batch = collator([{"input_ids": [7, 8, 9]}, {"input_ids": list(range(10, 18))}])
    assert_batch(
        batch,
        input_ids=_t([[7, 8, 9, PAD, PAD, PAD], [10, 11, 12, 13, 14, 15]]),
        attention_mask=_b([[1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 1]]),
        target_ids=_t([[8, 9, X, X, X, X], [11, 12, 13, 14, 15, X]]),
    )
    assert (collator.num_truncated, collator.num_examples) == (1, 2)


def test_default_collator_bos_eos_truncate_max(tok: SimpleSpaceTokenizer) -> None:
    collator = DefaultARLMCollator(tok, block_size=10, truncate="max", add_eos=True, add_bos=True)
    batch = collator([{"input_ids": [7, 8]}, {"input_ids": [9]}])
    assert_batch(
        batch,
        input_ids=_t([[BOS, 7, 8, EOS], [BOS, 9, EOS, PAD]]),
        attention_mask=_b([[1, 1, 1, 1], [1, 1, 1, 0]]),
        target_ids=_t([[7, 8, EOS, X], [9, EOS, X, X]]),
    )
    assert collator.num_truncated == 0


def test_default_collator_truncation_drops_eos_and_is_logged(
    tok: SimpleSpaceTokenizer, caplog: pytest.LogCaptureFixture
) -> None:
    collator = DefaultARLMCollator(tok, block_size=3, add_eos=True)
    with caplog.at_level(logging.WARNING, logger="xlm_core.data.padding"):
        batch = collator([{"input_ids": [7, 8, 9, 10]}, {"input_ids": [11]}])
    assert torch.equal(batch["input_ids"], _t([[7, 8, 9], [11, EOS, PAD]]))
    assert torch.equal(batch["target_ids"], _t([[8, 9, X], [EOS, X, X]]))
    assert (collator.num_truncated, collator.num_examples) == (1, 2)
    assert any("block_size=3" in r.getMessage() for r in caplog.records)


# region: ARLMSeq2SeqCollator


def test_documented_seq2seq_example_exactly(tok: SimpleSpaceTokenizer) -> None:
    collator = ARLMSeq2SeqCollator(tok, add_bos="output", add_eos=True, input_block_size=4, block_size=4)
    batch = collator([{"prompt_ids": [10, 11], "input_ids": [20, 21]}])
    assert_batch(
        batch,
        input_ids=_t([[PAD, 10, 11, BOS, 20, 21, EOS, PAD]]),
        attention_mask=_b([[0, 1, 1, 1, 1, 1, 1, 0]]),
        target_ids=_t([[X, X, X, 20, 21, EOS, X, X]]),
        token_type_ids=_t([[0, 0, 0, 0, 1, 1, 1, 0]]),
    )
    assert_targets_are_next_target_tokens(batch)


def test_seq2seq_without_bos_last_prompt_token_predicts_target(tok: SimpleSpaceTokenizer) -> None:
    collator = ARLMSeq2SeqCollator(tok, add_bos=None, add_eos=True, input_block_size=4, block_size=3)
    batch = collator([{"prompt_ids": [10, 11, 12], "input_ids": [20]}])
    assert_batch(
        batch,
        input_ids=_t([[PAD, 10, 11, 12, 20, EOS, PAD]]),
        attention_mask=_b([[0, 1, 1, 1, 1, 1, 0]]),
        target_ids=_t([[X, X, X, 20, EOS, X, X]]),
        token_type_ids=_t([[0, 0, 0, 0, 1, 1, 0]]),
    )


def test_seq2seq_bos_before_prompt(tok: SimpleSpaceTokenizer) -> None:
    collator = ARLMSeq2SeqCollator(tok, add_bos="input", add_eos=True, input_block_size=3, block_size=2)
    batch = collator([{"prompt_ids": [10], "input_ids": [20]}])
    assert torch.equal(batch["input_ids"], _t([[PAD, BOS, 10, 20, EOS]]))
    assert torch.equal(batch["target_ids"], _t([[X, X, 20, EOS, X]]))


def test_seq2seq_input_block_truncate_max(tok: SimpleSpaceTokenizer) -> None:
    collator = ARLMSeq2SeqCollator(tok, input_block_size=4, block_size=4, truncate="max")
    batch = collator([{"prompt_ids": [10], "input_ids": [20]}, {"prompt_ids": [10, 11], "input_ids": [20, 21, 22]}])
    assert_batch(
        batch,
        input_ids=_t([[PAD, 10, 20, PAD, PAD], [10, 11, 20, 21, 22]]),
        attention_mask=_b([[0, 1, 1, 0, 0], [1, 1, 1, 1, 1]]),
        target_ids=_t([[X, 20, X, X, X], [X, 20, 21, 22, X]]),
        token_type_ids=_t([[0, 0, 1, 0, 0], [0, 0, 1, 1, 1]]),
    )


def test_seq2seq_input_block_truncation_cuts_prompt_left_and_target_right(tok: SimpleSpaceTokenizer) -> None:
    collator = ARLMSeq2SeqCollator(tok, add_bos="output", add_eos=True, input_block_size=3, block_size=3)
    batch = collator(
        [{"prompt_ids": [10, 11, 12, 13, 14], "input_ids": [20, 21, 22, 23]}, {"prompt_ids": [10], "input_ids": [20]}]
    )
    # prompt keeps its last tokens and the BOS; the cut target loses its EOS (it did not end there)
    assert torch.equal(batch["input_ids"], _t([[13, 14, BOS, 20, 21, 22], [PAD, 10, BOS, 20, EOS, PAD]]))
    assert torch.equal(batch["target_ids"], _t([[X, X, 20, 21, 22, X], [X, X, 20, EOS, X, X]]))
    assert (collator.num_truncated, collator.num_examples) == (1, 2)


def test_seq2seq_whole_block(tok: SimpleSpaceTokenizer) -> None:
    collator = ARLMSeq2SeqCollator(tok, add_bos="output", add_eos=True, input_block_size=0, block_size=8)
    batch = collator([{"prompt_ids": [10, 11], "input_ids": [20, 21]}])
    assert_batch(
        batch,
        input_ids=_t([[10, 11, BOS, 20, 21, EOS, PAD, PAD]]),
        attention_mask=_b([[1, 1, 1, 1, 1, 1, 0, 0]]),
        target_ids=_t([[X, X, 20, 21, EOS, X, X, X]]),
        token_type_ids=_t([[0, 0, 0, 1, 1, 1, 0, 0]]),
    )
    assert collator.num_truncated == 0


def test_seq2seq_whole_batch_max_without_bos(tok: SimpleSpaceTokenizer) -> None:
    collator = ARLMSeq2SeqCollator(tok, add_eos=True, input_block_size=None, block_size=8, truncate="max")
    batch = collator([{"prompt_ids": [10], "input_ids": [20]}, {"prompt_ids": [10, 11, 12], "input_ids": [20, 21]}])
    assert torch.equal(batch["input_ids"], _t([[10, 20, EOS, PAD, PAD, PAD], [10, 11, 12, 20, 21, EOS]]))
    assert torch.equal(batch["target_ids"], _t([[20, EOS, X, X, X, X], [X, X, 20, 21, EOS, X]]))
    assert_targets_are_next_target_tokens(batch)


def test_seq2seq_whole_block_cuts_prompt_from_left_first(tok: SimpleSpaceTokenizer) -> None:
    collator = ARLMSeq2SeqCollator(tok, add_bos="output", add_eos=True, input_block_size=0, block_size=6)
    batch = collator([{"prompt_ids": [10, 11, 12, 13], "input_ids": [20, 21]}])
    assert torch.equal(batch["input_ids"], _t([[12, 13, BOS, 20, 21, EOS]]))
    assert torch.equal(batch["target_ids"], _t([[X, X, 20, 21, EOS, X]]))
    assert (collator.num_truncated, collator.num_examples) == (1, 1)


def test_seq2seq_whole_block_then_cuts_target_from_right(tok: SimpleSpaceTokenizer) -> None:
    collator = ARLMSeq2SeqCollator(tok, add_bos="output", add_eos=True, input_block_size=0, block_size=5)
    batch = collator([{"prompt_ids": [10], "input_ids": [20, 21, 22, 23, 24, 25]}])
    assert torch.equal(batch["input_ids"], _t([[BOS, 20, 21, 22, 23]]))
    assert torch.equal(batch["target_ids"], _t([[20, 21, 22, 23, X]]))
    assert collator.num_truncated == 1


def test_seq2seq_accepts_tensor_ids(tok: SimpleSpaceTokenizer) -> None:
    collator = ARLMSeq2SeqCollator(tok, add_bos="output", add_eos=True, input_block_size=4, block_size=4)
    batch = collator([{"prompt_ids": torch.tensor([10, 11]), "input_ids": torch.tensor([20, 21])}])
    assert torch.equal(batch["input_ids"], _t([[PAD, 10, 11, BOS, 20, 21, EOS, PAD]]))


# region: ARLMSeq2SeqPredCollator


def test_pred_collator_left_pads_prompt_and_keeps_target_apart(tok: SimpleSpaceTokenizer) -> None:
    collator = ARLMSeq2SeqPredCollator(tok, add_bos="output", add_eos=True, input_block_size=4, block_size=4)
    batch = collator([{"prompt_ids": [10, 11], "input_ids": [20, 21]}, {"prompt_ids": [12], "input_ids": [22]}])
    assert_batch(
        batch,
        input_ids=_t([[PAD, 10, 11, BOS], [PAD, PAD, 12, BOS]]),
        attention_mask=_b([[0, 1, 1, 1], [0, 0, 1, 1]]),
        target_ids=_t([[20, 21, EOS, X], [22, EOS, X, X]]),
        token_type_ids=_t([[0, 0, 0, 0], [0, 0, 0, 0]]),
    )


def test_pred_collator_carries_scalar_row_fields_as_metadata(tok: SimpleSpaceTokenizer) -> None:
    """Gold answers (and other scalar fields every row has) reach the predictor; token fields,
    list fields and fields some rows lack do not."""
    examples = [
        {"prompt_ids": [10], "input_ids": [20], "answer": "72", "idx": 0, "extra": [1, 2], "only_here": 1.5},
        {"prompt_ids": [11], "input_ids": [21], "answer": "3.5", "idx": 1, "extra": [3]},
    ]
    batch = ARLMSeq2SeqPredCollator(tok, add_eos=True, input_block_size=2, block_size=4)(examples)
    assert batch["metadata"] == {"answer": ["72", "3.5"], "idx": [0, 1]}
    plain = ARLMSeq2SeqPredCollator(tok, add_eos=True, input_block_size=2, block_size=4)(
        [{"prompt_ids": [10], "input_ids": [20]}]
    )
    assert "metadata" not in plain


def test_pred_collator_whole_block_and_max(tok: SimpleSpaceTokenizer) -> None:
    examples = [{"prompt_ids": [10, 11, 12], "input_ids": [20]}, {"prompt_ids": [13], "input_ids": [21, 22]}]
    block = ARLMSeq2SeqPredCollator(tok, add_eos=True, input_block_size=0, block_size=5)(examples)
    assert torch.equal(block["input_ids"], _t([[10, 11, 12], [PAD, PAD, 13]]))
    assert torch.equal(block["attention_mask"], _b([[1, 1, 1], [0, 0, 1]]))
    assert torch.equal(block["target_ids"], _t([[20, EOS, X, X, X], [21, 22, EOS, X, X]]))
    most = ARLMSeq2SeqPredCollator(tok, add_eos=True, input_block_size=4, block_size=5, truncate="max")(examples)
    assert torch.equal(most["input_ids"], _t([[10, 11, 12], [PAD, PAD, 13]]))
    assert torch.equal(most["target_ids"], _t([[20, EOS, X], [21, 22, EOS]]))


def test_pred_collator_counts_truncation(tok: SimpleSpaceTokenizer) -> None:
    collator = ARLMSeq2SeqPredCollator(tok, add_bos="output", add_eos=True, input_block_size=3, block_size=2)
    batch = collator([{"prompt_ids": [10, 11, 12], "input_ids": [20, 21]}])
    assert torch.equal(batch["input_ids"], _t([[11, 12, BOS]]))
    assert torch.equal(batch["target_ids"], _t([[20, 21]]))
    assert (collator.num_truncated, collator.num_examples) == (1, 1)


# region: ARLMEmptyDataset


@pytest.mark.parametrize("add_bos", [None, "input", "output"])
def test_empty_dataset_generates_from_one_bos(tok: SimpleSpaceTokenizer, add_bos: str | None) -> None:
    dataset = ARLMEmptyDataset(tok, num_examples=3)
    assert len(dataset) == 3 and dataset[2] == {"prompt_ids": [], "input_ids": []}
    with pytest.raises(IndexError):
        dataset[3]
    collator = ARLMSeq2SeqPredCollator(
        tok, add_bos=add_bos, add_eos=True, input_block_size=4, block_size=4, truncate="max"
    )
    batches = list(DataLoader(dataset, batch_size=2, collate_fn=collator))
    assert [b["input_ids"].tolist() for b in batches] == [[[BOS], [BOS]], [[BOS]]]
    assert batches[0]["attention_mask"].tolist() == [[True], [True]]
    assert batches[0]["target_ids"].tolist() == [[EOS], [EOS]]


def test_empty_dataset_rejects_negative_size(tok: SimpleSpaceTokenizer) -> None:
    with pytest.raises(ValueError, match="num_examples=-1"):
        ARLMEmptyDataset(tok, -1)


# region: prepare_prefix_ids_arlm


def test_prepare_prefix_ids_left_pads() -> None:
    out = prepare_prefix_ids_arlm([[10, 11], [12]], PAD, bos_token_id=BOS, max_seq_len=4, add_bos="input")
    assert out == {
        "input_ids": [[PAD, BOS, 10, 11], [PAD, PAD, BOS, 12]],
        "attention_mask": [[False, True, True, True], [False, False, True, True]],
        "truncated": [False, False],
    }


def test_prepare_prefix_ids_truncates_left_keeping_specials() -> None:
    out = prepare_prefix_ids_arlm(
        [[10, 11, 12, 13], [14]], PAD, BOS, EOS, max_seq_len=3, truncate="max", add_bos="output", add_eos=True
    )
    assert out["input_ids"] == [[13, BOS, EOS], [14, BOS, EOS]]
    assert out["truncated"] == [True, False]
    unbounded = prepare_prefix_ids_arlm([[10, 11], [12]], PAD, truncate="max")
    assert unbounded["input_ids"] == [[10, 11], [PAD, 12]]


def test_prepare_prefix_ids_errors() -> None:
    with pytest.raises(ValueError, match="max_seq_len"):
        prepare_prefix_ids_arlm([[10]], PAD, truncate="block")
    with pytest.raises(ValueError, match="bos_token_id"):
        prepare_prefix_ids_arlm([[10]], PAD, max_seq_len=2, add_bos="output")
    with pytest.raises(ValueError, match="eos_token_id"):
        prepare_prefix_ids_arlm([[10]], PAD, max_seq_len=2, add_eos=True)
    with unchecked(), pytest.raises(ValueError, match="'after'"):
        prepare_prefix_ids_arlm([[10]], PAD, BOS, max_seq_len=2, add_bos="after")  # type: ignore[arg-type]


# region: print_batch_arlm


def test_print_batch_decodes_prompt_input_and_target(tok: SimpleSpaceTokenizer) -> None:
    collator = ARLMSeq2SeqCollator(tok, add_bos="output", add_eos=True, input_block_size=4, block_size=4)
    batch = collator([{"prompt_ids": [10, 11], "input_ids": [20, 21]}])
    printed: list[str] = []
    text = print_batch_arlm(batch, tok, print_fn=printed.append)
    assert printed == [text]
    assert text.splitlines() == [
        "ARLM batch: input_ids (1, 8), target_ids (1, 8)",
        "[0] input : '3 4 [BOS] 13 14 [EOS]'",
        "[0] prompt: '3 4 [BOS]'",
        "[0] target: '13 14 [EOS]'",
    ]


# region: validation at the boundary


def test_collators_reject_bad_examples(tok: SimpleSpaceTokenizer) -> None:
    seq2seq = ARLMSeq2SeqCollator(tok, block_size=4, input_block_size=4)
    with pytest.raises(KeyError, match="prompt_ids"):
        seq2seq([{"input_ids": [10]}])
    with pytest.raises(TypeError, match="tokenize the text"):
        seq2seq([{"prompt_ids": "10 11", "input_ids": [10]}])
    with pytest.raises(TypeError, match="1.5"):
        seq2seq([{"prompt_ids": [10, 1.5], "input_ids": [10]}])
    with pytest.raises(ValueError, match="-100"):
        seq2seq([{"prompt_ids": [10], "input_ids": [10, -100]}])
    with pytest.raises(ValueError, match=r"57"):
        DefaultARLMCollator(tok, block_size=4)([{"input_ids": [57]}])
    with pytest.raises(ValueError, match="empty list"):
        DefaultARLMCollator(tok, block_size=4)([])


def test_collators_reject_bad_settings(tok: SimpleSpaceTokenizer) -> None:
    with unchecked(), pytest.raises(ValueError, match="truncate='middle'"):
        DefaultARLMCollator(tok, block_size=4, truncate="middle")  # type: ignore[arg-type]
    with unchecked(), pytest.raises(ValueError, match="add_bos='both'"):
        ARLMSeq2SeqCollator(tok, block_size=4, add_bos="both")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="needs block_size"):
        ARLMSeq2SeqCollator(tok)
    with pytest.raises(ValueError, match="input_block_size=-1"):
        ARLMSeq2SeqCollator(tok, block_size=4, input_block_size=-1)


def test_collator_needs_special_tokens_it_uses() -> None:
    class NoBos(SimpleSpaceTokenizer):
        @property
        def bos_token_id(self) -> None:  # type: ignore[override]
            return None

    tok = NoBos(vocab=["a", "b"])
    with pytest.raises(ValueError, match="bos_token_id"):
        ARLMSeq2SeqCollator(tok, block_size=4, add_bos="output")
    # without BOS the pred collator starts unconditional generation from EOS
    batch = ARLMSeq2SeqPredCollator(tok, block_size=4, truncate="max")([{"prompt_ids": [], "input_ids": [7]}])
    assert batch["input_ids"].tolist() == [[EOS]]


# region: configs


@pytest.mark.parametrize(
    "name, cls",
    [
        ("default_arlm", DefaultARLMCollator),
        ("seq2seq_arlm", ARLMSeq2SeqCollator),
        ("seq2seq_pred_arlm", ARLMSeq2SeqPredCollator),
    ],
)
def test_collator_configs_instantiate(tok: SimpleSpaceTokenizer, name: str, cls: type) -> None:
    root = OmegaConf.create({"block_size": 4, "input_block_size": 4})
    root.collator = OmegaConf.load(CONFIG_DIR / f"{name}.yaml")
    collator = hydra.utils.instantiate(root.collator, tokenizer=tok)
    assert type(collator) is cls and collator.block_size == 4
    if cls is ARLMSeq2SeqCollator:
        batch = collator([{"prompt_ids": [10, 11], "input_ids": [20, 21]}])
        assert batch["target_ids"].tolist() == [[X, X, X, 20, 21, EOS, X, X]]
