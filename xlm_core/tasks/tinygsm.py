"""TinyGSM preprocessing: question -> prompt, reference code -> target; prediction rows get a numeric
gold computed once by running the reference code in the sandbox."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from xlm_core.tasks.code_exec.answers import normalize_sandbox_value
from xlm_core.tasks.code_exec.pool import run_programs
from xlm_core.tasks.code_exec.sandbox import SandboxLimits, resolve_isolation
from xlm_core.tasks.gsm8k import gsm8k_prompt

logger = logging.getLogger(__name__)


def tinygsm_prompt(question: str) -> str:
    """``question.strip() + "\\n"`` (no BOS between question and code)."""
    return gsm8k_prompt(question)


def tinygsm_preprocess_fn(example: Mapping[str, Any], tokenizer: Any, **kwargs: Any) -> dict[str, Any]:
    """TinyGSM row -> prompt_ids (question + newline) and input_ids (code), no special tokens."""
    return {
        "prompt_ids": tokenizer.encode(tinygsm_prompt(example["question"]), add_special_tokens=False),
        "input_ids": tokenizer.encode(example["code"].strip(), add_special_tokens=False),
    }


def tinygsm_preprocess_batched_fn(examples: Mapping[str, list], tokenizer: Any, **kwargs: Any) -> dict[str, list]:
    """Batched ``tinygsm_preprocess_fn`` for ``datasets.map(batched=True)``."""
    return {
        "prompt_ids": [tokenizer.encode(tinygsm_prompt(q), add_special_tokens=False) for q in examples["question"]],
        "input_ids": [tokenizer.encode(c.strip(), add_special_tokens=False) for c in examples["code"]],
    }


def gold_answers_from_code(
    codes: Sequence[str],
    timeout_s: float = 5.0,
    isolation: str = "auto",
    num_workers: int | None = None,
) -> list[str]:
    """Execute reference programs in the sandbox; the gold is the returned number as a string
    ("" when the reference code fails or returns a non-number; those rows cannot be scored)."""
    if not codes:
        return []
    mode = resolve_isolation(isolation)
    results = run_programs(
        [c.strip() + "\n" for c in codes], SandboxLimits(timeout_s=timeout_s), isolation=mode, num_workers=num_workers
    )
    golds = []
    for res in results:
        value = normalize_sandbox_value(res.value)[0] if res.ok else None
        golds.append("" if value is None else (str(value) if isinstance(value, int) else repr(value)))
    n_bad = golds.count("")
    if n_bad:
        logger.warning("TinyGSM gold: %d/%d reference programs gave no numeric answer", n_bad, len(golds))
    return golds


def tinygsm_pred_preprocess_fn(
    example: Mapping[str, Any], tokenizer: Any, timeout_s: float = 5.0, isolation: str = "auto", **kwargs: Any
) -> dict[str, Any]:
    """Prediction row: prompt_ids, empty input_ids and the gold ``answer`` from executing ``code``."""
    return {
        "prompt_ids": tokenizer.encode(tinygsm_prompt(example["question"]), add_special_tokens=False),
        "input_ids": [],
        "answer": gold_answers_from_code([example["code"]], timeout_s, isolation, num_workers=1)[0],
    }


def tinygsm_pred_preprocess_batched_fn(
    examples: Mapping[str, list],
    tokenizer: Any,
    timeout_s: float = 5.0,
    isolation: str = "auto",
    num_workers: int | None = None,
    **kwargs: Any,
) -> dict[str, list]:
    """Batched prediction preprocessing; the batch's reference programs run concurrently."""
    questions = examples["question"]
    return {
        "prompt_ids": [tokenizer.encode(tinygsm_prompt(q), add_special_tokens=False) for q in questions],
        "input_ids": [[] for _ in questions],
        "answer": gold_answers_from_code(examples["code"], timeout_s, isolation, num_workers),
    }
