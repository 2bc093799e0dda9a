"""Job ``generate``: sample from a checkpoint, either over the datamodule's predict dataloaders or over
prompts given on the command line (``+prompts=["1 2 3"]`` or ``generate.prompts=[...]``).

Prompts become a dataset of ``{prompt_ids, input_ids: []}`` rows fed through the family's prediction
collator and ``Trainer.predict``, exactly like a predict dataloader (same precision, same predictor,
same prediction files); each row's generated text is printed by ``PREDICTION_TEXT_KEY``.

Every generation writes into a directory of its own, ``<run_dir>/generate/<time>-step<N>/``
(``config.yaml``, ``predictions/predict/<dataloader>/step_<N>.jsonl``)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from xlm_core.config.tools import to_plain
from xlm_core.errors import UsageError
from xlm_core.jobs.common import build_datamodule, build_trainer, echo, is_rank_zero, load_for_evaluation
from xlm_core.plugin.protocols import PREDICTION_TEXT_KEY, Tokenizer
from xlm_core.run.files import job_output_dir, predictions_path, removed_on_failure, save_run_config

__all__ = ["run", "generate", "prompts_of", "prompt_rows", "identity_rows", "PROMPTS_DATALOADER"]

PROMPTS_DATALOADER = "prompts"
_SEARCHED_STAGES = ("predict", "val", "test")


def prompts_of(cfg: DictConfig) -> list[str]:
    """Prompts from ``prompts`` or ``generate.prompts`` (a string or a list of strings)."""
    value = cfg.get("prompts")
    if value is None:
        value = OmegaConf.select(cfg, "generate.prompts")
    if value is None:
        return []
    value = to_plain(value)
    if isinstance(value, (str, int, float)):
        value = [value]
    return [str(v) for v in value]


def prompt_rows(prompts: Sequence[str], tokenizer: Tokenizer) -> list[dict[str, Any]]:
    """One seq2seq dataset row per prompt (no target); words the tokenizer does not know and special tokens
    typed into a prompt are errors."""
    unk = getattr(tokenizer, "unk_token_id", None)
    rows = []
    for text in prompts:
        ids = list(tokenizer.encode(text, add_special_tokens=False))
        if unk is not None and unk in ids:
            unknown = sorted({w for w in str(text).split() if unk in tokenizer.encode(w, add_special_tokens=False)})
            raise UsageError(
                f"prompt {text!r} has words the tokenizer does not know: {', '.join(unknown) or '?'}; "
                "use words of the experiment's vocabulary."
            )
        special = _special_tokens_in(ids, tokenizer)
        if special:
            raise UsageError(
                f"prompt {text!r} contains the special token(s) {', '.join(special)}, which the tokenizer "
                "reserves (the collator adds BOS/EOS/padding itself); give the prompt as plain text "
                "without them."
            )
        rows.append({"prompt_ids": ids, "input_ids": [], "prompt": str(text)})
    return rows


def _special_tokens_in(ids: Sequence[int], tokenizer: Tokenizer) -> list[str]:
    """The special tokens (other than unknown words) among ``ids``: a prompt row would carry them to the model
    while its decoded text, the saved prompt, shows them removed."""
    special = set(getattr(tokenizer, "all_special_ids", None) or []) - {getattr(tokenizer, "unk_token_id", None)}
    found = [i for i in dict.fromkeys(ids) if i in special]
    return [str(tokenizer.convert_ids_to_tokens(i)) for i in found]


def identity_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Dataset generator source that returns the rows it is given (the prompts dataset)."""
    return rows


def _prediction_collator_cfg(cfg: DictConfig) -> Any:
    """The collator config of the datamodule's first prediction dataloader, else ``collator.prediction``."""
    loaders = OmegaConf.select(cfg, "datamodule.dataloaders") or {}
    for stage in _SEARCHED_STAGES:
        for spec in (loaders.get(stage) or {}).values():
            if spec is not None and spec.get("kind") == "prediction" and spec.get("collator") is not None:
                return spec.collator
    collator = OmegaConf.select(cfg, "collator.prediction")
    if collator is None:
        raise UsageError(
            "No prediction collator (a datamodule dataloader of kind 'prediction' or "
            "collator.prediction) to turn prompts into a batch; pick an experiment that has one."
        )
    return collator


def _prompts_datamodule_cfg(cfg: DictConfig, rows: list[dict[str, Any]]) -> DictConfig:
    """The run's datamodule config with a single predict dataloader over the prompt rows."""
    base = to_plain(cfg.get("datamodule")) or {
        "_target_": "xlm_core.data.datamodule.XLMDataModule",
        "cache_dir": str(OmegaConf.select(cfg, "paths.cache_dir")),
    }
    batch_size = OmegaConf.select(cfg, "generate.batch_size") or cfg.get("per_device_batch_size") or len(rows)
    base["eval_batch_size"] = int(batch_size)
    base["dataloaders"] = {
        "predict": {
            PROMPTS_DATALOADER: {
                "kind": "prediction",
                "dataset": {
                    "name": PROMPTS_DATALOADER,
                    "generator": f"{__name__}.identity_rows",
                    "generator_kwargs": {"rows": rows},
                    "use_cache": False,
                },
                "collator": to_plain(_prediction_collator_cfg(cfg)),
            }
        }
    }
    return OmegaConf.create(base)


def _show(rows: list[dict[str, Any]], limit: int = 20) -> str:
    shown = [f"  {r.get('prompt', '')!r} -> {r.get(PREDICTION_TEXT_KEY)!r}" for r in rows[:limit]]
    if len(rows) > limit:
        shown.append(f"  ... ({len(rows) - limit} more)")
    return "\n".join(shown)


def generate(cfg: DictConfig) -> list[Path]:
    """Run generation; return the JSONL files written."""
    ev = load_for_evaluation(cfg, "generate.checkpoint_path")
    if ev.harness.predictor is None:
        raise UsageError("The config has no predictor; pick a model_type that defines one.")
    prompts = prompts_of(cfg)
    if prompts:
        dm_cfg = _prompts_datamodule_cfg(cfg, prompt_rows(prompts, ev.runtime.tokenizer))
        datamodule = build_datamodule(cfg, ev.runtime, dm_cfg)
    else:
        datamodule = build_datamodule(cfg, ev.runtime) if cfg.get("datamodule") is not None else None
        if datamodule is None or not datamodule.dataloader_specs("predict"):
            raise UsageError(
                "Nothing to generate from: give prompts (+prompts='[\"...\"]' or generate.prompts=[...]) "
                "or use an experiment whose datamodule has predict dataloaders."
            )
    trainer = build_trainer(cfg, ev.settings, training=False, logger=False)
    out = job_output_dir(ev.run_dir, "generate", f"step{ev.step}", create=is_rank_zero())
    with removed_on_failure(out):
        ev.harness.output_dir = out
        if is_rank_zero():
            save_run_config(cfg, out)
        outputs = trainer.predict(
            ev.harness, datamodule=datamodule, ckpt_path=str(ev.checkpoint), return_predictions=True, weights_only=True
        )
    paths = [predictions_path(out, "predict", spec.name, ev.step) for spec in datamodule.dataloader_specs("predict")]
    if prompts:
        rows = [row for batch in (outputs or []) for row in batch]
        echo(
            f"xlm: generated {len(rows)} continuation(s) with {ev.checkpoint}:\n{_show(rows)}\n  written to {paths[0]}"
        )
    else:
        echo(f"xlm: generated with {ev.checkpoint}; predictions in:\n" + "\n".join(f"  {p}" for p in paths))
    return paths


def run(cfg: DictConfig) -> None:
    """Entry point for ``xlm job_type=generate``."""
    generate(cfg)
