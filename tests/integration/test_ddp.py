"""DDP on CPU (2 processes, gloo): the same global batch on 1 and on 2 processes gives the same
validation-loss curve, the same final weights and the same gathered predictions."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from same_run import assert_same_run

pytestmark = [pytest.mark.integration, pytest.mark.slow]  # 70-220 s on a shared 2-core machine

XLM = str(Path(sys.executable).parent / "xlm")
TINY = [
    "experiment=star_easy_arlm",
    "model=rotary_transformer_tiny_arlm",
    "model.d_model=32",
    "model.num_layers=1",
    "model.nhead=2",
    "model.dim_feedforward=64",
    "model.rotary_emb_dim=16",
    "model.dropout=0",
    "debug=overfit",
    "per_device_batch_size=16",
    "global_batch_size=32",
    "trainer.num_sanity_val_steps=0",
    "trainer.max_steps=4",
    "trainer.val_check_interval=2",
    "trainer.log_every_n_steps=1",
    "optimizer.lr=3e-3",
    "predictor.max_steps=10",
    "trainer.deterministic=false",
    "trainer.precision=32",  # the equivalence is exact in fp32; bf16 (precision=auto) rounds differently per process
]


def _run(root: Path, job_name: str, *extra: str) -> Path:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [XLM, *TINY, "job_type=train", f"job_name={job_name}", f"paths.root_dir={root}", *extra],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
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
