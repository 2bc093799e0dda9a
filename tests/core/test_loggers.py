"""Loggers beside CSV: MLflow (local file store) and Weights & Biases (offline), alone and together,
receive the metric names of the CSV log and the run's config; the PNG plot is still written."""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

import pytest

from xlm_core.cli import main

from tiny_runs import TINY_STAR_ARLM

TINY = [
    *TINY_STAR_ARLM,
    "per_device_batch_size=32",
    "global_batch_size=32",
    "predictor.max_steps=10",
    "trainer.max_steps=4",
    "trainer.val_check_interval=2",
    "trainer.log_every_n_steps=1",
    "job_type=train",
]


def _csv_metric_names(run: Path) -> set[str]:
    (path,) = run.glob("logs/version_*/metrics.csv")
    with open(path) as f:
        return set(next(csv.reader(f))) - {"step"}


def test_mlflow_file_store_gets_the_csv_metrics_and_the_config(tmp_path: Path) -> None:
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    assert main([*TINY, f"paths.root_dir={tmp_path}", "logger=[csv,mlflow]"]) == 0
    run = tmp_path / "outputs" / "star_easy_arlm"
    client = MlflowClient(f"file:{run / 'mlruns'}")
    (experiment,) = [e for e in client.search_experiments() if e.name == "xlm"]
    (mlrun,) = client.search_runs([experiment.experiment_id])
    assert mlrun.info.run_name == "star_easy_arlm" and mlrun.data.tags["family"] == "arlm"
    assert set(mlrun.data.metrics) == _csv_metric_names(run)
    history = client.get_metric_history(mlrun.info.run_id, "val/lm/accumulated_loss")
    assert [m.step for m in history] == [1, 3]  # Lightning's 0-based step of the validations at 2 and 4
    assert mlrun.data.params["optimizer/lr"] == "0.0001"
    assert (run / "plots" / "curves.png").is_file()


def _wandb_records(path: Path) -> list:
    """The protobuf records of an offline ``run-*.wandb`` file (a LevelDB-style log of 32 KiB blocks
    after a 7-byte ``:W&B`` header), read without the network or the wandb service."""
    from wandb.proto import wandb_internal_pb2 as pb

    data, block, pos, records, chunks = path.read_bytes(), 32768, 7, [], b""
    assert data[:4] == b":W&B"
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:  # block trailer
            pos += left
            continue
        length, kind = int.from_bytes(data[pos + 4 : pos + 6], "little"), data[pos + 6]
        chunks += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # FULL or LAST
            record = pb.Record()
            record.ParseFromString(chunks)
            records.append(record)
            chunks = b""
    return records


def test_wandb_offline_together_with_csv_and_mlflow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("wandb")
    pytest.importorskip("mlflow")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    assert main([*TINY, f"paths.root_dir={tmp_path}", "logger=[csv,mlflow,wandb]"]) == 0
    run = tmp_path / "outputs" / "star_easy_arlm"
    (offline,) = (run / "wandb").glob("offline-run-*")
    (log,) = offline.glob("run-*.wandb")
    import wandb

    wandb.teardown()  # waits for the wandb service to write out and close the offline log
    records = _wandb_records(log)
    kinds = Counter(r.WhichOneof("record_type") for r in records)
    assert kinds["exit"] == 1, f"the offline log {log} is incomplete: {dict(kinds)}"
    history = {
        item.key or ".".join(item.nested_key)
        for r in records
        if r.WhichOneof("record_type") == "history"
        for item in r.history.item
    }
    assert _csv_metric_names(run) <= history
    config = {u.key for r in records if r.WhichOneof("record_type") == "config" for u in r.config.update}
    assert {"optimizer", "model", "job_name"} <= config
    assert list((run / "mlruns").glob("*/*/metrics/val/lm/accumulated_loss"))
