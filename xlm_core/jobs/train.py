"""Job ``train``: fit the harness, resuming from the run's ``checkpoints/last.ckpt`` when present,
then validate the final weights (if the last validation was earlier), write metrics.json and
print a summary."""

from __future__ import annotations

import math
import time
import warnings
from pathlib import Path
from typing import Any

import lightning as L
from omegaconf import DictConfig

from xlm_core.callbacks import CurvePlotter, ProgressLogger, ResumeDataOrder, plot_curves, scalar_metrics
from xlm_core.errors import UsageError
from xlm_core.jobs.common import build_datamodule, build_harness, build_trainer, echo, is_rank_zero
from xlm_core.metrics import logged_metric_names
from xlm_core.run_files import run_dir_of, save_run_config, update_metrics_json
from xlm_core.runtime import build_runtime

__all__ = ["run", "train", "resume_checkpoint", "check_monitor", "format_summary"]


def resume_checkpoint(cfg: DictConfig, run_dir: Path) -> Path | None:
    """``checkpoints/last.ckpt`` of this run unless ``resume=false``."""
    if cfg.get("resume", True) is False:
        return None
    last = run_dir / "checkpoints" / "last.ckpt"
    return last if last.is_file() else None


def check_monitor(cfg: DictConfig, datamodule: Any) -> None:
    """Fail before training when ``monitor`` names a metric that validation will never log."""
    monitor = cfg.get("monitor")
    specs = [(s.name, s.kind) for s in datamodule.dataloader_specs("val")]
    if monitor is None or not specs:
        return
    names = logged_metric_names(cfg.get("reported_metrics"), "val", specs)
    evaluated = cfg.get("post_hoc_evaluator") is not None and str(monitor).startswith("val/prediction/")
    if str(monitor) not in names and not evaluated:
        raise UsageError(
            f"monitor={monitor} is not a metric this run logs at validation (it logs {', '.join(sorted(names))}); "
            "set monitor= to one of them in the experiment or model_type, or monitor=null for no best.ckpt."
        )


def _fmt(value: float | None) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:.4f}"


def format_summary(metrics: dict[str, float], run_dir: Path, tokens_per_second: float | None,
                   log_dir: str | None, plot: Path | None, monitor: str | None = None) -> str:
    """The end-of-training report: the validation metrics, throughput and where the files are."""
    val = {k: v for k, v in sorted(metrics.items()) if k.startswith("val/")}
    lines = ["=" * 72, f"Training finished at step {int(metrics.get('step', 0))}"]
    if monitor:
        lines.append(f"  monitored ({monitor}): {_fmt(metrics.get(monitor))}")
    lines += [f"  {k}: {_fmt(v)}" for k, v in val.items() if k != monitor] or ["  validation: n/a (none ran)"]
    lines += [
        f"  throughput: {tokens_per_second:,.0f} tokens/s" if tokens_per_second and not math.isnan(tokens_per_second)
        else "  throughput: n/a",
        f"  run directory: {run_dir}",
        f"    config:      {run_dir / 'config.yaml'}",
        f"    checkpoints: {run_dir / 'checkpoints'}",
        f"    predictions: {run_dir / 'predictions'}",
        f"    metrics:     {run_dir / 'metrics.json'}" + (f" and {log_dir}" if log_dir else ""),
    ]
    if plot is not None:
        lines.append(f"    curves:      {plot}")
    lines.append("=" * 72)
    return "\n".join(lines)


def train(cfg: DictConfig) -> dict[str, float]:
    """Train ``cfg``'s model and return the final metrics (also written to metrics.json)."""
    L.seed_everything(int(cfg.get("seed", 42)), workers=True, verbose=False)
    run_dir = run_dir_of(cfg)
    runtime = build_runtime(cfg)
    harness = build_harness(cfg, runtime)
    datamodule = build_datamodule(cfg, runtime)
    check_monitor(cfg, datamodule)
    trainer = build_trainer(cfg, training=True)
    if any(isinstance(c, ResumeDataOrder) for c in trainer.callbacks):  # it handles (or warns about) this case
        warnings.filterwarnings("ignore", message=r"You're resuming from a checkpoint that ended before the epoch")
    ckpt = resume_checkpoint(cfg, run_dir)
    if ckpt is not None:
        echo(f"xlm: resuming from {ckpt} (set resume=false or use a new job_name to start over)")
    if is_rank_zero():
        save_run_config(cfg, run_dir)
    started = time.perf_counter()
    trainer.fit(harness, datamodule=datamodule, ckpt_path=str(ckpt) if ckpt else None)
    if trainer.interrupted:
        echo("xlm: training was interrupted; rerun the same command to resume from last.ckpt")
    has_val = bool(datamodule.dataloader_specs("val")) and trainer.limit_val_batches != 0
    if has_val and harness.last_val_step != trainer.global_step:
        trainer.validate(harness, datamodule=datamodule, verbose=False)
    wall = time.perf_counter() - started

    metrics = scalar_metrics(trainer.callback_metrics)
    metrics["step"] = float(trainer.global_step)
    progress = next((c for c in trainer.callbacks if isinstance(c, ProgressLogger)), None)
    tps = progress.tokens_per_second if progress is not None else float("nan")
    if math.isnan(tps) and wall > 0:
        tps = float(harness.tokens_seen.item()) * trainer.world_size / wall
    metrics["tokens_per_second"] = tps
    plotter = next((c for c in trainer.callbacks if isinstance(c, CurvePlotter)), None)
    plot = None
    if plotter is not None and trainer.is_global_zero:
        plot = plot_curves(plotter.history, plotter.path)
    if trainer.is_global_zero:
        update_metrics_json(run_dir, {k: v for k, v in metrics.items() if not k.startswith("train/lr")})
    log_dir = next((lg.log_dir for lg in trainer.loggers if getattr(lg, "log_dir", None)), None)
    echo(format_summary(metrics, run_dir, tps, log_dir, plot, cfg.get("monitor")))
    return metrics


def run(cfg: DictConfig) -> None:
    """Entry point for ``xlm job_type=train``."""
    train(cfg)
