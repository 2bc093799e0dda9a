"""Post-hoc evaluator that scores generated ``simple_math_problem()`` programs by running them."""

from __future__ import annotations

import collections
import logging
from typing import Any

from xlm_core.tasks.code_exec.answers import (
    normalize_sandbox_value,
    normalize_value,
    numbers_match,
)
from xlm_core.tasks.code_exec.extraction import STOP_STRINGS, extract_program
from xlm_core.tasks.code_exec.pool import run_programs
from xlm_core.tasks.code_exec.sandbox import SandboxLimits, check_isolation_choice, resolve_isolation

logger = logging.getLogger(__name__)

OPT_IN_HINT = (
    "Gsm8kCodeEval executes model-generated Python code. It runs every program in a sandboxed "
    "child process (see docs/code_execution.md), but you must opt in explicitly: pass "
    "allow_code_execution=True in Python; in the shipped TinyGSM configs add `execute_generated_code=true` "
    "to the command line."
)


class Gsm8kCodeEval:
    """Execute each prediction's program and compare ``simple_math_problem()`` with the gold answer.

    Rows need ``generated_text`` (generated suffix only; preferred) or ``text``, and ``answer``.
    Output rows add ``correct``, ``pred_value`` and ``exec_error`` (None when scored cleanly).
    """

    def __init__(
        self,
        timeout_s: float = 2.0,
        memory_mb: int = 512,
        max_output_bytes: int = 65_536,
        num_workers: int | None = None,
        isolation: str = "auto",
        allow_code_execution: bool = False,
        entry_point: str = "simple_math_problem",
        stop_strings: tuple[str, ...] | list[str] | None = None,
    ) -> None:
        check_isolation_choice(isolation)
        if num_workers is not None and num_workers < 1:
            raise ValueError(f"num_workers must be >= 1 or None, got {num_workers!r}")
        self.limits = SandboxLimits(timeout_s=timeout_s, memory_mb=memory_mb, max_output_bytes=max_output_bytes)
        self.num_workers = num_workers
        self.isolation = isolation
        self.allow_code_execution = bool(allow_code_execution)
        self.entry_point = entry_point
        self.stop_strings = tuple(stop_strings) if stop_strings is not None else STOP_STRINGS
        if self.allow_code_execution:  # fail before training, not at its first validation
            resolve_isolation(isolation)

    def eval(
        self, predictions: list[dict[str, Any]], tokenizer: Any = None, **kwargs: Any
    ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """Score ``predictions``; returns (rows with per-row fields, aggregate metrics)."""
        if not self.allow_code_execution:
            raise PermissionError(OPT_IN_HINT)
        stops = self.stop_strings
        eos = getattr(tokenizer, "eos_token", None)
        if isinstance(eos, str) and eos and eos not in stops:
            stops = (*stops, eos)
        rows = [dict(p) for p in predictions]
        if not rows:
            logger.warning("Gsm8kCodeEval: no predictions to score")
            return rows, {"code_exec_accuracy": 0.0, "n_correct": 0, "n_total": 0, "n_exec_failures": 0}
        mode = resolve_isolation(self.isolation)

        to_run: list[int] = []
        sources: list[str] = []
        for i, row in enumerate(rows):
            row.update(correct=False, pred_value=None, exec_error=None)
            text = row.get("generated_text")
            if text is None or (isinstance(text, str) and not text.strip() and row.get("text")):
                text = row.get("text", "")
            extracted = extract_program(text if text is not None else "", self.entry_point, stops)
            if extracted.code is None:
                row["exec_error"] = f"extraction: {extracted.reason}"
                continue
            to_run.append(i)
            sources.append(extracted.code)

        results = run_programs(
            sources, self.limits, isolation=mode, num_workers=self.num_workers, entry=self.entry_point
        )
        n_failed = len(rows) - len(to_run)
        for i, res in zip(to_run, results):
            row = rows[i]
            if not res.ok:
                n_failed += 1
                row["exec_error"] = f"{res.status}: {res.error}"
                continue
            pred, why = normalize_sandbox_value(res.value)
            row["pred_value"] = pred
            gold, gold_why = normalize_value(row.get("answer"))
            if pred is None:
                row["exec_error"] = f"wrong_type: {why}"
            elif gold is None:
                row["exec_error"] = f"bad_gold: {gold_why} (answer={row.get('answer')!r})"
            else:
                row["correct"] = numbers_match(pred, gold)

        n_total = len(rows)
        n_correct = sum(bool(r["correct"]) for r in rows)
        metrics = {
            "code_exec_accuracy": n_correct / n_total,
            "n_correct": n_correct,
            "n_total": n_total,
            "n_exec_failures": n_failed,
        }
        self._log(rows, metrics, mode)
        return rows, metrics

    @staticmethod
    def _log(rows: list[dict[str, Any]], metrics: dict[str, Any], mode: str) -> None:
        reasons = collections.Counter(
            str(r["exec_error"]).split(":", 1)[0] for r in rows if r["exec_error"] is not None
        )
        if metrics["n_exec_failures"] == metrics["n_total"]:
            logger.error(
                "Gsm8kCodeEval: EVERY program failed (%d/%d exec failures, isolation=%s); "
                "code_exec_accuracy=0 is not a real score. Failure reasons: %s",
                metrics["n_exec_failures"],
                metrics["n_total"],
                mode,
                dict(reasons.most_common()),
            )
        else:
            logger.info(
                "Gsm8kCodeEval: %d/%d correct (%.2f%%), %d exec failures, isolation=%s, reasons=%s",
                metrics["n_correct"],
                metrics["n_total"],
                100 * metrics["code_exec_accuracy"],
                metrics["n_exec_failures"],
                mode,
                dict(reasons.most_common()),
            )
