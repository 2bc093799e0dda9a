"""Shared check of the distributed-training tests: a multi-process run equals a one-process run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch


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
