"""Job ``train``: fit the harness, resuming the run when it has checkpoints, and print a summary.

A run directory has one owner: the job holds its lock (``xlm_core.run.lock``) from start to end.
An existing run is resumed from ``last.ckpt`` (or, if that file is damaged, the newest intact
checkpoint) after checking that the model, tokenizer, optimizer and schedule are the ones it was
trained with; ``resume=false`` on an existing run is refused unless ``overwrite=true``, which moves the
old run aside. The final step is validated inside ``fit``, so best.ckpt and metrics.json see it."""

from __future__ import annotations

import json
import math
import signal
import time
import warnings
from pathlib import Path
from typing import Any

import lightning as L
from omegaconf import DictConfig, OmegaConf

from xlm_core.config.checks import validate_run_config
from xlm_core.config.tools import to_plain_best_effort
from xlm_core.errors import JobStopped, UsageError
from xlm_core.jobs.common import (
    build_datamodule,
    build_harness,
    build_trainer,
    check_against_checkpoint,
    echo,
    is_rank_zero,
    run_checkpoints,
)
from xlm_core.run.callbacks import TrainingInterrupted
from xlm_core.run.checkpoint_callbacks import ResumeDataOrder
from xlm_core.run.checkpoints import checkpoint_config, checkpoint_step, newest_intact, verify_checkpoint
from xlm_core.run.fileio import unused_path
from xlm_core.run.files import run_dir_of, scalar_metrics, update_metrics_json
from xlm_core.run.lock import RunLock
from xlm_core.run.resume import (
    ApplyOptimizerSettings,
    check_monitor_unchanged,
    data_order_notes,
    optimizer_changes,
    warmup_note,
)
from xlm_core.training.callbacks import CurvePlotter, ProgressLogger, plot_curves
from xlm_core.training.loggers import finish_loggers
from xlm_core.training.reported_metrics import logged_metric_names
from xlm_core.training.runtime import build_runtime
from xlm_core.training.settings import RunSettings, run_settings

__all__ = [
    "run",
    "train",
    "resume_checkpoint",
    "move_aside",
    "check_monitor",
    "format_summary",
    "sample_lines",
    "log_config",
]


def move_aside(run_dir: Path) -> Path:
    """Rename ``run_dir`` to ``<name>.replaced-<time>`` beside it (nothing is deleted); return the new path."""
    aside = unused_path(
        run_dir.with_name(f"{run_dir.name}.replaced-{time.strftime('%Y%m%d-%H%M%S')}"), keep_suffix=False
    )
    run_dir.rename(aside)
    return aside


def resume_checkpoint(cfg: DictConfig, run_dir: Path) -> Path | None:
    """The checkpoint this run continues from: ``resume_from`` when set, else ``last.ckpt``, else (damaged or
    missing) the newest intact one.

    None for a new run. On an existing run, ``resume=false`` is an error unless ``overwrite=true``
    (then the old run is moved aside by the caller, see :func:`move_aside`).
    """
    explicit = cfg.get("resume_from")
    if explicit:  # e.g. the last finite checkpoint the NaN guard named
        if cfg.get("resume", True) is False:
            raise UsageError(f"resume_from={explicit} continues a run from that checkpoint; remove resume=false")
        path = Path(str(explicit)).expanduser()
        verify_checkpoint(path)
        return path
    existing = run_checkpoints(run_dir)
    if not existing:
        return None
    if cfg.get("resume", True) is False:
        if cfg.get("overwrite", False):
            return None
        last = max(existing, key=lambda p: p.stat().st_mtime)
        raise UsageError(
            f"{run_dir} already holds a run ({len(existing)} checkpoint(s), newest {last.name}); resume=false would "
            f"start it over: use a new job_name=..., or add overwrite=true to move the old run aside to "
            f"{run_dir.name}.replaced-<time> (nothing is deleted)"
        )
    last = run_dir / "checkpoints" / "last.ckpt"
    path, notes = newest_intact(existing, last if last.exists() else None)
    for note in notes:
        echo(f"xlm: warning: {note}")
    return path


def _check_resume(cfg: DictConfig, ckpt: Path, settings: RunSettings) -> tuple[Path, list[L.Callback]]:
    """Resume only with the model, tokenizer, optimizer, schedule and monitored metric the checkpoint was trained
    with (``allow_config_mismatch=true``: with the new settings, applied); note what changes the data order.

    Returns the checkpoint (moved when it was the ``best.ckpt`` set aside) and the callbacks the resume needs.
    """
    check_against_checkpoint(cfg, ckpt, ("model", "tokenizer"), "resume from it")
    check_against_checkpoint(cfg, ckpt, ("optimizer", "lr_scheduler"), "resume with the new optimizer settings")
    stored = checkpoint_config(ckpt) or {}
    callbacks: list[L.Callback] = []
    changes = optimizer_changes(cfg, stored)
    if changes and cfg.get("allow_config_mismatch", False):
        callbacks.append(ApplyOptimizerSettings(changes))
        echo(
            "xlm: note: allow_config_mismatch=true: the new optimizer / schedule settings are applied to the resumed "
            "optimizer (its moment estimates stay the checkpoint's); config.resume-*.yaml and new checkpoints record them"
        )
    if is_rank_zero():
        aside = check_monitor_unchanged(cfg, stored, settings)
        if aside is not None:
            echo(f"xlm: note: monitor changed: the previous best.ckpt (by {stored.get('monitor')}) is kept as {aside}")
            ckpt = aside if ckpt == aside.with_name("best.ckpt") else ckpt
    elif not cfg.get("allow_config_mismatch", False):  # the same refusal on every rank; only rank 0 moves files
        check_monitor_unchanged(cfg, stored, settings)
    for note in data_order_notes(cfg, stored):
        echo(f"xlm: note: {note}")
    old_steps = (stored.get("trainer") or {}).get("max_steps")
    new_steps = cfg.trainer.get("max_steps")
    if old_steps is not None and old_steps != new_steps:
        schedule = (
            "; the learning-rate schedule now runs to step " + str(new_steps)
            if (cfg.get("lr_scheduler") or {}).get("num_training_steps") is None
            else ""
        )
        echo(f"xlm: note: trainer.max_steps changed from {old_steps} to {new_steps}{schedule}")
    return ckpt, callbacks


def check_monitor(cfg: DictConfig, datamodule: Any, settings: RunSettings) -> None:
    """Fail before training when the monitored metric is one that validation will never log."""
    specs = [(s.name, s.kind) for s in datamodule.dataloader_specs("val")]
    if settings.monitor is None or not specs:
        return
    monitor = settings.monitor.metric
    names = logged_metric_names(cfg.get("reported_metrics"), "val", specs)
    evaluated = cfg.get("post_hoc_evaluator") is not None and monitor.startswith("val/prediction/")
    if monitor not in names and not evaluated:
        raise UsageError(
            f"monitor={monitor} is not a metric this run logs at validation (it logs {', '.join(sorted(names))}); "
            "set monitor= to one of them in the experiment or model_type, or monitor=null for no best.ckpt."
        )


def _fmt(value: float | None) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:.4f}"


def sample_lines(rows: list[dict[str, Any]], limit: int, width: int = 400) -> list[str]:
    """The first ``limit`` generated rows (prompt + text), each cut to ``width`` characters."""
    lines = []
    for i, row in enumerate(rows[:limit]):
        text = str(row.get("prompt") or "") + str(row.get("text") or "")
        cut = text if len(text) <= width else text[:width] + " [...]"
        lines.append(f"  --- sample {i + 1} (prompt {str(row.get('prompt') or '')!r}) ---")
        lines.extend(f"  | {line}" for line in cut.splitlines() or [""])
    return lines


def _last_val_samples(run_dir: Path, step: int, limit: int) -> list[str]:
    """Rows generated at the last validation (predictions/val/<loader>/step_<step>.jsonl)."""
    if limit <= 0:
        return []
    for path in sorted((run_dir / "predictions" / "val").glob(f"*/step_{step}.jsonl")):
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        if rows and "text" in rows[0]:
            return [f"  samples ({path}):", *sample_lines(rows, limit)]
    return []


def log_config(loggers: list[Any], cfg: DictConfig) -> None:
    """Give every logger the composed config as its hyperparameters (searchable in W&B / MLflow)."""
    params = to_plain_best_effort(cfg)
    for lg in loggers:
        lg.log_hyperparams(params)


def format_summary(
    metrics: dict[str, float],
    run_dir: Path,
    tokens_per_second: float | None,
    log_dir: str | None,
    plot: Path | None,
    monitor: str | None = None,
    stop_note: str = "",
    samples: list[str] | None = None,
    precision: str | None = None,
) -> str:
    """The end-of-training report: the validation metrics, throughput, precision, samples and where the files are."""
    val = {k: v for k, v in sorted(metrics.items()) if k.startswith("val/")}
    lines = ["=" * 72, f"Training finished at step {int(metrics.get('step', 0))}{stop_note}"]
    if monitor:
        lines.append(f"  monitored ({monitor}): {_fmt(metrics.get(monitor))}")
    lines += [f"  {k}: {_fmt(v)}" for k, v in val.items() if k != monitor] or ["  validation: n/a (none ran)"]
    lines += [
        f"  throughput: {tokens_per_second:,.0f} tokens/s"
        if tokens_per_second and not math.isnan(tokens_per_second)
        else "  throughput: n/a",
        *([f"  precision: {precision}"] if precision else []),
        f"  run directory: {run_dir}",
        f"    config:      {run_dir / 'config.yaml'}",
        f"    checkpoints: {run_dir / 'checkpoints'}",
        f"    predictions: {run_dir / 'predictions'}",
        f"    metrics:     {run_dir / 'metrics.json'}" + (f" and {log_dir}" if log_dir else ""),
    ]
    if plot is not None:
        lines.append(f"    curves:      {plot}")
    lines.extend(samples or [])
    lines.append("=" * 72)
    return "\n".join(lines)


def train(cfg: DictConfig) -> dict[str, float]:
    """Train ``cfg``'s model and return the final metrics (also written to metrics.json)."""
    validate_run_config(cfg, training=True)
    run_dir = run_dir_of(cfg)
    if not is_rank_zero():
        return _train(cfg, run_dir)
    with RunLock(run_dir, "train") as lock:
        if run_checkpoints(run_dir) and cfg.get("resume", True) is False and cfg.get("overwrite", False):
            lock.release()
            aside = move_aside(run_dir)
            lock.acquire()
            echo(f"xlm: overwrite=true: the previous run was moved to {aside}")
        return _train(cfg, run_dir)


def _train(cfg: DictConfig, run_dir: Path) -> dict[str, float]:
    L.seed_everything(int(cfg.get("seed", 42)), workers=True, verbose=False)
    ckpt = resume_checkpoint(cfg, run_dir)
    settings = run_settings(cfg)
    resume_callbacks: list[L.Callback] = []
    if ckpt is not None:
        ckpt, resume_callbacks = _check_resume(cfg, ckpt, settings)
    note = warmup_note(cfg, cfg.trainer.get("max_steps"))
    if note:
        echo(f"xlm: note: {note}")
    runtime = build_runtime(cfg)
    harness = build_harness(cfg, runtime, settings)
    datamodule = build_datamodule(cfg, runtime)
    check_monitor(cfg, datamodule, settings)
    trainer = build_trainer(cfg, settings, training=True)
    trainer.callbacks.extend(resume_callbacks)
    if any(isinstance(c, ResumeDataOrder) for c in trainer.callbacks):  # it handles (or warns about) this case
        warnings.filterwarnings("ignore", message=r"You're resuming from a checkpoint that ended before the epoch")
    warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")  # a resumed run
    log_config(trainer.loggers, cfg)
    if ckpt is not None:
        echo(f"xlm: resuming from {ckpt} (step {checkpoint_step(ckpt)}; a new job_name starts a new run)")
    started = time.perf_counter()
    try:
        trainer.fit(harness, datamodule=datamodule, ckpt_path=str(ckpt) if ckpt else None, weights_only=True)
    except TrainingInterrupted as stop:
        by = "" if stop.signum == signal.SIGINT else f"{signal.Signals(stop.signum).name}: "
        raise JobStopped(
            f"{by}training stopped at step {stop.step}; checkpoint saved to {stop.checkpoint}. "
            f"Resume with: {settings.resume_command}",
            exit_code=128 + stop.signum,
            quiet=not is_rank_zero(),
        ) from None
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
    stop_note = ""
    if 0 < trainer.max_steps and trainer.global_step < trainer.max_steps:
        max_time = OmegaConf.select(cfg, "trainer.max_time")
        stop_note = f" of {trainer.max_steps}" + (f" (stopped by trainer.max_time={max_time})" if max_time else "")
    samples = _last_val_samples(run_dir, trainer.global_step, int(cfg.get("summary_samples") or 0))
    monitor = settings.monitor.metric if settings.monitor else None
    echo(format_summary(metrics, run_dir, tps, log_dir, plot, monitor, stop_note, samples, settings.precision_note))
    finish_loggers(trainer.loggers)
    return metrics


def run(cfg: DictConfig) -> None:
    """Entry point for ``xlm job_type=train``."""
    train(cfg)
