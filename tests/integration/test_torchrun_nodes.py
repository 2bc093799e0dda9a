"""Multi-node training as users launch it: two torchrun "nodes" of one process each on this machine
(gloo, static rendezvous on localhost) train as one run, matching one process with the same global
batch (validation curve, final weights) and writing one set of checkpoints and logs."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from same_run import assert_same_run

pytestmark = [pytest.mark.integration, pytest.mark.slow]  # ~1-4 min on a shared 2-core machine

BIN = Path(sys.executable).parent
TINY = [
    "family=arlm",
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
NODES = ["trainer_strategy=ddp", "trainer.accelerator=cpu", "trainer.devices=1", "trainer.num_nodes=2"]


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _xlm(root: Path, *args: str) -> None:
    proc = subprocess.run(
        [str(BIN / "xlm"), *TINY, f"paths.root_dir={root}", *args],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]


@pytest.mark.skipif(not torch.distributed.is_gloo_available(), reason="needs the gloo backend")
def test_two_torchrun_nodes_train_as_one_run(tmp_path: Path) -> None:
    _xlm(tmp_path, "job_type=train", "job_name=single")
    _xlm(tmp_path, "job_type=prepare_data", "job_name=nodes")  # once, before the nodes start (docs/multi_node.md)
    port = _free_port()
    nodes = [
        subprocess.Popen(
            [
                str(BIN / "torchrun"),
                "--nnodes=2",
                "--nproc-per-node=1",
                f"--node-rank={rank}",
                "--master-addr=127.0.0.1",
                f"--master-port={port}",
                "-m",
                "xlm_core.cli",
                *TINY,
                *NODES,
                "job_type=train",
                "job_name=nodes",
                f"paths.root_dir={tmp_path}",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=_env(),
        )
        for rank in (0, 1)
    ]
    outputs = [node.communicate(timeout=600) for node in nodes]
    for node, (_, err) in zip(nodes, outputs):
        assert node.returncode == 0, err[-3000:]
    assert "Training finished at step 4" in outputs[0][0] and "Training finished" not in outputs[1][0]

    multi = tmp_path / "outputs" / "nodes"
    assert_same_run(tmp_path / "outputs" / "single", multi, val_steps=[2, 4], final_step=4)
    assert len(list(multi.glob("logs/version_*"))) == 1  # one logger (rank 0) for the whole run
