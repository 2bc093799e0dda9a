"""The runtime objects every job builds once from the config and hands to the components that need them."""

from __future__ import annotations

import inspect
import logging
import os
from dataclasses import dataclass
from typing import Any

import torch
from omegaconf import DictConfig

from xlm_core.config.checks import instantiate
from xlm_core.errors import UsageError
from xlm_core.plugin.protocols import DummyNoiseSchedule, NoiseSchedule, Tokenizer

logger = logging.getLogger(__name__)

__all__ = ["Runtime", "build_runtime", "build_tokenizer", "build_noise_schedule", "set_torch_threads",
           "model_runtime_kwargs"]


@dataclass(frozen=True)
class Runtime:
    """The tokenizer and noise schedule of a run, shared by datamodule, model, loss and predictor."""

    tokenizer: Tokenizer
    noise_schedule: NoiseSchedule


def build_tokenizer(cfg: DictConfig) -> Tokenizer:
    """Instantiate ``cfg.tokenizer``."""
    if cfg.get("tokenizer") is None:
        raise UsageError("No tokenizer in the config; pick an experiment (experiment=<name>) that sets one.")
    return instantiate(cfg.tokenizer, "tokenizer")


def build_noise_schedule(cfg: DictConfig) -> NoiseSchedule:
    """Instantiate ``cfg.noise_schedule`` (the zero schedule when the config has none)."""
    ns_cfg: Any = cfg.get("noise_schedule")
    return instantiate(ns_cfg, "noise_schedule") if ns_cfg is not None else DummyNoiseSchedule()


def set_torch_threads(value: int | str | None) -> int | None:
    """Apply ``torch_num_threads``: an int, ``auto`` (the cores the 1-minute load average leaves idle,
    at least 1: on a shared machine more threads than free cores slow every step down) or null (torch's
    default). Returns the thread count set, or None."""
    if value is None or value == "":
        return None
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if value == "auto":
        busy = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
        threads = max(1, min(cores, int(cores - busy + 0.5)))
        logger.info("torch_num_threads=auto -> %d thread(s) (load average %.1f on %d cores)", threads, busy, cores)
    elif isinstance(value, int) and not isinstance(value, bool) and value >= 1:
        threads = value
    else:
        raise UsageError(f"torch_num_threads={value!r}; use a positive int, auto, or null for torch's default.")
    torch.set_num_threads(threads)
    return threads


def build_runtime(cfg: DictConfig) -> Runtime:
    """Tokenizer and noise schedule of ``cfg``, built once per job (after applying ``torch_num_threads``)."""
    set_torch_threads(cfg.get("torch_num_threads"))
    return Runtime(tokenizer=build_tokenizer(cfg), noise_schedule=build_noise_schedule(cfg))


def model_runtime_kwargs(model: Any, tokenizer: Tokenizer) -> dict[str, Any]:
    """What the tokenizer tells a model's constructor: ``num_embeddings`` and ``padding_idx`` always, and
    ``mask_idx`` when the constructor takes it (families with a mask token)."""
    kwargs: dict[str, Any] = {"num_embeddings": len(tokenizer), "padding_idx": tokenizer.pad_token_id}
    try:
        params = inspect.signature(model).parameters
    except (TypeError, ValueError):
        return kwargs
    if "mask_idx" in params and getattr(tokenizer, "mask_token_id", None) is not None:
        kwargs["mask_idx"] = tokenizer.mask_token_id
    return kwargs
