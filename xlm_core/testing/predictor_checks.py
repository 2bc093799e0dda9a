"""Conformance checks for a family's predictor (the ``Predictor`` protocol), configured for greedy decoding."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from xlm_core.plugin.names import FamilyNames
from xlm_core.plugin.protocols import PREDICTION_TEXT_KEY
from xlm_core.testing.batch_utils import assert_batch_unchanged, clone_batch
from xlm_core.testing.model_checks import eval_mode
from xlm_core.testing.registry import register

__all__ = [
    "PredictorSubject",
    "check_predictor_output_keys",
    "check_predictor_ids_in_vocab",
    "check_greedy_deterministic",
]


@dataclass
class PredictorSubject:
    """What the predictor checks need: a greedy predictor, one prediction batch, the keys of its output.

    ``ids_key``: where ``predict()`` puts the generated ids (default: the family's declared
    ``names.predicted_ids_key``); ``expected_keys``: the keys ``predict()`` must return (default: that one).
    ``vocab_size`` None: ``len(predictor.tokenizer)``.
    """

    predictor: Any
    batch: dict[str, Any]
    vocab_size: int | None = None
    expected_keys: Sequence[str] | None = None
    ids_key: str | None = None
    names: FamilyNames = field(default_factory=FamilyNames)

    def __post_init__(self) -> None:
        if self.ids_key is None:
            self.ids_key = self.names.predicted_ids_key
        if self.expected_keys is None:
            self.expected_keys = (self.ids_key,)
        if self.vocab_size is None:
            tokenizer = getattr(self.predictor, "tokenizer", None)
            assert tokenizer is not None, "the predictor has no .tokenizer; pass vocab_size to PredictorSubject."
            self.vocab_size = len(tokenizer)


def _predict(s: PredictorSubject) -> dict[str, Any]:
    with eval_mode(getattr(s.predictor, "model", None)), torch.no_grad():
        preds = s.predictor.predict(s.batch, 0, 0, "prediction")
    assert isinstance(preds, dict), f"predict() must return a dict; got {type(preds).__name__}."
    return preds


def _predicted_ids(s: PredictorSubject) -> torch.Tensor:
    """The generated ids of one greedy prediction, under the declared key (a missing key says how to declare it)."""
    preds = _predict(s)
    assert s.ids_key in preds, (
        f"predict() output has no {s.ids_key!r} (keys: {sorted(preds)}); declare the key of the generated ids with "
        "register(..., names=FamilyNames(predicted_ids_key=...))."
    )
    return preds[s.ids_key]


def _batch_size(batch: dict[str, Any]) -> int:
    for value in batch.values():
        if isinstance(value, torch.Tensor) and value.dim() > 0:
            return value.shape[0]
    raise AssertionError("the prediction batch holds no tensor to read the batch size from.")


@register("predictor")
def check_predictor_output_keys(s: PredictorSubject) -> None:
    """predict() returns the expected keys, leaves the batch alone; to_dict() gives one JSON row per example
    with the generated ``text``."""
    before = clone_batch(s.batch)
    preds = _predict(s)
    assert_batch_unchanged(before, s.batch, "the batch given to predict()")
    missing = [k for k in s.expected_keys or () if k not in preds]
    assert not missing, (
        f"predict() output lacks {missing}; it has {sorted(preds)} (the key of the generated ids is declared with "
        "register(..., names=FamilyNames(predicted_ids_key=...)))."
    )
    rows = s.predictor.to_dict(s.batch, preds, 0, 0, "prediction")
    n = _batch_size(s.batch)
    assert isinstance(rows, list) and len(rows) == n, f"to_dict() must return a list of {n} rows; got {rows!r:.200}."
    for row in rows:
        assert isinstance(row, dict), f"to_dict() rows must be dicts; got {type(row).__name__}."
        assert isinstance(row.get(PREDICTION_TEXT_KEY), str), (
            f"to_dict() rows must hold the generated text as a string under {PREDICTION_TEXT_KEY!r}; got keys "
            f"{sorted(row)}."
        )
        json.dumps(row)


@register("predictor")
def check_predictor_ids_in_vocab(s: PredictorSubject) -> None:
    """Predicted ids are an integer (batch, length) tensor with every id in ``[0, vocab_size)``."""
    ids = _predicted_ids(s)
    assert isinstance(ids, torch.Tensor), f"preds[{s.ids_key!r}] must be a tensor; got {type(ids).__name__}."
    assert not ids.is_floating_point() and ids.dim() == 2, (
        f"ids must be an integer (batch, length) tensor; got {ids.dtype} {tuple(ids.shape)}."
    )
    n = _batch_size(s.batch)
    assert ids.shape[0] == n, f"ids has {ids.shape[0]} rows for a batch of {n}."
    out = ids[(ids < 0) | (ids >= s.vocab_size)]
    assert out.numel() == 0, (
        f"predicted ids outside the vocabulary [0, {s.vocab_size}): {sorted(set(out.tolist()))[:10]}."
    )


@register("predictor")
def check_greedy_deterministic(s: PredictorSubject) -> None:
    """Two greedy predictions of the same batch (under different RNG seeds) are identical."""
    torch.manual_seed(0)
    first = _predicted_ids(s)
    torch.manual_seed(1)
    second = _predicted_ids(s)
    assert first.shape == second.shape and torch.equal(first, second), (
        "two greedy predictions of the same batch differ: decoding samples or depends on state "
        "(configure the predictor fixture for greedy decoding)."
    )
