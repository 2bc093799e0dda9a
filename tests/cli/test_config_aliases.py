"""Renamed config-group options compose for one minor version, with a one-line warning naming the new one."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import yaml

from xlm_core.cli import main
from xlm_core.config.aliases import ALIASES, DEPRECATED_KEY
from xlm_core.config.compose import compose_config

# A datamodule written against xlm-core 0.1, when every star split had its own datasets/ option.
OLD_DATAMODULE = """\
# @package _global_
defaults:
  - /datasets@datamodule.dataloaders.train.lm.dataset: star_easy_train
  - /datasets@datamodule.dataloaders.val.lm.dataset: star_easy_val
  - /datasets@datamodule.dataloaders.test.lm.dataset: star_easy_test
  - _self_
datamodule:
  _target_: xlm_core.data.datamodule.XLMDataModule
  cache_dir: ${paths.cache_dir}
  seed: ${seed}
  per_device_batch_size: ${per_device_batch_size}
  dataloaders:
    train: {lm: {kind: lm, collator: "${collator.train}", shuffle: true, drop_last: true}}
    val: {lm: {kind: lm, collator: "${collator.val}"}}
    test: {lm: {kind: lm, collator: "${collator.val}"}}
"""


@pytest.fixture
def old_layout(tmp_path: Path) -> str:
    (tmp_path / "datamodule").mkdir()
    (tmp_path / "datamodule" / "old_star.yaml").write_text(OLD_DATAMODULE)
    return f"hydra.searchpath=[{tmp_path.as_uri()}]"


def test_a_datamodule_of_the_old_layout_composes_with_one_warning_per_renamed_option(old_layout, capsys) -> None:
    code = main(["family=arlm", "experiment=star_easy_arlm_cpu", "datamodule=old_star", "job_type=name", old_layout])
    out, err = capsys.readouterr()
    assert code == 0, err
    warned = [line for line in err.splitlines() if line.startswith("xlm: warning: config datasets/")]
    assert [w.split()[3] for w in warned] == [
        "datasets/star_easy_train",
        "datasets/star_easy_val",
        "datasets/star_easy_test",
    ]
    assert all("use datasets/star" in w and "goes away in 0.3" in w for w in warned)
    loaders = yaml.safe_load(out)["datamodule"]["dataloaders"]
    got = {
        split: (loaders[split]["lm"]["dataset"]["name"], loaders[split]["lm"]["dataset"]["generator_kwargs"])
        for split in ("train", "val", "test")
    }
    sizes = {"seed": 42, "num_train": 50000, "num_validation": 1000, "num_test": 5000}  # star_num_validation
    assert got == {
        "train": ("star_easy_train", {"setting": "easy", "split": "train", **sizes}),
        "val": ("star_easy_val", {"setting": "easy", "split": "validation", **sizes}),
        "test": ("star_easy_test", {"setting": "easy", "split": "test", **sizes}),
    }
    assert DEPRECATED_KEY not in out


def test_the_alias_builds_the_same_dataset_as_the_new_option() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        old = compose_config("arlm", ["experiment=star_easy_arlm_cpu", "+datasets@old=star_hard_val"])
    new = compose_config(
        "arlm",
        [
            "experiment=star_easy_arlm_cpu",
            "star_setting=hard",
            "+datasets@new=star",
            "+new.generator_kwargs.split=validation",
        ],
    )
    assert [str(w.message).split()[1] for w in caught if w.category is DeprecationWarning] == ["datasets/star_hard_val"]
    old_set, new_set = dict(old.old), dict(new.new)
    assert old_set.pop("name") == "star_hard_val" and new_set.pop("name") == "star_hard_validation"
    assert old_set.pop("debug")["name"] == "star_hard_val_debug"
    new_set.pop("debug")
    assert old_set == new_set


def test_every_alias_names_a_version_that_removes_it() -> None:
    assert ALIASES and all(a.removed_in == "0.3" and a.stored()[DEPRECATED_KEY].startswith("config ") for a in ALIASES)
