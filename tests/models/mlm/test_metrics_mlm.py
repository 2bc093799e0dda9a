"""The metric update functions MLM reports (the core's) on MLM batches, fed into the real torchmetrics metrics."""

from __future__ import annotations

import math

import pytest
import torch
from torchmetrics import MeanMetric

from xlm_core.data.simple_tokenizer import SimpleSpaceTokenizer
from xlm_core.kit.metrics import (
    ExactMatch,
    TokenAccuracy,
    mean_metric_update_fn,
    perplexity_metric_update_fn,
    token_nll_metric_update_fn,
)
from xlm_core.kit.metrics import align_to_target as align_slot_to_target
from xlm_core.kit.metrics import exact_match_update_fn as seq2seq_exact_match_update_fn
from xlm_core.kit.metrics import token_accuracy_update_fn as seq2seq_token_accuracy_update_fn
from xlm_mlm.collators_mlm import MLMSeq2SeqPredCollator

TOK = SimpleSpaceTokenizer.for_numbers(50)
PAD, MASK, EOS, BOS, X = 0, 2, 3, 4, -100


@pytest.fixture
def pred_batch() -> dict[str, torch.Tensor]:
    """Prompts [10], [11], [12] with answers [20, 21], [22], [25] (+EOS), slot of 4, from the real collator."""
    collator = MLMSeq2SeqPredCollator(TOK, block_size=4, input_block_size=2)
    return collator(
        [
            {"prompt_ids": [10], "input_ids": [20, 21]},
            {"prompt_ids": [11], "input_ids": [22]},
            {"prompt_ids": [12], "input_ids": [25]},
        ]
    )


def _preds(slots: list[list[int]]) -> dict:
    prompt = torch.tensor([[10, BOS], [11, BOS], [12, BOS]])
    return {"ids": torch.cat([prompt, torch.tensor(slots)], dim=1), "output_start_idx": 2}


def test_reference_is_answer_and_eos(pred_batch) -> None:
    assert pred_batch["target_ids"].tolist() == [[20, 21, EOS, X], [22, EOS, X, X], [25, EOS, X, X]]


def test_exact_match_and_token_accuracy_by_hand(pred_batch) -> None:
    preds = _preds(
        [
            [20, 21, EOS, 17],  # correct; the slot after EOS is not scored
            [22, 22, EOS, PAD],  # EOS missing at its place: wrong, 1 of 2 tokens right
            [25, EOS, PAD, PAD],  # correct
        ]
    )
    em, acc = ExactMatch(), TokenAccuracy()
    em.update(**seq2seq_exact_match_update_fn(pred_batch, preds, TOK))
    acc.update(**seq2seq_token_accuracy_update_fn(pred_batch, preds, TOK))
    assert em.compute().item() == pytest.approx(2 / 3)
    assert acc.compute().item() == pytest.approx(6 / 7)


def test_alignment_marks_unscored_positions(pred_batch) -> None:
    pred, target, scored = align_slot_to_target(pred_batch, _preds([[20, 21, EOS, 9]] * 3), TOK)
    assert scored.tolist() == [[True, True, True, False], [True, True, False, False], [True, True, False, False]]
    assert pred[1].tolist() == [20, 21, X, X] and target[1].tolist() == [22, EOS, X, X]


def test_short_prediction_is_padded_and_wrong(pred_batch) -> None:
    preds = {"ids": torch.tensor([[10, BOS, 20], [11, BOS, 22], [12, BOS, 25]]), "output_start_idx": 2}
    em = ExactMatch()
    em.update(**seq2seq_exact_match_update_fn(pred_batch, preds, TOK))
    assert em.compute().item() == 0.0


def test_missing_keys_are_named(pred_batch) -> None:
    with pytest.raises(KeyError, match="output_start_idx"):
        seq2seq_exact_match_update_fn(pred_batch, {"ids": torch.zeros(3, 6, dtype=torch.long)}, TOK)
    with pytest.raises(KeyError, match="target_ids"):
        seq2seq_exact_match_update_fn({"input_ids": pred_batch["input_ids"]}, _preds([[0] * 4] * 3), TOK)


def test_loss_metrics_by_hand() -> None:
    loss_dict = {
        "loss": torch.tensor(0.5),
        "nlls": torch.tensor([0.2, 0.4, 1.2]),
        "batch_loss": torch.tensor([0.3, 1.2]),
    }
    nll = MeanMetric()
    nll.update(**token_nll_metric_update_fn({}, loss_dict))
    nll.update(**token_nll_metric_update_fn({}, {"nlls": torch.tensor([0.2])}))
    assert nll.compute().item() == pytest.approx(0.5)  # token-weighted: (0.2 + 0.4 + 1.2 + 0.2) / 4
    assert mean_metric_update_fn({}, loss_dict)["value"].item() == pytest.approx(0.5)
    assert perplexity_metric_update_fn({}, loss_dict)["value"].item() == pytest.approx(math.exp(0.6))
    assert perplexity_metric_update_fn({}, {"nlls": torch.zeros(0)})["value"].numel() == 0  # MeanMetric skips it
