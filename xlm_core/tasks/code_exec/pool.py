"""Run many programs concurrently: threads dispatch, every program gets its own sandboxed process."""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from xlm_core.tasks.code_exec.sandbox import ExecResult, IsolationMode, SandboxLimits, run_program


def default_num_workers() -> int:
    """One worker per usable CPU core."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


def run_programs(
    sources: Sequence[str],
    limits: SandboxLimits = SandboxLimits(),
    isolation: IsolationMode = "bwrap",
    num_workers: int | None = None,
    entry: str = "simple_math_problem",
) -> list[ExecResult]:
    """Execute ``sources`` in parallel and return results in input order. A program that crashes,
    hangs or kills itself only affects its own process, so the pool always completes."""
    workers = num_workers or default_num_workers()
    if workers < 1:
        raise ValueError(f"num_workers must be >= 1 or None, got {num_workers!r}")
    if not sources:
        return []
    if workers == 1 or len(sources) == 1:
        return [_safe_run(s, limits, isolation, entry) for s in sources]
    with ThreadPoolExecutor(max_workers=min(workers, len(sources)), thread_name_prefix="sandbox") as ex:
        return list(ex.map(lambda s: _safe_run(s, limits, isolation, entry), sources))


def _safe_run(source: str, limits: SandboxLimits, isolation: IsolationMode, entry: str) -> ExecResult:
    try:
        return run_program(source, limits, isolation=isolation, entry=entry)
    except Exception as exc:  # infrastructure failure for this row only; reported per row
        return ExecResult("sandbox_error", error=f"{type(exc).__name__}: {exc}", isolation=isolation)
