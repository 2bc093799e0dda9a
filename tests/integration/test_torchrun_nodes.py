"""Multi-node training as users launch it: two torchrun "nodes" of one process each on this machine
(gloo, static rendezvous on localhost) train as one run, matching one process with the same global
batch (validation curve, final weights) and writing one set of checkpoints and logs."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import pytest
import torch
from same_run import BIN, DISTRIBUTED_TINY, assert_same_run, one_thread_env, run_xlm

pytestmark = [pytest.mark.integration, pytest.mark.slow]  # ~1-4 min on a shared 2-core machine

NODES = ["trainer_strategy=ddp", "trainer.accelerator=cpu", "trainer.devices=1", "trainer.num_nodes=2"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(not torch.distributed.is_gloo_available(), reason="needs the gloo backend")
def test_two_torchrun_nodes_train_as_one_run(tmp_path: Path) -> None:
    run_xlm(tmp_path, "job_type=train", "job_name=single")
    run_xlm(tmp_path, "job_type=prepare_data", "job_name=nodes")  # once, before the nodes start (docs/multi_node.md)
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
                *DISTRIBUTED_TINY,
                *NODES,
                "job_type=train",
                "job_name=nodes",
                f"paths.root_dir={tmp_path}",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=one_thread_env(),
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
