"""The runtime objects every job builds once from the config and hands to the components that need them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig

from xlm_core.config_checks import instantiate
from xlm_core.errors import UsageError
from xlm_core.protocols import DummyNoiseSchedule, NoiseSchedule, Tokenizer

__all__ = ["Runtime", "build_runtime", "build_tokenizer", "build_noise_schedule"]


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


def build_runtime(cfg: DictConfig) -> Runtime:
    """Tokenizer and noise schedule of ``cfg``, built once per job."""
    return Runtime(tokenizer=build_tokenizer(cfg), noise_schedule=build_noise_schedule(cfg))
