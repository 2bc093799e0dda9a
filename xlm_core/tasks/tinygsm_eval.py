"""The opt-in switch for scoring TinyGSM/GSM8K predictions by executing the generated programs."""

from __future__ import annotations

import logging
from typing import Any

from xlm_core.tasks.code_exec.evaluator import Gsm8kCodeEval

__all__ = ["SKIPPED_HINT", "code_exec_evaluator"]

logger = logging.getLogger(__name__)

SKIPPED_HINT = (
    "execute_generated_code=false: val/test predictions are generated and written to predictions/*.jsonl "
    "but NOT scored, so code_exec_accuracy is not reported. Add execute_generated_code=true to the command "
    "to run each generated program in the sandbox (separate process, time/memory limits, no network where "
    "the OS allows it; see docs/code_execution.md) and report code_exec_accuracy."
)


def code_exec_evaluator(execute_generated_code: bool = False, **kwargs: Any) -> Gsm8kCodeEval | None:
    """``Gsm8kCodeEval(allow_code_execution=True, **kwargs)`` when the config opts in, else None
    (the harness then skips post-hoc scoring) with a warning that says how to opt in."""
    if not isinstance(execute_generated_code, bool):
        raise ValueError(f"execute_generated_code must be true or false, got {execute_generated_code!r}.")
    if "allow_code_execution" in kwargs:
        raise ValueError("Set execute_generated_code (true/false), not allow_code_execution, in this config.")
    if not execute_generated_code:
        logger.warning(SKIPPED_HINT)
        return None
    return Gsm8kCodeEval(allow_code_execution=True, **kwargs)
