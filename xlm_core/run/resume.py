"""What a training run continued from a checkpoint must check and tell (docs/reliability.md):

- a changed ``monitor`` / ``monitor_mode`` would replace ``best.ckpt`` (best by one metric) with the best
  by another: refused, or with ``allow_config_mismatch=true`` the old file is kept aside;
- ``allow_config_mismatch=true`` with other optimizer / schedule settings applies them to the restored
  optimizer (:class:`ApplyOptimizerSettings`), so the settings recorded in ``config.resume-*.yaml`` and
  in every new checkpoint are the ones in effect;
- notes for what silently changes the run: another batch size, seed or number of processes (the data
  order of an uninterrupted run no longer holds), and a warm-up longer than the run.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning as L
from omegaconf import DictConfig, OmegaConf
from torch.optim.lr_scheduler import LambdaLR

from xlm_core.config.tools import flatten, to_plain_best_effort
from xlm_core.errors import UsageError
from xlm_core.run.fileio import unused_path
from xlm_core.training.settings import RunSettings

__all__ = ["check_monitor_unchanged", "data_order_notes", "warmup_note", "ApplyOptimizerSettings", "optimizer_changes"]

# Settings the data order of a resumed run depends on (ResumeDataOrder replays the batches already seen).
_DATA_ORDER_KEYS = ("seed", "per_device_batch_size", "global_batch_size", "trainer.devices", "trainer.num_nodes")


def _get(data: Mapping[str, Any], dotted: str) -> Any:
    node: Any = data
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def check_monitor_unchanged(cfg: DictConfig, stored: Mapping[str, Any], settings: RunSettings) -> Path | None:
    """Refuse a resume whose ``monitor``/``monitor_mode`` differ from the checkpoint's while ``best.ckpt`` exists
    (it would be replaced by the best of another metric); with ``allow_config_mismatch=true`` move it aside.

    Returns where ``best.ckpt`` was moved (None when nothing moved).
    """
    old = (stored.get("monitor"), stored.get("monitor_mode") or "min")
    new = (settings.monitor.metric, settings.monitor.mode) if settings.monitor else (None, "min")
    best = settings.run_dir / "checkpoints" / "best.ckpt"
    if old == new or not best.is_file() or old[0] is None:
        return None
    change = f"monitor={old[0]} monitor_mode={old[1]} -> monitor={new[0]} monitor_mode={new[1]}"
    aside = best.with_name(f"best.{re.sub(r'[^A-Za-z0-9_.-]+', '_', str(old[0]))}-{old[1]}.ckpt")
    if not cfg.get("allow_config_mismatch", False):
        raise UsageError(
            f"{change}: {best} holds the best checkpoint by {old[0]} and this run would replace it with the best by "
            f"{new[0]}; resume with monitor={old[0]} monitor_mode={old[1]}, use a new job_name=..., or add "
            f"allow_config_mismatch=true to keep the old file as {aside.name} and track the new metric"
        )
    aside = unused_path(aside)
    best.rename(aside)
    return aside


def data_order_notes(cfg: DictConfig, stored: Mapping[str, Any]) -> list[str]:
    """Notes for settings of the data order that differ from the checkpoint's (seed, batch sizes, processes)."""
    current = to_plain_best_effort(cfg)
    changed = [
        f"{key} {_get(stored, key)} -> {_get(current, key)}"
        for key in _DATA_ORDER_KEYS
        if _get(stored, key) is not None and _get(stored, key) != _get(current, key)
    ]
    if not changed:
        return []
    return [
        f"resuming with {', '.join(changed)}: from here on the batches differ from those of an uninterrupted run "
        "(examples of the current epoch may be seen twice or not at all); resume with the checkpoint's values to "
        "keep the exact data order"
    ]


def warmup_note(cfg: DictConfig, max_steps: int | None) -> str | None:
    """A note when the learning-rate warm-up is longer than the run: the rate never reaches ``optimizer.lr``."""
    warmup = OmegaConf.select(cfg, "lr_scheduler.num_warmup_steps")
    name = OmegaConf.select(cfg, "lr_scheduler.name")
    total = OmegaConf.select(cfg, "lr_scheduler.num_training_steps")
    steps = int(total) if total not in (None, -1) else max_steps
    if not name or not warmup or steps is None or steps <= 0 or int(warmup) <= steps:
        return None
    return (
        f"lr_scheduler.num_warmup_steps={warmup} is longer than the {steps} steps this run trains, so the learning "
        f"rate never reaches optimizer.lr (it ends at {100 * steps / int(warmup):.0f}% of it); lower "
        "num_warmup_steps or raise trainer.max_steps"
    )


def optimizer_changes(cfg: DictConfig, stored: Mapping[str, Any]) -> list[str]:
    """``optimizer.lr: 0.0001 -> 1e-05`` for every optimizer / schedule key that differs from the checkpoint's."""
    current = to_plain_best_effort(cfg)
    out = []
    for section in ("optimizer", "lr_scheduler"):
        old = flatten(stored.get(section) or {}, section)
        new = flatten(current.get(section) or {}, section)
        out += [
            f"{k}: {old.get(k, '<unset>')!r} -> {new.get(k, '<unset>')!r}"
            for k in sorted(set(old) | set(new))
            if old.get(k, "<unset>") != new.get(k, "<unset>")
        ]
    return out


class ApplyOptimizerSettings(L.Callback):
    """After Lightning restores the optimizer and scheduler of a resumed run, put in the hyperparameters of the
    current config (learning rate, betas, weight decay, ... and the schedule's base rates); the optimizer's
    moment estimates and the schedule's position stay the checkpoint's.

    Used when ``allow_config_mismatch=true`` resumes with other optimizer / schedule settings: without it the
    restored state would keep the checkpoint's learning rate while the config says otherwise.
    """

    def __init__(self, changes: list[str]) -> None:
        self.changes = changes
        self.applied = False

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        fresh = pl_module.configure_optimizers()
        fresh_opt = fresh["optimizer"] if isinstance(fresh, Mapping) else fresh
        fresh_sched = fresh["lr_scheduler"]["scheduler"] if isinstance(fresh, Mapping) else None
        restored = trainer.optimizers[0]
        if len(restored.param_groups) != len(fresh_opt.param_groups):
            return
        base = list(fresh_sched.base_lrs) if fresh_sched is not None else [g["lr"] for g in fresh_opt.param_groups]
        for old, new, lr in zip(restored.param_groups, fresh_opt.param_groups, base):
            old.update({k: v for k, v in new.items() if k not in ("params", "lr", "initial_lr")})
            old["lr"] = lr
        schedulers = trainer.lr_scheduler_configs
        if schedulers:
            scheduler = schedulers[0].scheduler
            scheduler.base_lrs = base
            for group, lr in zip(restored.param_groups, base):
                group["initial_lr"] = lr
            if isinstance(scheduler, LambdaLR):  # the rate at the restored position of the (new) schedule
                for group, fn, lr in zip(restored.param_groups, scheduler.lr_lambdas, base):
                    group["lr"] = lr * fn(scheduler.last_epoch)
                scheduler._last_lr = [group["lr"] for group in restored.param_groups]
        self.applied = True
