"""FamilyNames: what a family declares at register() time, how the core reads it, and the metric groups."""

from __future__ import annotations

import importlib
import re
import sys
import warnings
from pathlib import Path
from types import ModuleType

import pytest
import torch
from omegaconf import OmegaConf

from xlm_core.data.simple_tokenizer import SimpleSpaceTokenizer
from xlm_core.errors import UsageError
from xlm_core.kit.batch_checks import training_tensors
from xlm_core.plugin.hookspecs import hookimpl
from xlm_core.plugin.manager import load_families
from xlm_core.plugin.names import FamilyNames
from xlm_core.testing.typecheck import unchecked
from xlm_core.training.reported_metrics import build_metrics, logged_metric_names
from xlm_core.training.runtime import Runtime, model_runtime_kwargs

NAMES = FamilyNames(token_key="tokens", mask_key="loss_mask", target_key="labels", predicted_ids_key="seq")


def _plugin(config_dir: Path, **kwargs: object) -> ModuleType:
    @hookimpl
    def register_families(register):
        register(name="named", config_dir=str(config_dir), description="d", **kwargs)

    module = ModuleType("named_plugin")
    module.register_families = register_families
    return module


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "m.yaml").write_text("_target_: torch.nn.Linear\n")
    return tmp_path


def test_defaults_are_todays_names() -> None:
    names = FamilyNames()
    assert (names.token_key, names.mask_key, names.target_key, names.predicted_ids_key, names.ignore_index) == (
        "input_ids",
        "attention_mask",
        "target_ids",
        "ids",
        -100,
    )


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"token_key": ""}, r"FamilyNames\(token_key=''\): give the key as a non-empty str"),
        ({"mask_key": "input_ids"}, "token_key, mask_key and target_key must differ"),
        ({"ignore_index": True}, r"FamilyNames\(ignore_index=True\): give an int"),
        ({"count_tokens": 3}, r"FamilyNames\(count_tokens=3\): give a function"),
    ],
)
def test_bad_names_are_refused_with_the_fix(kwargs: dict, message: str) -> None:
    with unchecked(), pytest.raises(ValueError, match=message):  # FamilyNames' own messages, annotations aside
        FamilyNames(**kwargs)


def test_register_stores_the_names_on_the_family(config_dir: Path) -> None:
    registry = load_families(modules={"p": _plugin(config_dir, names=NAMES)})
    assert registry.get("named").names is NAMES
    as_dict = load_families(modules={"p": _plugin(config_dir, names={"token_key": "tokens"})})
    assert as_dict.get("named").names == FamilyNames(token_key="tokens")
    assert load_families(modules={"p": _plugin(config_dir)}).get("named").names == FamilyNames()


@pytest.mark.parametrize(
    "names, message",
    [
        ({"tokens_key": "x"}, r"family 'named': names has unknown field\(s\) \['tokens_key'\]"),
        ("tokens", r"family 'named': names='tokens'; pass xlm_core.plugin.names.FamilyNames"),
        ({"mask_key": "input_ids"}, "family 'named': FamilyNames: token_key, mask_key and target_key must differ"),
    ],
)
def test_bad_names_at_register_are_that_plugins_error(config_dir: Path, names: object, message: str) -> None:
    registry = load_families(modules={"p": _plugin(config_dir, names=names)})
    assert "named" not in registry.families
    (error,) = registry.errors
    assert re.search(message, error.error), error.error


def test_tokens_are_counted_by_the_declared_keys() -> None:
    batch = {"tokens": torch.tensor([[5, 6, 0], [7, 0, 0]]), "loss_mask": torch.tensor([[1, 1, 0], [1, 0, 0]])}
    assert NAMES.count_tokens_in(batch).item() == 3  # the real tokens
    assert NAMES.count_tokens_in({"tokens": batch["tokens"]}).item() == 6  # no mask: every entry
    assert FamilyNames().count_tokens_in(batch) is None  # today's keys are not in this batch: nothing counted
    counted = FamilyNames(count_tokens=lambda b: int(b["loss_mask"].sum()) * 2)
    assert counted.count_tokens_in(batch).item() == 6


def test_the_harness_gets_the_names_through_the_runtime() -> None:
    runtime = Runtime(tokenizer=SimpleSpaceTokenizer.for_numbers(5))
    assert runtime.names == FamilyNames()
    assert Runtime(tokenizer=runtime.tokenizer, names=NAMES).names is NAMES


def test_the_loss_side_batch_check_reads_the_declared_keys() -> None:
    batch = {"tokens": torch.tensor([[5, 6]]), "loss_mask": torch.tensor([[1, 0]]), "labels": torch.tensor([[6, -100]])}
    tokens, mask, labels = training_tensors(batch, "R2LLoss", NAMES)
    assert tokens is batch["tokens"] and mask.dtype == torch.bool and labels is batch["labels"]
    with pytest.raises(KeyError, match="R2LLoss needs batch keys input_ids, attention_mask, target_ids"):
        training_tensors(batch, "R2LLoss")


# --- the mask id goes to the model as mask_token_id ----------------------------------------------------------
def test_the_model_gets_the_mask_id_under_the_name_its_constructor_takes() -> None:
    tok = SimpleSpaceTokenizer.for_numbers(5)

    def new(num_embeddings: int, padding_idx: int | None = None, mask_token_id: int | None = None) -> None: ...

    def old(num_embeddings: int, padding_idx: int | None = None, mask_idx: int | None = None) -> None: ...

    def neither(num_embeddings: int, padding_idx: int | None = None) -> None: ...

    assert model_runtime_kwargs(new, tok)["mask_token_id"] == tok.mask_token_id
    assert model_runtime_kwargs(old, tok)["mask_idx"] == tok.mask_token_id
    assert set(model_runtime_kwargs(neither, tok)) == {"num_embeddings", "padding_idx"}


# --- metric groups -------------------------------------------------------------------------------------------
REPORTED = {
    "r2l": {
        "exact_match": {
            "kind": "prediction",
            "metric": {"_target_": "xlm_core.kit.metrics.ExactMatch"},
            "update_fn": "xlm_core.kit.metrics.exact_match_update_fn",
            "splits": ["val"],
        },
        "nll": {
            "kind": "lm",
            "metric": {"_target_": "torchmetrics.MeanMetric"},
            "update_fn": "xlm_core.kit.metrics.token_nll_metric_update_fn",
            "splits": ["val"],
        },
    },
    "prediction": {
        "exact_match": {
            "metric": {"_target_": "xlm_core.kit.metrics.ExactMatch"},
            "update_fn": "xlm_core.kit.metrics.exact_match_update_fn",
            "splits": ["val"],
        }
    },
}


def test_any_group_name_is_logged_under_it_and_fed_by_its_kind() -> None:
    loaders = [("lm", "lm"), ("prediction", "prediction"), ("other", "prediction")]
    metrics = build_metrics(OmegaConf.create(REPORTED), {"val": loaders})
    by_loader = {(w.dataloader_name, w.log_name) for w in metrics.values()}
    assert by_loader == {
        ("lm", "val/r2l/nll"),
        ("prediction", "val/r2l/exact_match"),
        ("prediction", "val/prediction/exact_match"),
        ("other", "val/r2l/other/exact_match"),
        ("other", "val/prediction/other/exact_match"),
    }
    assert logged_metric_names(REPORTED, "val", loaders) == {w.log_name for w in metrics.values()} | {"val/lm/loss"}


def test_a_bad_group_or_kind_fails_before_the_run_starts() -> None:
    from xlm_core.config.checks import validate_run_config

    cfg = OmegaConf.create(
        {
            "per_device_batch_size": 2,
            "reported_metrics": {
                "r2l": {
                    "em": {
                        "metric": {"_target_": "xlm_core.kit.metrics.ExactMatch"},
                        "update_fn": "xlm_core.kit.metrics.exact_match_update_fn",
                    }
                }
            },
        }
    )
    with pytest.raises(UsageError, match="reported_metrics.r2l.em: group 'r2l' is not a dataloader kind"):
        validate_run_config(cfg, training=False)
    cfg.reported_metrics.r2l.em.kind = "prediction"
    cfg.reported_metrics.r2l.em.update_fn = "xlm_core.kit.metrics.no_such_fn"
    with pytest.raises(UsageError, match="update_fn 'xlm_core.kit.metrics.no_such_fn'"):
        validate_run_config(cfg, training=False)


# --- old names kept for one minor version --------------------------------------------------------------------
@pytest.mark.parametrize(
    "old, new, names",
    [
        ("xlm_arlm.datamodule_arlm", "xlm_arlm.collators_arlm", ["ARLMSeq2SeqCollator", "DefaultARLMCollator"]),
        ("xlm_mlm.datamodule_mlm", "xlm_mlm.collators_mlm", ["MLMSeq2SeqTrainCollator", "MaskingNoise"]),
    ],
)
def test_the_old_collator_modules_warn_and_hold_the_same_classes(old: str, new: str, names: list[str]) -> None:
    sys.modules.pop(old, None)
    with pytest.warns(DeprecationWarning, match=f"{old} was renamed {new}"):
        module = importlib.import_module(old)
    current = importlib.import_module(new)
    assert all(getattr(module, n) is getattr(current, n) for n in names)


def test_an_old_config_target_is_the_registered_component() -> None:
    from xlm_core.config.targets import check_component_targets
    from xlm_core.plugin.manager import get_families, get_family

    cfg = OmegaConf.create({"collator": {"train": {"_target_": "xlm_arlm.datamodule_arlm.ARLMSeq2SeqCollator"}}})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        assert check_component_targets(cfg, get_family("arlm"), get_families()) == ([], [])
        errors, _ = check_component_targets(cfg, get_family("mlm"), get_families())
    assert errors and "is a collator of family 'arlm'" in errors[0]


def test_kinds_has_one_meaning_per_name() -> None:
    from xlm_core.data import datamodule
    from xlm_core.testing import registry
    from xlm_core.training import reported_metrics

    assert datamodule.DATALOADER_KINDS == ("lm", "prediction")
    assert registry.CHECK_KINDS == ("model", "loss", "collator", "predictor")
    for module in (datamodule, reported_metrics):
        with pytest.warns(DeprecationWarning, match="DATALOADER_KINDS"):
            assert module.KINDS == ("lm", "prediction")
    with pytest.warns(DeprecationWarning, match="CHECK_KINDS"):
        assert registry.KINDS == registry.CHECK_KINDS
