"""The settings of one job, resolved once from the config and passed down.

Precision (``trainer.precision=auto`` resolved for this machine), the device type, what autocast
computes in, gradient clipping, the monitored metric and the command that resumes the run: the job
builds one :class:`RunSettings` and hands it to the harness, the Trainer and the summary, so no part
re-derives them from strings.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from omegaconf import DictConfig, OmegaConf

from xlm_core.run.files import run_dir_of
from xlm_core.run.invocation import recorded_invocation
from xlm_core.training.precision import accelerator_type, precision_note, resolve_precision

__all__ = ["Monitor", "RunSettings", "run_settings", "lightning_precision"]

# Lightning's short spellings of a precision, as the names Trainer.precision reports.
_LIGHTNING_PRECISION = {"32": "32-true", "64": "64-true", "16": "16-mixed", "bf16": "bf16-mixed"}
_AUTOCAST = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}


def lightning_precision(value: Any) -> str:
    """``trainer.precision`` as Lightning names it (``32`` -> ``32-true``, ``bf16`` -> ``bf16-mixed``)."""
    text = str(value)
    return _LIGHTNING_PRECISION.get(text, text)


@dataclass(frozen=True)
class Monitor:
    """The validation metric ``best.ckpt`` tracks, and whether lower or higher is better."""

    metric: str
    mode: Literal["min", "max"] = "min"


@dataclass(frozen=True)
class RunSettings:
    """What one job runs with, resolved once (see the module docstring)."""

    run_dir: Path
    device_type: str
    precision_requested: str
    precision: str
    gradient_clip_val: float | None = None
    monitor: Monitor | None = None
    resume_command: str = "the same xlm command"

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        """The dtype autocast computes matmuls in under this precision (None: no autocast)."""
        return _AUTOCAST.get(self.precision)

    @property
    def amp_clipping(self) -> str | None:
        """The settings under which Lightning clips AMP-scaled gradients (they rule out a fused AdamW), or None."""
        if self.precision.endswith("-mixed") and self.gradient_clip_val:
            return f"trainer.precision={self.precision} with trainer.gradient_clip_val={self.gradient_clip_val}"
        return None

    @property
    def precision_note(self) -> str:
        """One line for summaries: the precision in use and, for ``auto``, why."""
        return precision_note(self.precision_requested, self.precision, self.device_type)


def run_settings(cfg: DictConfig) -> RunSettings:
    """Resolve the settings of ``cfg`` for this machine."""
    trainer = cfg.get("trainer") or {}
    accelerator = trainer.get("accelerator")
    requested = trainer.get("precision")
    requested = "32-true" if requested is None else requested
    clip = trainer.get("gradient_clip_val")
    metric = cfg.get("monitor")
    mode = OmegaConf.select(cfg, "monitor_mode", default="min") or "min"
    return RunSettings(
        run_dir=run_dir_of(cfg),
        device_type=accelerator_type(accelerator),
        precision_requested=str(requested),
        precision=lightning_precision(resolve_precision(requested, accelerator)),
        gradient_clip_val=float(clip) if clip else None,
        monitor=Monitor(str(metric), mode) if metric else None,
        resume_command=recorded_invocation() or "the same xlm command",
    )
