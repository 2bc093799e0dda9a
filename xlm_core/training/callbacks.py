"""Lightning callbacks of training: NaN guard, one-line progress logs and the training-curve plot."""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning as L
import torch

from xlm_core.errors import UsageError
from xlm_core.run.fileio import unused_path
from xlm_core.run.files import scalar_metrics

__all__ = ["NaNGuard", "TrainingDiverged", "ProgressLogger", "CurvePlotter", "plot_curves"]


class TrainingDiverged(UsageError, FloatingPointError):
    """The training loss became NaN/Inf; the message names the files and how to continue (exit code 2)."""


def _largest_weight(module: torch.nn.Module) -> float:
    """The largest absolute parameter value (NaN when any is NaN)."""
    values = [p.detach().abs().max().float() for p in module.parameters() if p.numel()]
    return float(torch.stack(values).max()) if values else 0.0


class NaNGuard(L.Callback):
    """Stops training on a NaN/Inf loss: saves the weights that gave it (``nan_guard_step_<N>.ckpt``, for
    inspection; an earlier attempt's file is never overwritten) and names the newest checkpoint with a finite
    loss and finite weights, with the command that continues from it (``resume_from=``, other settings and
    ``allow_config_mismatch=true``, which applies them).

    Checked before backward, so no weight has seen the bad gradient. Under DDP the decision is shared by all
    ranks (one scalar all-reduce) so every rank stops together.
    """

    def __init__(self, dirpath: str | Path) -> None:
        self.dirpath = Path(dirpath)
        self.saved_path: Path | None = None

    def on_before_backward(self, trainer: L.Trainer, pl_module: L.LightningModule, loss: torch.Tensor) -> None:
        bad = not bool(torch.isfinite(loss.detach()).all())
        bad = bool(trainer.strategy.reduce_boolean_decision(bad, all=False))
        if not bad:
            return
        from xlm_core.run.checkpoints import last_finite_checkpoint
        from xlm_core.run.invocation import recorded_invocation

        step = trainer.global_step
        path = trainer.strategy.broadcast(unused_path(self.dirpath / f"nan_guard_step_{step}.ckpt"), src=0)
        trainer.save_checkpoint(str(path), weights_only=False)  # the whole training state
        self.saved_path = path
        largest = _largest_weight(pl_module)
        good = last_finite_checkpoint(self.dirpath, step)
        command = recorded_invocation() or "the same xlm command"
        lr = (
            trainer.optimizers[0].param_groups[0].get("initial_lr", trainer.optimizers[0].param_groups[0]["lr"])
            if trainer.optimizers
            else None
        )
        lower = f"<lower than {lr:g}>" if isinstance(lr, float) else "<lower>"
        if good is not None:
            then = (
                f"the newest checkpoint with a finite loss and finite weights is {good[0]} (step {good[1]}); continue "
                f"from it with other settings: {command} resume_from={good[0]} optimizer.lr={lower} "
                "allow_config_mismatch=true"
            )
        else:
            then = (
                f"no checkpoint of this run was saved before step {step}; start it over with other settings: "
                f"{command} optimizer.lr={lower} resume=false overwrite=true"
            )
        raise TrainingDiverged(
            f"the training loss became {loss.detach().float().item()} at step {step} (batch "
            f"{trainer.fit_loop.epoch_loop.batch_idx}), so training stopped; the weights that gave it (largest |w| "
            f"{largest:.3g}) are in {path} for inspection, not to continue from; {then} (or set "
            "trainer.gradient_clip_val, trainer.precision=32, or check the data)"
        )


class ProgressLogger(L.Callback):
    """One line every ``every_n_steps`` optimizer steps: step, loss, lr, tokens/s, elapsed.

    ``enabled="auto"`` prints only when stdout is not a terminal (CI, SLURM), where the progress bar
    is off. Throughput is always measured (``tokens_per_second``) for the end-of-training summary.
    """

    def __init__(self, every_n_steps: int = 50, enabled: bool | str = "auto") -> None:
        if every_n_steps < 1:
            raise ValueError(f"every_n_steps must be >= 1, got {every_n_steps}.")
        self.every_n_steps = int(every_n_steps)
        if enabled == "auto":
            enabled = not sys.stdout.isatty()
        self.enabled = bool(enabled)
        self._t0 = self._t_last = 0.0
        self._tok0 = self._tok_last = 0
        self._last_step = -1
        self._train_time = 0.0
        self._train_tokens = 0
        self._epoch_t = 0.0

    @property
    def tokens_per_second(self) -> float:
        """Training tokens (all ranks) per second of training-step time, over this process's run."""
        return self._train_tokens / self._train_time if self._train_time > 0 else float("nan")

    def _tokens(self, trainer: L.Trainer, pl_module: L.LightningModule) -> int:
        seen = getattr(pl_module, "tokens_seen", None)
        return int(seen.item()) * trainer.world_size if isinstance(seen, torch.Tensor) else 0

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._t0 = self._t_last = time.perf_counter()
        self._tok0 = self._tok_last = self._tokens(trainer, pl_module)
        self._last_step = trainer.global_step

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._pause = time.perf_counter()

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        paused = time.perf_counter() - getattr(self, "_pause", time.perf_counter())
        self._t_last += paused  # validation time is not training throughput
        self._t0 += paused
        if self.enabled and trainer.is_global_zero:
            vals = {k: v for k, v in scalar_metrics(trainer.callback_metrics).items() if k.startswith("val/")}
            shown = " | ".join(f"{k} {v:.4f}" for k, v in sorted(vals.items()))
            print(f"[validation] step {trainer.global_step} | {shown} | {paused:.1f}s", flush=True)

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        step = trainer.global_step
        if step == self._last_step or step % self.every_n_steps != 0:
            return
        self._last_step = step
        now, tokens = time.perf_counter(), self._tokens(trainer, pl_module)
        rate = (tokens - self._tok_last) / max(now - self._t_last, 1e-9)
        self._train_time, self._train_tokens = now - self._t0, tokens - self._tok0
        self._t_last, self._tok_last = now, tokens
        if not (self.enabled and trainer.is_global_zero):
            return
        loss = outputs.get("loss") if isinstance(outputs, Mapping) else outputs
        loss_s = f"{float(loss.detach()):.4f}" if isinstance(loss, torch.Tensor) else "n/a"
        lr = trainer.optimizers[0].param_groups[0]["lr"] if trainer.optimizers else float("nan")
        total = trainer.max_steps if trainer.max_steps and trainer.max_steps > 0 else "?"
        elapsed = int(now - self._t0)
        print(
            f"step {step}/{total} | epoch {trainer.current_epoch} | loss {loss_s} | lr {lr:.3e} | "
            f"{rate:,.0f} tok/s | {elapsed // 3600:02d}:{elapsed % 3600 // 60:02d}:{elapsed % 60:02d}",
            flush=True,
        )

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        now, tokens = time.perf_counter(), self._tokens(trainer, pl_module)
        if tokens > self._tok0:
            self._train_time, self._train_tokens = now - self._t0, tokens - self._tok0


def plot_curves(history: Mapping[str, list[tuple[int, float]]], path: str | Path) -> Path:
    """Two panels: losses (train and validation) and validation prediction metrics, against step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    losses = {k: v for k, v in history.items() if "/lm/" in k or k == "train/loss"}
    others = {k: v for k, v in history.items() if k not in losses and not k.startswith("train/lr")}
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, series, title in ((axes[0], losses, "loss"), (axes[1], others, "validation metrics")):
        for name, points in sorted(series.items()):
            if points:
                xs, ys = zip(*sorted(points))
                ax.plot(xs, ys, marker="o" if len(xs) < 30 else None, markersize=3, label=name)
        ax.set_xlabel("step")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        if any(series.values()):
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


class CurvePlotter(L.Callback):
    """Records train loss every ``every_n_steps`` and every validation result; writes a PNG when
    training ends. The history is kept in ``history.json`` next to the PNG, so a resumed run plots
    the whole curve (points past the resumed step, from an abandoned trajectory, are dropped)."""

    def __init__(self, path: str | Path, every_n_steps: int = 10) -> None:
        self.path = Path(path)
        self.history_path = self.path.with_name("history.json")
        self.every_n_steps = max(1, int(every_n_steps))
        self.history: dict[str, list[tuple[int, float]]] = {}

    def _add(self, name: str, step: int, value: float) -> None:
        if math.isfinite(value):
            points = self.history.setdefault(name, [])
            points[:] = [p for p in points if p[0] != step] + [(step, value)]

    def _save(self) -> None:
        self.history_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.history_path.with_name("history.json.tmp")
        tmp.write_text(json.dumps(self.history))
        os.replace(tmp, self.history_path)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero or not self.history_path.is_file():
            return
        try:
            saved = json.loads(self.history_path.read_text())
        except json.JSONDecodeError:
            return
        step = trainer.global_step
        self.history = {k: [(int(s), float(v)) for s, v in pts if int(s) <= step] for k, pts in saved.items()}

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        step = trainer.global_step
        if step % self.every_n_steps or not trainer.is_global_zero:
            return
        loss = outputs.get("loss") if isinstance(outputs, Mapping) else outputs
        if isinstance(loss, torch.Tensor):
            self._add("train/loss", step, float(loss.detach()))

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        for name, value in scalar_metrics(trainer.callback_metrics).items():
            if name.startswith("val/"):
                self._add(name, trainer.global_step, value)
        self._save()

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.is_global_zero:
            self._save()
            plot_curves(self.history, self.path)
