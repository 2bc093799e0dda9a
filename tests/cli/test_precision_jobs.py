"""trainer.precision=auto through the real CLI: train, eval and generate all run under the resolved precision."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from xlm_core.cli import main
from xlm_core.modules.transformer import RotaryTransformerLayer
from xlm_core.training import precision as P

from tiny_runs import TINY_STAR_ARLM

TINY = [
    *TINY_STAR_ARLM,
    "per_device_batch_size=32",
    "global_batch_size=32",
    "predictor.max_steps=6",
    "trainer_strategy=cpu",
]


@pytest.fixture
def autocast_log(monkeypatch: pytest.MonkeyPatch) -> list[tuple[bool, bool, torch.dtype]]:
    """(grad enabled, autocast enabled, autocast dtype) of every transformer-layer call."""
    log: list[tuple[bool, bool, torch.dtype]] = []
    forward = RotaryTransformerLayer.forward

    def recording_forward(self, *args, **kwargs):
        log.append((torch.is_grad_enabled(), torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu")))
        return forward(self, *args, **kwargs)

    monkeypatch.setattr(RotaryTransformerLayer, "forward", recording_forward)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    return log


@pytest.mark.parametrize("native", [True, False], ids=["bf16-cpu", "no-bf16-cpu"])
def test_auto_precision_is_used_by_train_eval_and_generate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, autocast_log, native: bool
) -> None:
    monkeypatch.setattr(P, "cpu_has_native_bf16", lambda: native)
    expected = "bf16-mixed (auto: native bf16 on this CPU)" if native else "32-true (auto: no native bf16 on this CPU)"
    run = [*TINY, f"paths.root_dir={tmp_path}"]
    assert main([*run, "job_type=train", "trainer.max_steps=1", "trainer.val_check_interval=1"]) == 0
    assert f"precision: {expected}" in capsys.readouterr().out
    training = [entry for entry in autocast_log if entry[0]]
    assert training and all(enabled == native for _, enabled, _ in training)
    assert all(dtype == torch.bfloat16 for _, enabled, dtype in autocast_log if enabled)
    if not native:
        return  # fp32 eval/generate are what every other job test runs
    for job in (["job_type=eval"], ["job_type=generate", '+prompts=["1 2 3", "4"]']):
        autocast_log.clear()
        assert main([*run, *job]) == 0
        assert autocast_log and all(not grad and enabled == native for grad, enabled, _ in autocast_log), job
