"""Job ``generate``: sample from a checkpoint, either over the datamodule's predict dataloaders or
over prompts given on the command line (``+prompts=["1 2 3"]`` or ``generate.prompts=[...]``).
Rows are written as JSONL under ``run_dir/predictions``; no autograd anywhere."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import hydra
import torch
from omegaconf import DictConfig, OmegaConf

from xlm_core.harness import predictions_path, write_jsonl
from xlm_core.jobs import UsageError
from xlm_core.jobs.common import (
    build_datamodule,
    build_trainer,
    echo,
    is_rank_zero,
    load_for_evaluation,
)
from xlm_core.precision import autocast_for, resolve_precision

__all__ = ["run", "generate", "generate_from_prompts", "prompts_of"]

PROMPTS_DATALOADER = "prompts"


def prompts_of(cfg: DictConfig) -> list[str]:
    """Prompts from ``prompts`` or ``generate.prompts`` (a string or a list of strings)."""
    value = cfg.get("prompts")
    if value is None:
        value = OmegaConf.select(cfg, "generate.prompts")
    if value is None:
        return []
    if OmegaConf.is_config(value):
        value = OmegaConf.to_container(value, resolve=True)
    if isinstance(value, (str, int, float)):
        value = [value]
    return [str(v) for v in value]


def _prompt_collator(cfg: DictConfig, datamodule: Any, tokenizer: Any, noise_schedule: Any) -> Any:
    """The collator that turns prompts into generation batches: the datamodule's prediction collator."""
    if datamodule is not None and hasattr(datamodule, "dataloader_specs"):
        for stage in ("predict", "val", "test"):
            for spec in datamodule.dataloader_specs(stage):
                if spec.kind == "prediction":
                    return datamodule.collator(stage, spec.name)
    ccfg = OmegaConf.select(cfg, "collator.prediction")
    if ccfg is None:
        raise UsageError("No prediction collator (datamodule prediction dataloader or collator.prediction) to turn "
                         "prompts into a batch.")
    return hydra.utils.instantiate(ccfg, tokenizer=tokenizer, noise_schedule=noise_schedule)


def _device(cfg: DictConfig) -> torch.device:
    accelerator = str(OmegaConf.select(cfg, "trainer.accelerator", default="auto") or "auto")
    if accelerator in ("gpu", "cuda", "auto") and torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


def generate_from_prompts(cfg: DictConfig, harness: Any, collator: Any, prompts: Sequence[str],
                          batch_size: int) -> list[dict[str, Any]]:
    """Generate a continuation for each prompt with ``harness``'s predictor; one row per prompt.

    Runs under the autocast of the resolved ``trainer.precision``, as the Trainer's predict loop does.
    """
    tokenizer = harness.tokenizer
    device = _device(cfg)
    harness.to(device).eval()
    precision = resolve_precision(OmegaConf.select(cfg, "trainer.precision"), device.type)
    rows: list[dict[str, Any]] = []
    with torch.inference_mode(), autocast_for(precision, device.type):
        for start in range(0, len(prompts), batch_size):
            chunk = list(prompts[start : start + batch_size])
            examples = [{"prompt_ids": list(tokenizer.encode(p, add_special_tokens=False)), "input_ids": []}
                        for p in chunk]
            batch = collator(examples)
            batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
            batch.pop("target_ids", None)  # there is no reference for free prompts
            preds = harness.predictor.predict(batch, start // batch_size, 0, PROMPTS_DATALOADER)
            for prompt, row in zip(chunk, harness.predictor.to_dict(batch, preds, start // batch_size, 0,
                                                                    PROMPTS_DATALOADER)):
                row.pop("target", None)
                row["prompt"] = prompt
                rows.append(row)
    return rows


def generate(cfg: DictConfig) -> list[Path]:
    """Run generation; return the JSONL files written."""
    run_dir, ckpt, harness = load_for_evaluation(cfg, "generate.checkpoint_path")
    tokenizer = harness.tokenizer
    if harness.predictor is None:
        raise UsageError("The config has no predictor; pick a model_type that defines one.")
    datamodule = build_datamodule(cfg, tokenizer, harness.noise_schedule) if cfg.get("datamodule") is not None else None
    prompts = prompts_of(cfg)
    if prompts:
        harness.load_weights(ckpt)
        harness._swap_ema()
        batch_size = int(OmegaConf.select(cfg, "generate.batch_size", default=None) or cfg.get("per_device_batch_size")
                         or len(prompts))
        collator = _prompt_collator(cfg, datamodule, tokenizer, harness.noise_schedule)
        rows = generate_from_prompts(cfg, harness, collator, prompts, batch_size)
        path = predictions_path(run_dir, "generate", PROMPTS_DATALOADER, harness.step)
        if is_rank_zero():
            write_jsonl(path, rows)
        shown = "\n".join(f"  {r['prompt']!r} -> {r['text']!r}" for r in rows[:20])
        echo(f"xlm: generated {len(rows)} continuation(s) with {ckpt}:\n{shown}\n  written to {path}")
        return [path]
    if datamodule is None or not datamodule.dataloader_specs("predict"):
        raise UsageError("Nothing to generate from: give prompts (+prompts='[\"...\"]' or generate.prompts=[...]) or "
                         "use an experiment whose datamodule has predict dataloaders.")
    trainer = build_trainer(cfg, training=False, logger=False)
    trainer.predict(harness, datamodule=datamodule, ckpt_path=str(ckpt), return_predictions=False)
    paths = [predictions_path(run_dir, "predict", spec.name, harness.step)
             for spec in datamodule.dataloader_specs("predict")]
    echo(f"xlm: generated with {ckpt}; predictions in:\n" + "\n".join(f"  {p}" for p in paths))
    return paths


def run(cfg: DictConfig) -> None:
    """Entry point for ``xlm job_type=generate``."""
    generate(cfg)
