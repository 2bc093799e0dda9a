"""AdamW over a model's weight-decay groups and the learning-rate schedule, built from the config."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from omegaconf import DictConfig

from xlm_core.config.checks import instantiate
from xlm_core.config.tools import to_plain
from xlm_core.errors import UsageError

__all__ = ["weight_decay_param_groups", "build_optimizer", "build_lr_scheduler", "OptimizerConfigError"]


class OptimizerConfigError(UsageError, ValueError):
    """An optimizer or schedule option the builder does not take (one line, exit code 2 from the CLI)."""


def weight_decay_param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups from the model's own split of decayed / non-decayed parameters.

    Models without ``get_named_params_for_weight_decay`` decay every parameter with ndim >= 2.
    Every trainable parameter must land in exactly one group.
    """
    trainable = {name: p for name, p in model.named_parameters() if p.requires_grad}
    if hasattr(model, "get_named_params_for_weight_decay"):
        decay = dict(model.get_named_params_for_weight_decay())
        if hasattr(model, "get_named_params_for_no_weight_decay"):
            no_decay = dict(model.get_named_params_for_no_weight_decay())
        else:
            no_decay = {n: p for n, p in trainable.items() if n not in decay}
    else:
        decay = {n: p for n, p in trainable.items() if p.ndim >= 2}
        no_decay = {n: p for n, p in trainable.items() if p.ndim < 2}
    decay = {n: p for n, p in decay.items() if p.requires_grad}
    no_decay = {n: p for n, p in no_decay.items() if p.requires_grad}
    both = sorted(set(decay) & set(no_decay))
    missing = sorted(set(trainable) - set(decay) - set(no_decay))
    if both or missing:
        raise ValueError(
            f"{type(model).__name__}'s weight-decay split is inconsistent: in both groups {both}, in neither "
            f"{missing}. Fix get_named_params_for_weight_decay / get_named_params_for_no_weight_decay."
        )
    return [
        {"params": list(decay.values()), "weight_decay": float(weight_decay), "names": list(decay)},
        {"params": list(no_decay.values()), "weight_decay": 0.0, "names": list(no_decay)},
    ]


def build_optimizer(
    model: torch.nn.Module,
    optimizer_cfg: DictConfig | Mapping[str, Any] | None,
    amp_clipping: str | None = None,
) -> torch.optim.Optimizer:
    """AdamW over the model's weight-decay groups (the fused kernel on CPU/CUDA unless the config says otherwise).

    ``amp_clipping`` names the Lightning settings that rule the fused kernel out (e.g.
    ``"trainer.precision=bf16-mixed with trainer.gradient_clip_val=1.0"``): Lightning cannot clip the
    gradients of an optimizer that unscales them itself, so the default then picks the unfused kernel.
    A config with another ``_target_`` is instantiated with ``params=`` the same groups.
    """
    ocfg: dict[str, Any] = dict(to_plain(optimizer_cfg) or {})
    target = ocfg.pop("_target_", "torch.optim.AdamW")
    groups = weight_decay_param_groups(model, float(ocfg.pop("weight_decay", 0.01)))
    for g in groups:
        g.pop("names")
    groups = [g for g in groups if g["params"]]
    if target not in ("torch.optim.AdamW", "torch.optim.adamw.AdamW"):
        return instantiate({"_target_": target, **ocfg}, "optimizer", params=groups)
    lr = float(ocfg.pop("lr", 1e-4))
    betas = tuple(float(b) for b in ocfg.pop("betas", (0.9, 0.999)))
    eps = float(ocfg.pop("eps", 1e-8))
    fused, foreach = ocfg.pop("fused", None), ocfg.pop("foreach", None)
    if ocfg:
        raise OptimizerConfigError(
            f"Unknown optimizer option(s) {sorted(ocfg)}; AdamW takes lr, weight_decay, betas, eps, fused, foreach."
        )
    fusable = all(p.device.type in ("cuda", "cpu") and p.is_floating_point() for g in groups for p in g["params"])
    if fused and amp_clipping:
        raise ValueError(
            f"optimizer.fused=true cannot be combined with {amp_clipping}: Lightning cannot clip the gradients of "
            "a fused AdamW under mixed precision. Set optimizer.fused=null (the unfused kernel is then used) or "
            "trainer.gradient_clip_val=null."
        )
    if fused is None and foreach is None:
        fused = True if fusable and not amp_clipping else None
    impl = {k: v for k, v in (("fused", fused), ("foreach", foreach)) if v is not None}
    return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps, **impl)  # type: ignore[arg-type]


def build_lr_scheduler(
    optimizer: torch.optim.Optimizer, scheduler_cfg: DictConfig | Mapping[str, Any] | None, max_steps: int
) -> torch.optim.lr_scheduler.LRScheduler | None:
    """``transformers.get_scheduler`` from ``{name, num_warmup_steps, num_training_steps, ...}``.

    ``num_training_steps`` defaults to ``max_steps``; the schedule is stepped per optimizer step.
    """
    if scheduler_cfg is None:
        return None
    from transformers import get_scheduler

    scfg: dict[str, Any] = dict(to_plain(scheduler_cfg))
    name = scfg.pop("name", None)
    if not name:
        return None
    warmup = int(scfg.pop("num_warmup_steps", 0) or 0)
    total = scfg.pop("num_training_steps", None)
    total = int(total) if total not in (None, -1) else int(max_steps)
    if total <= 0 and name not in ("constant", "constant_with_warmup"):
        raise OptimizerConfigError(
            f"lr_scheduler {name!r} needs num_training_steps > 0 (got {total}); set trainer.max_steps "
            "or lr_scheduler.num_training_steps."
        )
    extra = scfg.pop("scheduler_specific_kwargs", None) or {}
    scfg.pop("interval", None)
    scfg.pop("monitor", None)
    if scfg:
        raise OptimizerConfigError(
            f"Unknown lr_scheduler option(s) {sorted(scfg)}; allowed: name, num_warmup_steps, "
            "num_training_steps, scheduler_specific_kwargs."
        )
    return get_scheduler(
        name, optimizer, num_warmup_steps=warmup, num_training_steps=total, scheduler_specific_kwargs=extra or None
    )
