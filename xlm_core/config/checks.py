"""Check the values of a composed config before anything is built, with one-line messages that name
the key, the bad value and the fix (instead of a traceback from deep inside Lightning or torch)."""

from __future__ import annotations

import difflib
import numbers
from collections.abc import Callable, Sequence
from typing import Any

import hydra
import torch
from hydra.errors import InstantiationException
from omegaconf import DictConfig, OmegaConf

from xlm_core.errors import UsageError

__all__ = [
    "validate_run_config",
    "instantiate",
    "PRECISIONS",
    "ADAMW_OPTIONS",
    "LR_SCHEDULER_OPTIONS",
    "ALLOWED_NEW_TOP_LEVEL_KEYS",
    "reject_new_top_level_keys",
]

PRECISIONS = (
    "auto",
    "32",
    "32-true",
    "64",
    "64-true",
    "16",
    "16-mixed",
    "16-true",
    "bf16",
    "bf16-mixed",
    "bf16-true",
    "transformer-engine",
    "transformer-engine-float16",
)
# Top-level keys a user may add with `+key=...` (everything else must already exist in the config).
ALLOWED_NEW_TOP_LEVEL_KEYS = frozenset({"prompts"})


def _int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _check(
    cfg: DictConfig, key: str, ok: Callable[[Any], bool], want: str, example: str, optional: bool = False
) -> None:
    value = OmegaConf.select(cfg, key, default=None)
    if value is None and optional:
        return
    if value is None or not ok(value):
        raise UsageError(f"{key}={value!r}: must be {want} (e.g. {key}={example})")


def _check_accelerator(cfg: DictConfig) -> None:
    accelerator = str(OmegaConf.select(cfg, "trainer.accelerator", default="auto") or "auto").lower()
    if accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise UsageError(
            f"trainer.accelerator={accelerator} but this machine has no usable CUDA GPU "
            f"(torch {torch.__version__}); use trainer.accelerator=cpu or auto"
        )
    if accelerator == "mps" and not torch.backends.mps.is_available():
        raise UsageError("trainer.accelerator=mps but MPS is not available here; use trainer.accelerator=cpu or auto")


def _check_trainer(cfg: DictConfig) -> None:
    t = "trainer."
    _check(cfg, t + "max_steps", lambda v: _int(v) and (v == -1 or v > 0), "a positive int, or -1 for no limit", "1000")
    _check(cfg, t + "max_epochs", lambda v: _int(v) and (v == -1 or v > 0), "a positive int or -1", "-1", optional=True)
    _check(
        cfg,
        t + "val_check_interval",
        lambda v: (_int(v) and v > 0) or (_number(v) and 0 < v <= 1),
        "a positive int (optimizer steps) or a fraction of an epoch in (0, 1]",
        "500",
        optional=True,
    )
    _check(cfg, t + "log_every_n_steps", lambda v: _int(v) and v > 0, "a positive int", "50", optional=True)
    _check(cfg, t + "gradient_clip_val", lambda v: _number(v) and v >= 0, "a number >= 0 or null", "1.0", optional=True)
    _check(cfg, t + "num_sanity_val_steps", lambda v: _int(v) and v >= -1, "an int >= -1", "2", optional=True)
    _check(cfg, t + "num_nodes", lambda v: _int(v) and v > 0, "a positive int", "1", optional=True)
    _check(
        cfg,
        t + "limit_val_batches",
        lambda v: (_int(v) and v >= 0) or (_number(v) and 0 <= v <= 1),
        "an int >= 0 or a fraction in [0, 1]",
        "1.0",
        optional=True,
    )
    _check(
        cfg,
        t + "precision",
        lambda v: str(v) in PRECISIONS,
        f"one of {', '.join(PRECISIONS)}",
        "bf16-mixed",
        optional=True,
    )
    _check_accelerator(cfg)


def _check_batches(cfg: DictConfig) -> None:
    _check(cfg, "per_device_batch_size", lambda v: _int(v) and v > 0, "a positive int", "32")
    _check(
        cfg,
        "global_batch_size",
        lambda v: _int(v) and v > 0,
        "a positive int (or null for per_device_batch_size x devices x num_nodes)",
        "64",
        optional=True,
    )
    _check(
        cfg,
        "generate.batch_size",
        lambda v: _int(v) and v > 0,
        "a positive int, or null for per_device_batch_size",
        "16",
        optional=True,
    )
    _check(
        cfg,
        "datamodule.eval_batch_size",
        lambda v: _int(v) and v > 0,
        "a positive int, or null for per_device_batch_size",
        "64",
        optional=True,
    )


ADAMW_OPTIONS = ("lr", "weight_decay", "betas", "eps", "fused", "foreach")
LR_SCHEDULER_OPTIONS = (
    "name",
    "num_warmup_steps",
    "num_training_steps",
    "scheduler_specific_kwargs",
    "interval",
    "monitor",
)


def _check_options(cfg: DictConfig, section: str, allowed: Sequence[str], what: str) -> None:
    """Refuse a key of ``section`` that its builder does not take (it would fail deep inside training)."""
    node = OmegaConf.select(cfg, section)
    if not OmegaConf.is_dict(node):
        return
    for key in node.keys():
        if key not in allowed and key != "_target_":
            near = difflib.get_close_matches(str(key), allowed, n=1, cutoff=0.6)
            hint = f"did you mean {section}.{near[0]}? " if near else ""
            raise UsageError(f"{section}.{key}: {what} has no option {key!r}; {hint}it takes {', '.join(allowed)}")


def _check_optimization(cfg: DictConfig) -> None:
    target = str(OmegaConf.select(cfg, "optimizer._target_", default="torch.optim.AdamW"))
    if target in ("torch.optim.AdamW", "torch.optim.adamw.AdamW"):
        _check_options(cfg, "optimizer", ADAMW_OPTIONS, "the AdamW optimizer")
    if OmegaConf.select(cfg, "lr_scheduler") is not None:
        _check_options(
            cfg, "lr_scheduler", LR_SCHEDULER_OPTIONS, "the learning-rate schedule (transformers.get_scheduler)"
        )
        _check(
            cfg,
            "lr_scheduler.name",
            lambda v: v in _scheduler_names(),
            f"one of {', '.join(_scheduler_names())}",
            "cosine",
            optional=True,
        )
    if target.endswith("AdamW"):
        _check(cfg, "optimizer.lr", lambda v: _number(v) and v > 0, "a number > 0", "1e-4")
        _check(cfg, "optimizer.weight_decay", lambda v: _number(v) and v >= 0, "a number >= 0", "0.01", optional=True)
        _check(cfg, "optimizer.eps", lambda v: _number(v) and v > 0, "a number > 0", "1e-8", optional=True)
        _check(
            cfg,
            "optimizer.betas",
            lambda v: len(v) == 2 and all(_number(b) and 0 <= b < 1 for b in v),
            "two numbers in [0, 1)",
            "[0.9,0.999]",
            optional=True,
        )
    _check(cfg, "lr_scheduler.num_warmup_steps", lambda v: _int(v) and v >= 0, "an int >= 0", "100", optional=True)
    _check(cfg, "checkpointing.every_n_steps", lambda v: _int(v) and v > 0, "a positive int", "1000", optional=True)
    _check(
        cfg, "checkpointing.keep_every_n_steps", lambda v: _int(v) and v > 0, "a positive int", "100000", optional=True
    )
    _check(cfg, "monitor_mode", lambda v: v in ("min", "max"), "min or max", "min", optional=True)


def _scheduler_names() -> list[str]:
    from transformers import SchedulerType

    return [s.value for s in SchedulerType]


def _check_reported_metrics(cfg: DictConfig) -> None:
    """Groups, kinds, splits and update functions of ``reported_metrics`` (one-line errors naming the fix)."""
    from xlm_core.training.reported_metrics import parse_reported_metrics, resolve_function

    for spec in parse_reported_metrics(cfg.get("reported_metrics")):
        resolve_function(spec.update_fn)


def validate_run_config(cfg: DictConfig, training: bool) -> None:
    """Raise :class:`UsageError` for the first config value a job cannot run with."""
    _check_batches(cfg)
    if OmegaConf.select(cfg, "trainer") is not None:
        _check_trainer(cfg)
    if training:
        _check_optimization(cfg)
    _check_reported_metrics(cfg)


def reject_new_top_level_keys(keys: Sequence[str]) -> None:
    """Refuse ``+key=value`` for a top-level key the config does not have (it would be silently ignored)."""
    unknown = [k for k in keys if k not in ALLOWED_NEW_TOP_LEVEL_KEYS]
    if unknown:
        key = unknown[0]
        raise UsageError(
            f"+{key}=... adds a top-level key no part of xlm reads, so it would be ignored; check the "
            f"spelling (`xlm ... job_type=name` prints every key), e.g. optimizer.lr instead of lr"
        )


def instantiate(node: Any, where: str, **kwargs: Any) -> Any:
    """``hydra.utils.instantiate`` whose failures are one line naming the config key and the class."""
    try:
        return hydra.utils.instantiate(node, **kwargs)
    except InstantiationException as exc:
        cause = exc.__cause__ or exc
        if isinstance(cause, UsageError):
            raise cause from None
        target = (
            OmegaConf.select(node, "_target_", default="?")
            if OmegaConf.is_config(node)
            else node.get("_target_", "?")
            if isinstance(node, dict)
            else "?"
        )
        detail = str(cause).splitlines()[0] if str(cause) else type(cause).__name__
        raise UsageError(f"{where} (_target_={target}): {type(cause).__name__}: {detail}") from exc
