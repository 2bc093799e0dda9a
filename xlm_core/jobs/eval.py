"""Job ``eval``: validate or test a checkpoint (``eval.checkpoint_path``, default the run's
best.ckpt, else last.ckpt) on ``eval.split`` (val | test); predictions and metrics go to the run dir."""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from xlm_core.callbacks import scalar_metrics
from xlm_core.jobs import UsageError
from xlm_core.loggers import finish_loggers
from xlm_core.jobs.common import (
    build_datamodule,
    build_trainer,
    echo,
    load_for_evaluation,
    update_metrics_json,
)

__all__ = ["run", "evaluate", "EVAL_SPLITS"]

EVAL_SPLITS = ("val", "test")


def evaluate(cfg: DictConfig) -> dict[str, float]:
    """Evaluate a checkpoint; return its metrics (also merged into metrics.json)."""
    split = str(OmegaConf.select(cfg, "eval.split", default="val") or "val")
    if split not in EVAL_SPLITS:
        raise UsageError(f"eval.split={split!r}; choose one of {', '.join(EVAL_SPLITS)}.")
    run_dir, ckpt, harness = load_for_evaluation(cfg, "eval.checkpoint_path")
    tokenizer = harness.tokenizer
    datamodule = build_datamodule(cfg, tokenizer, harness.noise_schedule)
    if not datamodule.dataloader_specs(split):
        raise UsageError(f"The datamodule has no {split} dataloaders; pick another eval.split.")
    trainer = build_trainer(cfg, training=False)
    echo(f"xlm: evaluating {ckpt} on {split}")
    fn = trainer.validate if split == "val" else trainer.test
    fn(harness, datamodule=datamodule, ckpt_path=str(ckpt), verbose=False)
    metrics = {k: v for k, v in scalar_metrics(trainer.callback_metrics).items() if k.startswith(f"{split}/")}
    update_metrics_json(run_dir, metrics)
    finish_loggers(trainer.loggers)
    shown = "\n".join(f"  {k}: {v:.4f}" for k, v in sorted(metrics.items()))
    echo(f"xlm: {split} metrics of {ckpt.name} (step {harness.step}):\n{shown}\n"
         f"  predictions: {run_dir / 'predictions' / split}\n  metrics: {run_dir / 'metrics.json'}")
    return metrics


def run(cfg: DictConfig) -> None:
    """Entry point for ``xlm job_type=eval``."""
    evaluate(cfg)
