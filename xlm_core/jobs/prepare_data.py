"""Job ``prepare_data``: generate or download, preprocess and cache every dataset of the datamodule."""

from __future__ import annotations

import time

from omegaconf import DictConfig

from xlm_core.jobs.common import build_datamodule, echo
from xlm_core.training.runtime import build_runtime

__all__ = ["run", "prepare_data"]


def prepare_data(cfg: DictConfig) -> str:
    """Build the tokenizer and datamodule, run ``prepare_data()`` and return the cache directory."""
    datamodule = build_datamodule(cfg, build_runtime(cfg))
    started = time.perf_counter()
    datamodule.prepare_data()
    cache_dir = str(getattr(datamodule, "cache_dir", "?"))
    lines = [f"xlm: data prepared in {time.perf_counter() - started:.1f}s; cache: {cache_dir}"]
    if hasattr(datamodule, "dataloader_specs"):
        for stage in ("train", "val", "test", "predict"):
            for spec in datamodule.dataloader_specs(stage):
                lines.append(f"  {stage}/{spec.name}: kind={spec.kind} dataset={spec.dataset_name}")
    echo("\n".join(lines))
    return cache_dir


def run(cfg: DictConfig) -> None:
    """Entry point for ``xlm job_type=prepare_data``."""
    prepare_data(cfg)
