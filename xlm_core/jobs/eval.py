"""Job ``eval``: validate or test a checkpoint (``eval.checkpoint_path``, default the run's
best.ckpt, else last.ckpt) on ``eval.split`` (val | test).

Every evaluation writes into a directory of its own, ``<run_dir>/eval/<time>-<split>-step<N>/``
(``metrics.json``, ``config.yaml``, ``predictions/``), so it never overwrites training's files or an
earlier evaluation's."""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from xlm_core.errors import UsageError
from xlm_core.jobs.common import build_datamodule, build_trainer, echo, is_rank_zero, load_for_evaluation
from xlm_core.run.files import job_output_dir, removed_on_failure, save_run_config, scalar_metrics, update_metrics_json
from xlm_core.training.loggers import finish_loggers

__all__ = ["run", "evaluate", "EVAL_SPLITS"]

EVAL_SPLITS = ("val", "test")


def evaluate(cfg: DictConfig) -> dict[str, float]:
    """Evaluate a checkpoint; return its metrics (also written to the evaluation's metrics.json)."""
    split = str(OmegaConf.select(cfg, "eval.split", default="val") or "val")
    if split not in EVAL_SPLITS:
        raise UsageError(f"eval.split={split!r}; choose one of {', '.join(EVAL_SPLITS)}.")
    ev = load_for_evaluation(cfg, "eval.checkpoint_path")
    ckpt, harness = ev.checkpoint, ev.harness
    datamodule = build_datamodule(cfg, ev.runtime)
    if not datamodule.dataloader_specs(split):
        raise UsageError(f"The datamodule has no {split} dataloaders; pick another eval.split.")
    trainer = build_trainer(cfg, ev.settings, training=False)
    out = job_output_dir(ev.run_dir, "eval", f"{split}-step{ev.step}", create=is_rank_zero())
    with removed_on_failure(out):
        harness.output_dir = out
        if is_rank_zero():
            save_run_config(cfg, out)
        echo(f"xlm: evaluating {ckpt} on {split}")
        fn = trainer.validate if split == "val" else trainer.test
        fn(harness, datamodule=datamodule, ckpt_path=str(ckpt), verbose=False, weights_only=True)
        metrics = {k: v for k, v in scalar_metrics(trainer.callback_metrics).items() if k.startswith(f"{split}/")}
        if is_rank_zero():
            update_metrics_json(out, {**metrics, "step": ev.step, "checkpoint": str(ckpt)})
    finish_loggers(trainer.loggers)
    shown = "\n".join(f"  {k}: {v:.4f}" for k, v in sorted(metrics.items()))
    echo(
        f"xlm: {split} metrics of {ckpt.name} (step {ev.step}):\n{shown}\n"
        f"  predictions: {out / 'predictions' / split}\n  metrics: {out / 'metrics.json'}"
    )
    return metrics


def run(cfg: DictConfig) -> None:
    """Entry point for ``xlm job_type=eval``."""
    evaluate(cfg)
