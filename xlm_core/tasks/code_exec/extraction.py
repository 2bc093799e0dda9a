"""Extract the program to execute from raw model output (fences, stop tokens, trailing junk)."""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass

STOP_STRINGS: tuple[str, ...] = ("<|endoftext|>", "<|im_end|>", "<|eot_id|>", "<|end|>", "</s>", "[EOS]")
_FENCE = re.compile(r"```[ \t]*(?:python|py|Python)?[ \t]*\n?(.*?)(?:```|\Z)", re.DOTALL)
_MAX_TRIM_LINES = 200


@dataclass(frozen=True)
class ExtractedProgram:
    """``code`` to run (None when nothing usable was found) and, if so, the ``reason``."""

    code: str | None
    reason: str | None = None


def extract_program(
    text: str, entry: str = "simple_math_problem", stop_strings: tuple[str, ...] = STOP_STRINGS
) -> ExtractedProgram:
    """Cut at the first stop string, unwrap a code fence, start at ``def entry`` (else the first
    ``def``) and drop trailing lines until the rest parses."""
    if not isinstance(text, str):
        return ExtractedProgram(None, f"model output is {type(text).__name__}, not str")
    for stop in stop_strings:
        text = text.split(stop, 1)[0]
    if "```" in text:
        blocks = [m.group(1) for m in _FENCE.finditer(text)]
        with_def = [b for b in blocks if "def " in b]
        if with_def:
            text = with_def[0]
    start = re.search(rf"^[ \t]*def[ \t]+{re.escape(entry)}\b", text, re.MULTILINE)
    if start is None:
        start = re.search(r"^[ \t]*def[ \t]+\w+", text, re.MULTILINE)
    if start is None:
        return ExtractedProgram(None, "no function definition ('def ...') in the output")
    lines = text[start.start() :].rstrip().splitlines()
    indent = len(lines[0]) - len(lines[0].lstrip())
    if indent:
        lines = [ln[indent:] if ln[:indent].strip() == "" else ln for ln in lines]
    for cut in range(min(len(lines), _MAX_TRIM_LINES)):
        code = "\n".join(lines[: len(lines) - cut]).rstrip()
        if not code:
            break
        try:
            ast.parse(code)
        except (SyntaxError, ValueError):
            continue
        return ExtractedProgram(code + "\n")
    return ExtractedProgram(None, "no prefix of the output parses as Python")
