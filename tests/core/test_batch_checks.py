"""training_tensors: the loss-side boundary check every family's loss can share."""

from __future__ import annotations

import pytest
import torch

from xlm_core.kit.batch_checks import training_tensors


def _batch() -> dict[str, torch.Tensor]:
    return {
        "input_ids": torch.tensor([[5, 6, 7], [0, 8, 9]]),
        "attention_mask": torch.tensor([[1, 1, 1], [0, 1, 1]]),
        "target_ids": torch.tensor([[6, 7, -100], [-100, 9, -100]]),
    }


def test_returns_the_tensors_with_a_bool_mask() -> None:
    batch = _batch()
    input_ids, mask, targets = training_tensors(batch, "MyLoss")
    assert input_ids is batch["input_ids"] and targets is batch["target_ids"]
    assert mask.dtype == torch.bool and mask.tolist() == [[True, True, True], [False, True, True]]


def test_a_missing_key_names_the_loss_and_the_key() -> None:
    batch = _batch()
    del batch["attention_mask"]
    with pytest.raises(
        KeyError, match=r"MyLoss needs batch keys input_ids, attention_mask, target_ids; missing \['attention_mask'\]"
    ):
        training_tensors(batch, "MyLoss")


def test_shapes_that_differ_are_named() -> None:
    batch = dict(_batch(), target_ids=torch.zeros(2, 2, dtype=torch.long))
    with pytest.raises(
        ValueError, match=r"MyLoss: .* share one \(batch, seq_len\) shape, got \(2, 3\), \(2, 3\), \(2, 2\)"
    ):
        training_tensors(batch, "MyLoss")
