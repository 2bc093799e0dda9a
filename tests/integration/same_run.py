"""Shared check of the distributed-training tests: a multi-process run equals a one-process run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tiny_runs import TINY_STAR_ARLM

BIN = Path(sys.executable).parent
# One run of 4 steps with a global batch of 32 that the tests split over processes (16 each, or 2 x 16 accumulated).
DISTRIBUTED_TINY = [
    "family=arlm",
    *TINY_STAR_ARLM,
    "model.dropout=0",
    "per_device_batch_size=16",
    "global_batch_size=32",
    "trainer.max_steps=4",
    "trainer.val_check_interval=2",
    "trainer.log_every_n_steps=1",
    "optimizer.lr=3e-3",
    "predictor.max_steps=10",
    "trainer.deterministic=false",
    "trainer.precision=32",  # the equivalence is exact in fp32; bf16 (precision=auto) rounds differently per process
]


def one_thread_env() -> dict[str, str]:
    """The environment of the launched processes: one thread each, so two fit a 2-core machine."""
    return {**os.environ, "OMP_NUM_THREADS": "1"}


def run_xlm(root: Path, *args: str) -> None:
    """``xlm`` with DISTRIBUTED_TINY under ``root`` in a subprocess; fails the test with its stderr."""
    proc = subprocess.run(
        [str(BIN / "xlm"), *DISTRIBUTED_TINY, f"paths.root_dir={root}", *args],
        capture_output=True,
        text=True,
        env=one_thread_env(),
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]


def assert_same_run(single: Path, multi: Path, val_steps: list[int], final_step: int) -> None:
    """Same validation-loss curve and same final weights (up to float reduction order)."""
    h1 = json.loads((single / "plots" / "history.json").read_text())["val/lm/accumulated_loss"]
    h2 = json.loads((multi / "plots" / "history.json").read_text())["val/lm/accumulated_loss"]
    assert [s for s, _ in h1] == [s for s, _ in h2] == val_steps
    for (_, a), (_, b) in zip(h1, h2):
        assert b == pytest.approx(a, abs=1e-4)
    w1 = torch.load(single / "checkpoints" / "last.ckpt", weights_only=True)
    w2 = torch.load(multi / "checkpoints" / "last.ckpt", weights_only=True)
    assert w1["global_step"] == w2["global_step"] == final_step
    for key, value in w1["state_dict"].items():
        torch.testing.assert_close(w2["state_dict"][key], value, rtol=1e-4, atol=1e-5, msg=key)
