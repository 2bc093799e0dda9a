"""Job ``train``: fit the harness, resuming from the run's ``checkpoints/last.ckpt`` when present,
then validate the final weights (if the last validation was earlier), write metrics.json and
print a summary."""

from __future__ import annotations

import json
import math
import time
import warnings
from pathlib import Path
from typing import Any

import lightning as L
from omegaconf import DictConfig, OmegaConf

from xlm_core.callbacks import CurvePlotter, ProgressLogger, ResumeDataOrder, plot_curves, scalar_metrics
from xlm_core.jobs.common import (
    build_datamodule,
    build_harness,
    build_tokenizer,
    build_trainer,
    echo,
    run_dir_of,
    save_run_config,
    set_torch_threads,
    update_metrics_json,
)
from xlm_core.loggers import finish_loggers

__all__ = ["run", "train", "resume_checkpoint", "format_summary", "sample_lines", "log_config"]


def resume_checkpoint(cfg: DictConfig, run_dir: Path) -> Path | None:
    """``checkpoints/last.ckpt`` of this run unless ``resume=false``."""
    if cfg.get("resume", True) is False:
        return None
    last = run_dir / "checkpoints" / "last.ckpt"
    return last if last.is_file() else None


def _fmt(value: float | None, pct: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{100 * value:.2f}%" if pct else f"{value:.4f}"


QUALITY_METRICS = ("exact_match", "token_accuracy", "code_exec_accuracy")


def _quality_lines(metrics: dict[str, float]) -> list[str]:
    """One line per validation quality metric the run reported (any prediction dataloader)."""
    keys = sorted(k for k in metrics if k.startswith("val/prediction/") and k.rsplit("/", 1)[1] in QUALITY_METRICS)
    lines = []
    for key in keys:
        prefix, name = key.rsplit("/", 1)
        counts = ""
        n_total = metrics.get(f"{prefix}/n_total")
        if name == "code_exec_accuracy" and n_total:
            counts = f" ({int(metrics.get(f'{prefix}/n_correct', 0))}/{int(n_total)} programs correct)"
        lines.append(f"  {name.replace('_', ' ')} ({key}): {_fmt(metrics[key], pct=True)}{counts}")
    return lines


def _perplexity_lines(metrics: dict[str, float]) -> list[str]:
    """One line per validation perplexity the run reported (any lm dataloader)."""
    keys = sorted(k for k in metrics if k.startswith("val/lm/") and k.endswith("/perplexity"))
    return [f"  perplexity ({key}): {metrics[key]:.2f}" for key in keys]


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


def format_summary(metrics: dict[str, float], run_dir: Path, tokens_per_second: float | None,
                   log_dir: str | None, plot: Path | None, stop_note: str = "",
                   samples: list[str] | None = None) -> str:
    """The end-of-training report: quality numbers, throughput, samples and where the files are."""
    lines = [
        "=" * 72,
        f"Training finished at step {int(metrics.get('step', 0))}{stop_note}",
        f"  validation loss (val/lm/accumulated_loss): {_fmt(metrics.get('val/lm/accumulated_loss', metrics.get('val/lm/loss')))}",
        *(_perplexity_lines(metrics) + _quality_lines(metrics)
          or ["  prediction metrics: n/a (no prediction dataloader was validated)"]),
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
    lines.extend(samples or [])
    lines.append("=" * 72)
    return "\n".join(lines)


def train(cfg: DictConfig) -> dict[str, float]:
    """Train ``cfg``'s model and return the final metrics (also written to metrics.json)."""
    L.seed_everything(int(cfg.get("seed", 42)), workers=True, verbose=False)
    set_torch_threads(cfg.get("torch_num_threads"))
    run_dir = run_dir_of(cfg)
    save_run_config(cfg, run_dir)
    tokenizer = build_tokenizer(cfg)
    harness = build_harness(cfg, tokenizer)
    datamodule = build_datamodule(cfg, tokenizer, harness.noise_schedule)
    trainer = build_trainer(cfg, training=True)
    if any(isinstance(c, ResumeDataOrder) for c in trainer.callbacks):  # it handles (or warns about) this case
        warnings.filterwarnings("ignore", message=r"You're resuming from a checkpoint that ended before the epoch")
    log_config(trainer.loggers, cfg)
    ckpt = resume_checkpoint(cfg, run_dir)
    if ckpt is not None:
        echo(f"xlm: resuming from {ckpt} (set resume=false or use a new job_name to start over)")
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
    update_metrics_json(run_dir, {k: v for k, v in metrics.items() if not k.startswith("train/lr")})
    log_dir = next((lg.log_dir for lg in trainer.loggers if getattr(lg, "log_dir", None)), None)
    stop_note = ""
    if 0 < trainer.max_steps and trainer.global_step < trainer.max_steps and not trainer.interrupted:
        max_time = OmegaConf.select(cfg, "trainer.max_time")
        stop_note = f" of {trainer.max_steps}" + (f" (stopped by trainer.max_time={max_time})" if max_time else "")
    samples = _last_val_samples(run_dir, trainer.global_step, int(cfg.get("summary_samples") or 0))
    echo(format_summary(metrics, run_dir, tps, log_dir, plot, stop_note, samples))
    finish_loggers(trainer.loggers)
    return metrics


def log_config(loggers: list[Any], cfg: DictConfig) -> None:
    """Give every logger the composed config as its hyperparameters (searchable in W&B / MLflow)."""
    if not loggers:
        return
    try:
        params = OmegaConf.to_container(cfg, resolve=True)
    except Exception:  # interpolations that only resolve inside Hydra's runtime
        params = OmegaConf.to_container(cfg, resolve=False)
    for lg in loggers:
        lg.log_hyperparams(params)


def run(cfg: DictConfig) -> None:
    """Entry point for ``xlm job_type=train``."""
    train(cfg)
