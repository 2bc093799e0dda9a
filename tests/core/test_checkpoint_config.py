"""config_differences: what counts as a different model when a checkpoint is resumed or evaluated."""

from __future__ import annotations

from xlm_core.run.checkpoints import config_differences

ARLM = "xlm_arlm.model_arlm.RotaryTransformerARLMModel"


def test_an_option_added_after_training_at_its_default_is_no_difference() -> None:
    stored = {"model": {"_target_": ARLM, "d_model": 96}}  # trained before the options existed
    current = {"model": {"_target_": ARLM, "d_model": 96, "absolute_positions": False, "neighbour_mixing": False}}
    assert config_differences(stored, current, ["model"]) == []
    assert config_differences(current, stored, ["model"]) == []


def test_an_option_set_away_from_its_default_or_a_changed_value_is_a_difference() -> None:
    stored = {"model": {"_target_": ARLM, "d_model": 96}}
    current = {"model": {"_target_": ARLM, "d_model": 64, "neighbour_mixing": "causal"}}
    assert config_differences(stored, current, ["model"]) == [
        "model.d_model: 96 -> 64",
        "model.neighbour_mixing: '<unset>' -> 'causal'",
    ]


def test_an_unknown_target_has_no_defaults() -> None:
    stored = {"model": {"_target_": "nowhere.Model"}}
    assert config_differences(stored, {"model": {"_target_": "nowhere.Model", "x": False}}, ["model"]) == [
        "model.x: '<unset>' -> False"
    ]
