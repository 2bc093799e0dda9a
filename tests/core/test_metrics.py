"""Metrics on worked examples, and the reported_metrics wrapper's naming and routing."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from xlm_core.kit.metrics import ExactMatch, TokenAccuracy
from xlm_core.testing.typecheck import unchecked
from xlm_core.training.reported_metrics import MetricWrapper, ReportedMetricsError, build_metrics, metrics_for


def test_exact_match_counts_whole_rows() -> None:
    m = ExactMatch()
    m.update(torch.tensor([[1, 2, 3], [1, 2, 4], [5, 5, 5]]), torch.tensor([[1, 2, 3], [1, 2, 3], [5, 5, 5]]))
    assert m.compute().item() == pytest.approx(2 / 3)
    m.update(torch.tensor([[0, 0, 0]]), torch.tensor([[1, 1, 1]]))
    assert m.compute().item() == pytest.approx(2 / 4)


def test_exact_match_with_lengths_ignores_positions_past_the_target() -> None:
    m = ExactMatch()
    pred = torch.tensor([[1, 2, 9], [1, 2, 3], [1, 2, 3]])
    target = torch.tensor([[1, 2, 0], [1, 2, 0], [1, 2, 3]])
    # row 0: first 2 match, lengths equal -> right; row 1: pred is longer -> wrong; row 2: right
    m.update(pred, target, pred_length=torch.tensor([2, 3, 3]), target_length=torch.tensor([2, 2, 3]))
    assert m.compute().item() == pytest.approx(2 / 3)


def test_token_accuracy_is_micro_averaged_over_the_mask() -> None:
    m = TokenAccuracy()
    pred = torch.tensor([[1, 2, 3, 4], [7, 7, 0, 0]])
    target = torch.tensor([[1, 0, 3, 4], [7, 8, 0, 0]])
    mask = torch.tensor([[True, True, True, True], [True, True, False, False]])
    m.update(pred, target, mask)
    assert m.compute().item() == pytest.approx(4 / 6)  # 3 of 4 in row 0, 1 of 2 in row 1


def test_metrics_reject_mismatched_shapes() -> None:
    ids = torch.zeros(2, 3, dtype=torch.long)
    with unchecked(), pytest.raises(ValueError, match="same shape"):
        ExactMatch().update(ids, torch.zeros(2, 4, dtype=torch.long))
    with unchecked(), pytest.raises(ValueError, match="pred_mask"):
        TokenAccuracy().update(ids, ids, torch.ones(2, 2, dtype=torch.bool))


def test_metric_states_are_sums_so_ddp_reduction_is_exact() -> None:
    a, b, both = TokenAccuracy(), TokenAccuracy(), TokenAccuracy()
    pa, ta = torch.tensor([[1, 2, 3]]), torch.tensor([[1, 2, 0]])
    pb, tb = torch.tensor([[4, 4], [5, 6]]), torch.tensor([[4, 0], [0, 0]])
    a.update(pa, ta)
    b.update(pb, tb)
    both.update(pa, ta)
    both.update(pb, tb)
    merged = (a.correct + b.correct) / (a.total + b.total)
    assert merged.item() == pytest.approx(both.compute().item()) == pytest.approx(3 / 7)


def _nll_update(batch, loss_dict, tokenizer=None):
    return {"value": loss_dict["nlls"]}


def _em_update(batch, preds, tokenizer=None):
    return {"pred": preds["ids"], "target": batch["target_ids"]}


REPORTED = {
    "lm": {
        "accumulated_loss": {
            "metric": {"_target_": "torchmetrics.MeanMetric"},
            "update_fn": f"{__name__}._nll_update",
            "splits": ["train", "val", "test"],
        }
    },
    "prediction": {
        "exact_match": {
            "metric": {"_target_": "xlm_core.kit.metrics.ExactMatch"},
            "update_fn": f"{__name__}._em_update",
            "splits": ["val"],
        }
    },
}


def test_build_metrics_names_by_split_kind_and_distinguishes_second_loader() -> None:
    dataloaders = {
        "train": [("lm", "lm")],
        "val": [("lm", "lm"), ("prediction", "prediction"), ("extra", "prediction")],
        "test": [("lm", "lm")],
    }
    metrics = build_metrics(OmegaConf.create(REPORTED), dataloaders)
    names = sorted(w.log_name for w in metrics.values())
    assert names == [
        "test/lm/accumulated_loss",
        "train/lm/accumulated_loss",
        "val/lm/accumulated_loss",
        "val/prediction/exact_match",
        "val/prediction/extra/exact_match",
    ]
    assert [w.log_name for w in metrics_for(metrics, "val", 2)] == ["val/prediction/extra/exact_match"]


def test_wrapper_token_weighted_mean_and_exact_match() -> None:
    metrics = build_metrics(REPORTED, {"val": [("lm", "lm"), ("prediction", "prediction")]})
    (loss,) = metrics_for(metrics, "val", 0)
    assert isinstance(loss, MetricWrapper)
    loss.update({}, {"nlls": torch.tensor([1.0, 1.0, 1.0])})
    loss.update({}, {"nlls": torch.tensor([5.0])})
    assert loss.metric.compute().item() == pytest.approx(2.0)  # (1+1+1+5)/4, not the batch mean 3.0
    (em,) = metrics_for(metrics, "val", 1)
    em.update({"target_ids": torch.tensor([[1, 2], [3, 4]])}, {"ids": torch.tensor([[1, 2], [3, 3]])})
    assert em.metric.compute().item() == pytest.approx(0.5)


def test_bad_reported_metrics_fail_with_the_fix() -> None:
    entry = {"metric": {"_target_": "torchmetrics.MeanMetric"}, "update_fn": f"{__name__}._nll_update"}
    with pytest.raises(
        ReportedMetricsError,
        match=r"reported_metrics\.generation\.x: group 'generation' is not a "
        r"dataloader kind, so say .* kind: prediction .* or kind: lm",
    ):
        build_metrics({"generation": {"x": entry}}, {"val": []})
    with pytest.raises(
        ReportedMetricsError,
        match=r"reported_metrics\.r2l\.x\.kind: 'r2l' is not a dataloader kind; use "
        r"kind: prediction",
    ):
        build_metrics({"r2l": {"x": {**entry, "kind": "r2l"}}}, {"val": []})
    with pytest.raises(ReportedMetricsError, match=r"reported_metrics\.val/x: group name 'val/x'"):
        build_metrics({"val/x": {"x": entry}}, {"val": []})
    with pytest.raises(ValueError, match="missing"):
        build_metrics({"lm": {"x": {"metric": {"_target_": "torchmetrics.MeanMetric"}}}}, {"val": [("lm", "lm")]})
    with pytest.raises(ValueError, match="no module 'nope' is installed"):
        build_metrics(
            {"lm": {"x": {"metric": {"_target_": "torchmetrics.MeanMetric"}, "update_fn": "nope.fn"}}},
            {"val": [("lm", "lm")]},
        )


def test_perplexity_is_exp_of_the_token_weighted_mean_nll() -> None:
    from xlm_core.kit.metrics import Perplexity

    m = Perplexity()
    m.update(torch.tensor([1.0, 2.0, 3.0]))
    m.update(torch.tensor([6.0]))  # a 1-token batch weighs one token, not one batch
    assert m.compute().item() == pytest.approx(torch.exp(torch.tensor(3.0)).item(), rel=1e-6)
    with pytest.warns(UserWarning, match="before the ``update``"):
        assert torch.isnan(Perplexity().compute())
