"""Every experiment of every installed family composes; every star experiment trains a few steps, validates
and writes its files, at its own model size (small batches and the debug data keep it short)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from xlm_core.cli import main
from xlm_core.config.compose import compose_config
from xlm_core.plugin.manager import get_families

EXPERIMENTS = [(f.name, e) for f in get_families().values() for e in f.experiments]
STAR = [(family, e) for family, e in EXPERIMENTS if e.startswith("star_")]
SHORT = [
    "debug=overfit",
    "per_device_batch_size=4",
    "global_batch_size=4",
    "datamodule.eval_batch_size=4",
    "trainer.max_steps=2",
    "trainer.val_check_interval=2",
    "trainer.limit_val_batches=1",
    "trainer.num_sanity_val_steps=0",
    "checkpointing.every_n_steps=2",
    "progress_every_n_steps=1",
]


def test_both_families_and_their_star_matrix_are_installed() -> None:
    for family in ("arlm", "mlm"):
        for level in ("easy", "medium", "hard"):
            assert (family, f"star_{level}_{family}") in EXPERIMENTS
        assert (family, f"star_easy_{family}_cpu") in EXPERIMENTS and (family, f"tinygsm_{family}") in EXPERIMENTS
    for experiment in ("star_easy_mdlm", "star_easy_mdlm_cpu", "pystdlib_mdlm_cpu", "text_mdlm", "tinygsm_mdlm"):
        assert ("mdlm", experiment) in EXPERIMENTS


@pytest.mark.parametrize("family, experiment", EXPERIMENTS, ids=[f"{f}-{e}" for f, e in EXPERIMENTS])
def test_every_experiment_composes(family: str, experiment: str, tmp_path: Path) -> None:
    cfg = compose_config(family, [f"experiment={experiment}", f"paths.root_dir={tmp_path}"])
    assert cfg.family == family and cfg.model._target_ and cfg.loss._target_ and cfg.datamodule._target_
    assert cfg.tokenizer._target_ and cfg.monitor


@pytest.mark.slow
@pytest.mark.parametrize("family, experiment", STAR, ids=[f"{f}-{e}" for f, e in STAR])
def test_every_star_experiment_trains_a_few_steps(family: str, experiment: str, tmp_path: Path) -> None:
    assert main([f"family={family}", f"experiment={experiment}", f"paths.root_dir={tmp_path}", *SHORT]) == 0
    run = tmp_path / "outputs" / experiment
    metrics = json.loads((run / "metrics.json").read_text())
    monitor = OmegaConf.load(run / "config.yaml").monitor  # each family's validation loss (MDLM: val/lm/nelbo)
    assert metrics["step"] == 2 and monitor.startswith("val/lm/") and metrics[monitor] > 0
    assert 0.0 <= metrics["val/prediction/token_accuracy"] <= 1.0
    assert (run / "checkpoints" / "last.ckpt").is_file() and (run / "config.yaml").is_file()
