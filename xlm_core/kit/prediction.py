"""The prediction rows a family's ``Predictor.to_dict`` writes, built the same way for every family.

A row holds what the predictor generated and what helps to read or score it; the predictions files
(``predictions/<split>/<dataloader>/step_<N>.jsonl``), ``job_type=generate`` and post-hoc evaluators read it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from xlm_core.kit.types import IGNORE_INDEX
from xlm_core.plugin.protocols import PREDICTION_TEXT_KEY, Tokenizer

__all__ = ["prediction_rows"]


def prediction_rows(
    batch: Mapping[str, Any], preds: Mapping[str, Any], tokenizer: Tokenizer, pad_token_id: int | None = None
) -> list[dict[str, Any]]:
    """One JSON-serialisable row per example of a :class:`~xlm_core.kit.types.PredictionDict`.

    Each row holds ``text`` (the generated text), ``text_with_spl_tokens``, ``ids`` (the whole row),
    ``output_start_idx``, ``prompt`` (the real tokens of ``batch["input_ids"]`` before ``output_start_idx``,
    decoded), ``time_taken``, ``target`` (``batch["target_ids"]`` without -100 and ``pad_token_id``, decoded;
    only when the batch has targets) and the row's ``batch["metadata"]`` fields (e.g. a gold ``answer``), which
    never overwrite the predictor's own fields.
    """
    ids = preds["ids"].tolist()
    start = int(preds["output_start_idx"])
    prompt_ids = batch["input_ids"][:, :start].tolist()
    mask = batch.get("attention_mask")
    prompt_mask = mask[:, :start].tolist() if mask is not None else [[True] * len(r) for r in prompt_ids]
    targets = batch.get("target_ids")
    target_rows = targets.tolist() if targets is not None else None
    metadata: dict[str, list[Any]] = dict(batch.get("metadata") or {})
    rows: list[dict[str, Any]] = []
    for i, row_ids in enumerate(ids):
        prompt = [t for t, m in zip(prompt_ids[i], prompt_mask[i]) if m]
        row: dict[str, Any] = {
            PREDICTION_TEXT_KEY: preds["text"][i],
            "text_with_spl_tokens": preds["text_with_spl_tokens"][i],
            "ids": row_ids,
            "output_start_idx": start,
            "prompt": tokenizer.decode(prompt, skip_special_tokens=True),
            "time_taken": float(preds["time_taken"][i]),
        }
        if target_rows is not None:
            keep = [t for t in target_rows[i] if t != IGNORE_INDEX and t != pad_token_id]
            row["target"] = tokenizer.decode(keep, skip_special_tokens=True)
        for key, values in metadata.items():
            row.setdefault(key, values[i])
        rows.append(row)
    return rows
