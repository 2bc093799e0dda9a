"""Callbacks that keep a run directory truthful: the last step is validated inside ``fit`` (so
best.ckpt sees it), metrics.json follows every validation, the config is written once the run has
started (one file per start, never overwritten), and Ctrl-C or SIGTERM stops at a step boundary with a
checkpoint."""

from __future__ import annotations

import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

import lightning as L
import torch
from omegaconf import DictConfig

from xlm_core.run.files import save_run_config, scalar_metrics, update_metrics_json

__all__ = ["FinalValidation", "ValidationMetricsFile", "RunConfigWriter", "GracefulInterrupt", "TrainingInterrupted"]


class FinalValidation(L.Callback):
    """Ask Lightning to stop at ``max_steps`` so that it validates the final weights inside ``fit``.

    Without it a run whose ``max_steps`` is not a multiple of the validation interval ends unvalidated,
    and a validation run afterwards never reaches the checkpoint callbacks (best.ckpt goes stale).
    """

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if trainer.max_steps is not None and 0 < trainer.max_steps <= trainer.global_step:
            trainer.should_stop = True


class ValidationMetricsFile(L.Callback):
    """Merge every validation's metrics (and its step) into ``run_dir/metrics.json`` as soon as it ends."""

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero or trainer.state.fn != "fit":
            return
        metrics = {k: v for k, v in scalar_metrics(trainer.callback_metrics).items() if k.startswith("val/")}
        update_metrics_json(self.run_dir, {**metrics, "step": float(trainer.global_step)})


class RunConfigWriter(L.Callback):
    """Write the config when training actually starts: ``config.yaml`` the first time, then one
    ``config.<kind>-step<N>-<time>.yaml`` per later start (a resume), so no start overwrites another's."""

    def __init__(self, cfg: DictConfig, run_dir: str | Path) -> None:
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.written: Path | None = None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        name = "config.yaml"
        if (self.run_dir / name).exists():
            kind = "resume" if trainer.global_step > 0 else "restart"
            name = f"config.{kind}-step{trainer.global_step}-{time.strftime('%Y%m%d-%H%M%S')}.yaml"
        self.written = save_run_config(self.cfg, self.run_dir, name)


class TrainingInterrupted(Exception):
    """Raised at a step boundary after Ctrl-C or SIGTERM, once the checkpoint of that step is saved."""

    def __init__(self, step: int, checkpoint: Path, signum: int = signal.SIGINT) -> None:
        super().__init__(f"training interrupted at step {step}; checkpoint saved to {checkpoint}")
        self.step = step
        self.checkpoint = checkpoint
        self.signum = signum


_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class GracefulInterrupt(L.Callback):
    """First Ctrl-C or SIGTERM (what ``timeout``, ``docker stop``, Kubernetes and SLURM send): finish the
    current optimizer step, save ``checkpoint`` and stop, raising :class:`TrainingInterrupted`; a second
    signal stops at once.

    The stop is decided at optimizer-step boundaries by all ranks together (one all-reduce), so under
    DDP every rank stops at the same step whichever rank got the signal. While training runs this takes
    SIGTERM over from Lightning, whose own handler (2.6) lets the batch end (also in the middle of gradient
    accumulation) and exits with status 0 without a checkpoint.
    """

    def __init__(self, checkpoint: str | Path, notify: Callable[[str], None] | None = None) -> None:
        self.checkpoint = Path(checkpoint)
        self.requested = False
        self.signum: int = signal.SIGINT
        self._previous: dict[int, Any] = {}
        self._seen_step = -1
        self._notify = notify or (lambda message: print(message, file=sys.stderr, flush=True))

    def _handler(self, signum: int, frame: FrameType | None) -> None:
        if self.requested:  # a second signal
            self._restore()
            raise KeyboardInterrupt
        self.requested = True
        self.signum = signum
        name = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
        self._notify(f"xlm: {name}: stopping after this step and saving a checkpoint ({name} again to stop at once)")

    def _restore(self) -> None:
        if threading.current_thread() is threading.main_thread():
            for signum, handler in self._previous.items():
                signal.signal(signum, handler)
        self._previous = {}

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._seen_step = trainer.global_step
        if threading.current_thread() is threading.main_thread():
            self._previous = {signum: signal.signal(signum, self._handler) for signum in _STOP_SIGNALS}

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        stepped, self._seen_step = trainer.global_step != self._seen_step, trainer.global_step
        if not stepped:  # mid gradient-accumulation: stop only where an optimizer step just ended
            return
        if not trainer.strategy.reduce_boolean_decision(self.requested, all=False):
            return
        mine = torch.tensor(float(self.signum if self.requested else 0), device=trainer.strategy.root_device)
        signum = int(trainer.strategy.reduce(mine, reduce_op="max").item())  # the signal some rank got
        trainer.save_checkpoint(str(self.checkpoint), weights_only=False)  # the whole training state
        self._restore()
        raise TrainingInterrupted(trainer.global_step, self.checkpoint, signum)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._restore()

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self._restore()
