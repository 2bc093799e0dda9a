"""Sandboxed execution of generated Python programs and the GSM8K/TinyGSM code-exec evaluator."""

from xlm_core.tasks.code_exec.answers import normalize_value, numbers_match, parse_numeric_string
from xlm_core.tasks.code_exec.evaluator import Gsm8kCodeEval
from xlm_core.tasks.code_exec.extraction import STOP_STRINGS, ExtractedProgram, extract_program
from xlm_core.tasks.code_exec.pool import run_programs
from xlm_core.tasks.code_exec.sandbox import (
    ExecResult,
    SandboxLimits,
    probe_isolation,
    resolve_isolation,
    run_program,
)

__all__ = [
    "STOP_STRINGS",
    "ExecResult",
    "ExtractedProgram",
    "Gsm8kCodeEval",
    "SandboxLimits",
    "extract_program",
    "normalize_value",
    "numbers_match",
    "parse_numeric_string",
    "probe_isolation",
    "resolve_isolation",
    "run_program",
    "run_programs",
]
