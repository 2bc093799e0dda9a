"""Experiment loggers beyond CSV and TensorBoard: Weights & Biases (offline by default) and MLflow
(a local file store by default). Both receive exactly the metric names the CSV log has.

Configs: ``logger/wandb.yaml``, ``logger/mlflow.yaml``; combine them, e.g. ``logger=[csv,wandb,mlflow]``.
"""

from __future__ import annotations

import os
from typing import Any

from lightning.pytorch.loggers import MLFlowLogger
from lightning.pytorch.loggers import WandbLogger as _LightningWandbLogger

__all__ = ["WandbLogger", "mlflow_logger", "finish_loggers"]


class WandbLogger(_LightningWandbLogger):
    """Lightning's ``WandbLogger`` plus ``finish()``, which closes the run when the job ends (so a
    second job in the same process starts a new run instead of appending to this one)."""

    def finish(self) -> None:
        """Close the W&B run (its offline files are complete after this)."""
        if self._experiment is not None and hasattr(self._experiment, "finish"):
            self._experiment.finish()
        self._experiment = None


def mlflow_logger(tracking_uri: str | None = None, **kwargs: Any) -> MLFlowLogger:
    """Lightning's ``MLFlowLogger``; a ``file:`` store is opted into explicitly, since MLflow 3 only
    keeps it in maintenance mode and refuses it without ``MLFLOW_ALLOW_FILE_STORE``."""
    if tracking_uri and tracking_uri.startswith("file:"):
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    return MLFlowLogger(tracking_uri=tracking_uri, **kwargs)


def finish_loggers(loggers: list[Any]) -> None:
    """Call ``finish()`` on every logger that has one (end of a job)."""
    for lg in loggers:
        finish = getattr(lg, "finish", None)
        if callable(finish):
            finish()
