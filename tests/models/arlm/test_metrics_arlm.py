"""The metric update functions ARLM reports (the core's and its own) on ARLM batches, fed into the real
torchmetrics metrics."""

from __future__ import annotations

import math

import pytest
import torch
from torchmetrics import MeanMetric

from xlm_arlm.collators_arlm import ARLMSeq2SeqPredCollator
from xlm_arlm.metrics_arlm import sequence_length_metric_update_fn, valid_tokens_metric_update_fn
from xlm_core.data.simple_tokenizer import SimpleSpaceTokenizer
from xlm_core.kit.metrics import (
    ExactMatch,
    TokenAccuracy,
    mean_metric_update_fn,
    perplexity_metric_update_fn,
    token_nll_metric_update_fn,
)
from xlm_core.kit.metrics import exact_match_update_fn as seq2seq_exact_match_update_fn
from xlm_core.kit.metrics import token_accuracy_update_fn as seq2seq_token_accuracy_update_fn

PAD, EOS, BOS, X = 0, 3, 4, -100


@pytest.fixture
def tok() -> SimpleSpaceTokenizer:
    return SimpleSpaceTokenizer.for_numbers(50)


@pytest.fixture
def pred_batch(tok: SimpleSpaceTokenizer) -> dict[str, torch.Tensor]:
    """Prompts [10], [11], [12] with targets [20, 21], [22], [25] (+EOS), from the real collator."""
    collator = ARLMSeq2SeqPredCollator(tok, add_bos="output", add_eos=True, input_block_size=2, block_size=4)
    batch = collator(
        [
            {"prompt_ids": [10], "input_ids": [20, 21]},
            {"prompt_ids": [11], "input_ids": [22]},
            {"prompt_ids": [12], "input_ids": [25]},
        ]
    )
    assert batch["target_ids"].tolist() == [[20, 21, EOS, X], [22, EOS, X, X], [25, EOS, X, X]]
    return batch


def _preds(batch: dict, generated: list[list[int]]) -> dict:
    ids = torch.cat([batch["input_ids"], torch.tensor(generated)], dim=1)
    return {"ids": ids, "output_start_idx": batch["input_ids"].shape[1]}


def test_exact_match_and_token_accuracy_short_generation(pred_batch: dict, tok: SimpleSpaceTokenizer) -> None:
    # 3 generated tokens for a 4-wide target: row 0 right, row 1 wrong EOS place, row 2 right then PAD
    preds = _preds(pred_batch, [[20, 21, EOS], [22, 9, EOS], [25, EOS, PAD]])
    em = seq2seq_exact_match_update_fn(pred_batch, preds, tok)
    assert set(em) == {"pred", "target"}
    assert em["pred"].tolist() == [[20, 21, EOS, X], [22, 9, X, X], [25, EOS, X, X]]
    assert em["target"].tolist() == [[20, 21, EOS, X], [22, EOS, X, X], [25, EOS, X, X]]
    acc = seq2seq_token_accuracy_update_fn(pred_batch, preds, tok)
    assert set(acc) == {"pred", "target", "pred_mask"}
    assert acc["pred_mask"].tolist() == [
        [True, True, True, False],
        [True, True, False, False],
        [True, True, False, False],
    ]

    exact, token = ExactMatch(), TokenAccuracy()
    exact.update(**em)
    token.update(**acc)
    assert exact.compute().item() == pytest.approx(2 / 3)
    assert token.compute().item() == pytest.approx(6 / 7)


def test_generation_stopping_before_target_end_is_padded_and_wrong(tok: SimpleSpaceTokenizer) -> None:
    batch = {"target_ids": torch.tensor([[20, 21, 22, EOS]])}
    preds = {"ids": torch.tensor([[BOS, 20, 21]]), "output_start_idx": 1}  # only 2 generated tokens
    em = seq2seq_exact_match_update_fn(batch, preds, tok)
    assert em["pred"].tolist() == [[20, 21, PAD, PAD]]
    acc = seq2seq_token_accuracy_update_fn(batch, preds)  # no tokenizer: filled with -1
    assert acc["pred"].tolist() == [[20, 21, -1, -1]]
    exact, token = ExactMatch(), TokenAccuracy()
    exact.update(**em)
    token.update(**acc)
    assert exact.compute().item() == 0.0
    assert token.compute().item() == pytest.approx(0.5)


def test_generation_longer_than_target_is_cut(pred_batch: dict, tok: SimpleSpaceTokenizer) -> None:
    preds = _preds(pred_batch, [[20, 21, EOS, PAD, PAD, PAD], [22, EOS, 30, 31, 32, 33], [26, EOS, PAD, PAD, PAD, PAD]])
    em = seq2seq_exact_match_update_fn(pred_batch, preds, tok)
    assert em["pred"].shape == pred_batch["target_ids"].shape
    exact = ExactMatch()
    exact.update(**em)
    assert exact.compute().item() == pytest.approx(2 / 3)  # tokens after EOS are not scored


def test_seq2seq_metrics_name_missing_keys(pred_batch: dict) -> None:
    with pytest.raises(KeyError, match="output_start_idx"):
        seq2seq_exact_match_update_fn(pred_batch, {"ids": pred_batch["input_ids"]})
    with pytest.raises(KeyError, match="target_ids"):
        seq2seq_token_accuracy_update_fn({}, {"ids": pred_batch["input_ids"], "output_start_idx": 0})


@pytest.fixture
def lm_batch_and_loss() -> tuple[dict, dict]:
    batch = {
        "input_ids": torch.tensor([[10, 11, BOS, 20, EOS], [10, BOS, 20, 21, EOS], [12, 13, 14, PAD, PAD]]),
        "attention_mask": torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 1, 1], [1, 1, 1, 0, 0]], dtype=torch.bool),
        "target_ids": torch.tensor([[X, X, 20, EOS, X], [X, 20, 21, EOS, X], [13, 14, X, X, X]]),
    }
    nlls = torch.tensor([0.5, 1.0, 0.25, 0.75, 1.5, 2.0, 0.0], requires_grad=True)
    loss = nlls.mean()
    return batch, {"loss": loss, "batch_loss": torch.tensor([0.75, 2.5 / 3, 1.0]), "nlls": nlls}


def test_mean_metric_update_fn(lm_batch_and_loss: tuple[dict, dict]) -> None:
    batch, loss = lm_batch_and_loss
    out = mean_metric_update_fn(batch, loss)
    assert set(out) == {"value"} and not out["value"].requires_grad
    assert out["value"].item() == pytest.approx(6.0 / 7)


def test_perplexity_metric_update_fn(lm_batch_and_loss: tuple[dict, dict]) -> None:
    batch, loss = lm_batch_and_loss
    out = perplexity_metric_update_fn(batch, loss)
    assert out["value"].item() == pytest.approx(math.exp(6.0 / 7))


def test_token_nll_metric_update_fn_is_token_weighted(lm_batch_and_loss: tuple[dict, dict]) -> None:
    batch, loss = lm_batch_and_loss
    out = token_nll_metric_update_fn(batch, loss)
    assert torch.equal(out["value"], loss["nlls"].detach())
    metric = MeanMetric()
    metric.update(**out)
    metric.update(**token_nll_metric_update_fn(batch, {"nlls": torch.tensor([3.0])}))
    assert metric.compute().item() == pytest.approx(9.0 / 8)


def test_sequence_length_metric_update_fn(lm_batch_and_loss: tuple[dict, dict]) -> None:
    batch, loss = lm_batch_and_loss
    out = sequence_length_metric_update_fn(batch, loss)
    assert out["value"].dtype == torch.float32 and out["value"].tolist() == [5.0, 5.0, 3.0]
    long_mask = dict(batch, attention_mask=batch["attention_mask"].long())
    assert sequence_length_metric_update_fn(long_mask, loss)["value"].tolist() == [5.0, 5.0, 3.0]


def test_valid_tokens_metric_update_fn(lm_batch_and_loss: tuple[dict, dict], pred_batch: dict) -> None:
    batch, loss = lm_batch_and_loss
    out = valid_tokens_metric_update_fn(batch, loss)
    assert out["value"].dtype == torch.float32 and out["value"].tolist() == [2.0, 3.0, 2.0]
    # consistent with the loss: one nll per valid token
    assert out["value"].sum().item() == loss["nlls"].numel()
    with pytest.raises(ValueError, match="prediction batches"):
        valid_tokens_metric_update_fn(pred_batch, loss)
