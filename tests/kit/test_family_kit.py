"""The family kit (xlm_core.kit): the one positions rule, row checks, the metric update functions, renamed names."""

from __future__ import annotations

import math
import types
import warnings
from pathlib import Path

import pytest
import torch
from torchmetrics import MeanMetric

from xlm_core.data.simple_tokenizer import SimpleSpaceTokenizer
from xlm_core.kit.collate import (
    as_ids,
    mask_token_id_of,
    required_token_id,
    row_metadata,
    tokenizer_vocab_size,
    validate_examples,
)
from xlm_core.kit.metrics import (
    UPDATE_FUNCTIONS,
    exact_match_update_fn,
    mean_metric_update_fn,
    perplexity_metric_update_fn,
    token_accuracy_update_fn,
    token_nll_metric_update_fn,
)
from xlm_core.kit.positions import positions_from_attention_mask
from xlm_core.kit.renamed import moved_attributes
from xlm_core.testing.typecheck import unchecked

TOK = SimpleSpaceTokenizer.for_numbers(20)


# --- positions ---------------------------------------------------------------------------------------------
def test_positions_count_real_tokens_and_put_every_padding_at_zero() -> None:
    mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 0, 0], [0, 1, 1, 0, 1], [1, 1, 1, 1, 1]], dtype=torch.bool)
    expected = [[0, 0, 0, 1, 2], [0, 1, 2, 0, 0], [0, 0, 1, 0, 2], [0, 1, 2, 3, 4]]
    assert positions_from_attention_mask(mask).tolist() == expected
    assert positions_from_attention_mask(mask.long()).tolist() == expected  # a 0/1 mask gives the same
    assert positions_from_attention_mask(mask).dtype == torch.long


def _former_arlm_rule(mask: torch.Tensor) -> torch.Tensor:
    """ARLM's positions before the kit (loss_arlm at a0c5fe5): padding 0."""
    m = mask.long()
    return (m.cumsum(dim=1) - 1) * m


def _former_mlm_rule(mask: torch.Tensor) -> torch.Tensor:
    """MLM's positions before the kit (loss_mlm / predictor_mlm at a0c5fe5): clamped at 0."""
    return (mask.long().cumsum(dim=1) - 1).clamp(min=0)


@pytest.mark.parametrize("family, former", [("arlm", _former_arlm_rule), ("mlm", _former_mlm_rule)])
def test_star_preset_batches_get_the_positions_each_family_gave_them(family: str, former, tmp_path: Path) -> None:
    """Every batch of the star CPU presets' train, val and prediction loaders: the kit's positions equal the
    family's former ones at every real token (so no model output, loss or metric changes) and, for these
    batches, at every position (MLM's seq2seq rows have no right padding, where the two rules differ)."""
    from xlm_core.config.compose import compose_config
    from xlm_core.data.datamodule import prepare_datamodule

    cfg = compose_config(
        family,
        [
            f"experiment=star_easy_{family}_cpu",
            "debug=overfit",
            f"paths.root_dir={tmp_path}",
            f"paths.cache_dir={tmp_path / 'cache'}",
        ],
    )
    dm = prepare_datamodule(cfg)
    dm.setup("fit")
    batches, padded = 0, 0
    for loader in [dm.train_dataloader(), *dm.val_dataloader()]:
        for batch in loader:
            mask = batch["attention_mask"].bool()
            new, old = positions_from_attention_mask(mask), former(mask)
            assert torch.equal(new[mask], old[mask])
            assert torch.equal(new, old)
            batches, padded = batches + 1, padded + int((~mask).any())
    assert batches >= 3 and padded >= 3  # every loader ran, and the batches hold padding


# --- rows ----------------------------------------------------------------------------------------------------
def test_rows_are_checked_and_named_in_every_error() -> None:
    assert as_ids(torch.tensor([3, 4]), "input_ids", 0, 10) == [3, 4]
    assert as_ids((1, 2), "input_ids", 0, None) == [1, 2]
    with pytest.raises(TypeError, match="Example 2: 'prompt_ids' must be a list of int token ids, got str; tokenize"):
        as_ids("1 2", "prompt_ids", 2, 10)
    with pytest.raises(TypeError, match=r"Example 0: 'input_ids' holds 1.5 \(float\)"):
        as_ids([1, 1.5], "input_ids", 0, 10)
    with pytest.raises(ValueError, match=r"token id -100, outside \[0, 10\); .* -100 labels"):
        as_ids([1, -100], "input_ids", 0, 10)
    with pytest.raises(ValueError, match="must be 1-D"):
        as_ids(torch.zeros(2, 2, dtype=torch.long), "input_ids", 0, 10)
    rows = validate_examples([{"prompt_ids": [1], "input_ids": [2, 3], "answer": "x"}], ["prompt_ids", "input_ids"], 10)
    assert rows == [{"prompt_ids": [1], "input_ids": [2, 3]}]
    with pytest.raises(KeyError, match=r"Example 0 lacks \['prompt_ids'\]"):
        validate_examples([{"input_ids": [1]}], ["prompt_ids", "input_ids"], 10)
    with pytest.raises(ValueError, match="empty list"):
        validate_examples([], ["input_ids"], 10)


def test_special_ids_and_vocab_size_of_the_tokenizer() -> None:
    assert required_token_id(TOK, "pad_token_id", "collators pad batches") == TOK.pad_token_id
    assert mask_token_id_of(TOK, "MyCollator") == TOK.mask_token_id
    assert tokenizer_vocab_size(TOK) == len(TOK)
    bare = types.SimpleNamespace(pad_token_id=None, mask_token_id=None)  # not a Tokenizer: checks off
    with unchecked():
        with pytest.raises(ValueError, match="The tokenizer has no pad_token_id but collators pad batches; add"):
            required_token_id(bare, "pad_token_id", "collators pad batches")
        with pytest.raises(ValueError, match="MyCollator needs a tokenizer with a mask token"):
            mask_token_id_of(bare, "MyCollator")
        assert tokenizer_vocab_size(bare) is None


def test_row_metadata_keeps_the_scalar_fields_every_row_has() -> None:
    rows = [
        {"prompt_ids": [1], "input_ids": [2], "answer": "7", "id": 1, "note": None, "extra": [1]},
        {"prompt_ids": [3], "input_ids": [4], "answer": "8", "id": 2, "note": "n"},
    ]
    assert row_metadata(rows) == {"answer": ["7", "8"], "id": [1, 2], "note": [None, "n"]}
    assert row_metadata([]) == {}


# --- metric update functions ---------------------------------------------------------------------------------
def test_an_empty_batch_adds_nothing_to_the_mean_metrics() -> None:
    scored = {"loss": torch.tensor(0.5), "nlls": torch.tensor([0.2, 0.4, 1.2])}
    empty = {"loss": torch.tensor(0.0), "nlls": torch.zeros(0)}
    for fn, expected in ((token_nll_metric_update_fn, 0.6), (perplexity_metric_update_fn, math.exp(0.6))):
        metric = MeanMetric()
        metric.update(**fn({}, scored))
        out = fn({}, empty)
        assert out["value"].numel() == 0 and not torch.isnan(out["value"]).any()
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no "Encountered nan" warning either
            metric.update(**out)
        assert metric.compute().item() == pytest.approx(expected)
    assert mean_metric_update_fn({}, scored)["value"].item() == pytest.approx(0.5)


def test_exact_match_and_token_accuracy_read_other_keys_when_told() -> None:
    batch = {"labels": torch.tensor([[5, 3, -100], [6, 3, -100]])}
    preds = {"seq": torch.tensor([[9, 5, 3, 0], [9, 6, 6, 3]]), "output_start_idx": 1}
    from xlm_core.kit.metrics import align_to_target

    pred, target, scored = align_to_target(batch, preds, TOK, ids_key="seq", target_key="labels")
    assert pred.tolist() == [[5, 3, -100], [6, 6, -100]] and scored.sum().item() == 4
    with pytest.raises(KeyError, match="'ids' in the prediction dict"):
        exact_match_update_fn(batch, preds, TOK)
    assert set(token_accuracy_update_fn({"target_ids": batch["labels"]}, {**preds, "ids": preds["seq"]})) == {
        "pred",
        "target",
        "pred_mask",
    }
    assert len(UPDATE_FUNCTIONS) == 5


# --- renamed names -------------------------------------------------------------------------------------------
def test_a_moved_name_resolves_with_a_warning_naming_the_new_path() -> None:
    getattr_ = moved_attributes("old.module", {"old_fn": "xlm_core.kit.metrics.exact_match_update_fn"}, "xlm 0.3")
    with pytest.warns(
        DeprecationWarning,
        match="old.module.old_fn moved to xlm_core.kit.metrics.exact_match_update_fn "
        "and the old name goes away in xlm 0.3",
    ):
        assert getattr_("old_fn") is exact_match_update_fn
    with pytest.raises(AttributeError, match="has no attribute 'other'"):
        getattr_("other")


@pytest.mark.parametrize(
    "old, new",
    [
        ("xlm_arlm.metrics_arlm.seq2seq_exact_match_update_fn", exact_match_update_fn),
        ("xlm_arlm.metrics_arlm.token_nll_metric_update_fn", token_nll_metric_update_fn),
        ("xlm_mlm.metrics_mlm.seq2seq_token_accuracy_update_fn", token_accuracy_update_fn),
        ("xlm_mlm.metrics_mlm.perplexity_metric_update_fn", perplexity_metric_update_fn),
    ],
)
def test_the_families_old_metric_paths_still_resolve(old: str, new) -> None:
    from xlm_core.config.tools import import_object

    with pytest.warns(DeprecationWarning, match=f"{old} moved to xlm_core.kit.metrics"):
        assert import_object(old) is new
