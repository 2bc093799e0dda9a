"""Exact resume: a run stopped at step k and resumed (auto-resume from last.ckpt) matches, at step
n, the weights and loss of an uninterrupted run — data order, RNG (dropout on), optimizer and LR
schedule included."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from xlm_core.cli import main

from tiny_runs import TINY_STAR_ARLM

pytestmark = pytest.mark.integration

TINY = [
    *TINY_STAR_ARLM,
    "model.dropout=0.1",
    "per_device_batch_size=64",  # 512 debug examples: 8 batches per epoch, so the runs cross epochs
    "global_batch_size=64",
    "trainer.limit_val_batches=0",
    "trainer.log_every_n_steps=1",
    "lr_scheduler.name=linear",
    "lr_scheduler.num_warmup_steps=4",
    "lr_scheduler.num_training_steps=40",
    "optimizer.lr=3e-3",
    "checkpointing.every_n_steps=5",
]


def _train(root: Path, job_name: str, max_steps: int) -> dict:
    code = main(
        [*TINY, "job_type=train", f"job_name={job_name}", f"paths.root_dir={root}", f"trainer.max_steps={max_steps}"]
    )
    assert code == 0
    return json.loads((root / "outputs" / job_name / "metrics.json").read_text())


def _weights(root: Path, job_name: str) -> tuple[int, dict[str, torch.Tensor]]:
    ckpt = torch.load(root / "outputs" / job_name / "checkpoints" / "last.ckpt", weights_only=True)
    return ckpt["global_step"], ckpt["state_dict"]


def test_resumed_run_matches_uninterrupted_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    straight = _train(tmp_path, "straight", 12)
    first = _train(tmp_path, "resumed", 7)  # stops mid-epoch (step 7 of 8); last.ckpt holds step 7
    assert first["step"] == 7
    assert _weights(tmp_path, "resumed")[0] == 7
    capsys.readouterr()
    resumed = _train(tmp_path, "resumed", 12)
    assert "resuming from" in capsys.readouterr().out

    assert resumed["step"] == straight["step"] == 12
    assert resumed["train/loss"] == pytest.approx(straight["train/loss"], abs=1e-6)
    step_a, wa = _weights(tmp_path, "straight")
    step_b, wb = _weights(tmp_path, "resumed")
    assert step_a == step_b == 12
    assert wa.keys() == wb.keys()
    for key in wa:
        torch.testing.assert_close(wb[key], wa[key], rtol=0, atol=1e-6, msg=key)
