"""Checkpoint callbacks of a run: ``last.ckpt`` at the final step, a ``best.ckpt`` that survives resumes,
and the mid-epoch resume of a seeded sampler (exact data order)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities.rank_zero import rank_zero_warn

__all__ = ["LastCheckpoint", "BestCheckpoint", "ResumeDataOrder"]


class LastCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` writing ``last.ckpt`` every ``every_n_train_steps`` and also at the final
    step (``max_steps``), saved at the batch end like the others so a rerun with a larger max_steps
    resumes exactly where this one stopped."""

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        final = trainer.max_steps is not None and 0 < trainer.max_steps <= trainer.global_step
        if final and self.save_last and self._last_global_step_saved != trainer.global_step:
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))


class BestCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` of the best monitored value that survives resumes: ``last.ckpt`` may predate
    the current best file, so on resume the score is read back from the best file itself."""

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_start(trainer, pl_module)
        if self.best_model_path or self.monitor is None or self.dirpath is None or self.filename is None:
            return
        path = Path(self.dirpath) / f"{self.filename}{self.FILE_EXTENSION}"
        if not path.is_file():
            return
        from xlm_core.run.checkpoints import CheckpointError, load_checkpoint

        try:
            ckpt = load_checkpoint(path)
        except CheckpointError as exc:  # a damaged best file: its score is lost, the next validation writes a new one
            rank_zero_warn(f"{exc}; best.ckpt starts over from the next validation")
            return
        state = ckpt.get("callbacks", {}).get(self.state_key)
        if state and state.get("best_model_path"):
            self.load_state_dict(state)


class ResumeDataOrder(L.Callback):
    """On a mid-epoch resume, fast-forwards the training sampler past the batches already trained on,
    so the resumed run sees exactly the batches an uninterrupted run would.

    Works with samplers that offer ``skip_first(n_samples)`` (``SeededRandomSampler``); Lightning alone
    would restart the epoch's data from its first batch.
    """

    def __init__(self) -> None:
        self.skipped_batches = 0

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        loop = trainer.fit_loop
        if not loop.restarting:
            return
        done = int(loop.epoch_loop.batch_progress.current.processed)
        if done <= 0:
            return
        loader = trainer.train_dataloader
        loaders = list(loader.values()) if isinstance(loader, Mapping) else [loader]
        for dl in loaders:
            sampler = getattr(dl, "sampler", None)
            if hasattr(sampler, "skip_first") and getattr(dl, "batch_size", None):
                sampler.skip_first(done * int(dl.batch_size))
                self.skipped_batches = done
            else:
                rank_zero_warn(
                    f"Resuming mid-epoch ({done} batches into the epoch) with a training sampler "
                    f"({type(sampler).__name__}) that cannot skip ahead: this epoch restarts from its first batch, "
                    "so the data order differs from an uninterrupted run."
                )
