"""The runtime objects every job builds once from the config and hands to the components that need them."""

from __future__ import annotations

import inspect
import logging
import os
from dataclasses import dataclass, field
from typing import Any

import torch
from omegaconf import DictConfig

from xlm_core.config.checks import instantiate
from xlm_core.errors import UsageError
from xlm_core.plugin.names import FamilyNames
from xlm_core.plugin.protocols import Tokenizer

logger = logging.getLogger(__name__)

__all__ = ["Runtime", "build_runtime", "build_tokenizer", "family_names", "set_torch_threads", "model_runtime_kwargs"]


@dataclass(frozen=True)
class Runtime:
    """What a run builds once and shares: the tokenizer (datamodule, model, loss, predictor) and the names
    the run's family declared for its batches (``register(names=...)``; the harness counts tokens with them)."""

    tokenizer: Tokenizer
    names: FamilyNames = field(default_factory=FamilyNames)


def build_tokenizer(cfg: DictConfig) -> Tokenizer:
    """Instantiate ``cfg.tokenizer``."""
    if cfg.get("tokenizer") is None:
        raise UsageError("No tokenizer in the config; pick an experiment (experiment=<name>) that sets one.")
    return instantiate(cfg.tokenizer, "tokenizer")


def family_names(cfg: DictConfig) -> FamilyNames:
    """The names ``cfg.family`` declared when it registered; today's defaults for a config without an
    installed family (a config built in Python, a test)."""
    from xlm_core.plugin.manager import get_registry

    name = cfg.get("family")
    family = get_registry().families.get(str(name)) if name else None
    return family.names if family is not None else FamilyNames()


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
    """Tokenizer and family names of ``cfg``, built once per job (after applying ``torch_num_threads``)."""
    set_torch_threads(cfg.get("torch_num_threads"))
    return Runtime(tokenizer=build_tokenizer(cfg), names=family_names(cfg))


def model_runtime_kwargs(model: Any, tokenizer: Tokenizer) -> dict[str, Any]:
    """What the tokenizer tells a model's constructor: ``num_embeddings`` and ``padding_idx`` always, and the
    tokenizer's ``mask_token_id`` when the constructor takes one (families with a mask token): as
    ``mask_token_id``, or as ``mask_idx`` for a constructor that still names it so."""
    kwargs: dict[str, Any] = {"num_embeddings": len(tokenizer), "padding_idx": tokenizer.pad_token_id}
    try:
        params = inspect.signature(model).parameters
    except (TypeError, ValueError):
        return kwargs
    mask_token_id = getattr(tokenizer, "mask_token_id", None)
    if mask_token_id is None:
        return kwargs
    if "mask_token_id" in params:
        kwargs["mask_token_id"] = mask_token_id
    elif "mask_idx" in params:
        kwargs["mask_idx"] = mask_token_id
    return kwargs
