"""DDP on CPU (2 processes, gloo): the same global batch on 1 and on 2 processes gives the same
validation-loss curve, the same final weights and the same gathered predictions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from same_run import assert_same_run, run_xlm

pytestmark = [pytest.mark.integration, pytest.mark.slow]  # 70-220 s on a shared 2-core machine


def _run(root: Path, job_name: str, *extra: str) -> Path:
    run_xlm(root, "job_type=train", f"job_name={job_name}", *extra)
    return root / "outputs" / job_name


@pytest.mark.skipif(not torch.distributed.is_gloo_available(), reason="needs the gloo backend")
def test_two_processes_match_one_with_the_same_global_batch(tmp_path: Path) -> None:
    single = _run(tmp_path, "single")  # 1 process, 2 accumulated micro-batches of 16
    ddp = _run(tmp_path, "ddp", "trainer_strategy=ddp", "trainer.accelerator=cpu", "trainer.devices=2")
    assert_same_run(single, ddp, val_steps=[2, 4], final_step=4)
    rows1 = (single / "predictions" / "val" / "prediction" / "step_4.jsonl").read_text().splitlines()
    rows2 = (ddp / "predictions" / "val" / "prediction" / "step_4.jsonl").read_text().splitlines()
    assert len(rows2) == len(rows1) == 32  # every rank's rows gathered, in dataset order, padding dropped
    assert [json.loads(r)["prompt"] for r in rows2] == [json.loads(r)["prompt"] for r in rows1]
