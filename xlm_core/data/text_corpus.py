"""Helpers of the text-corpus configs: where the Python standard library is, and prompt rows to sample from."""

from __future__ import annotations

import sysconfig
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["python_stdlib_dir", "prompt_rows", "encode_prompt"]


def python_stdlib_dir() -> str:
    """The running interpreter's standard-library directory (``sysconfig``'s ``stdlib`` path)."""
    return sysconfig.get_paths()["stdlib"]


def prompt_rows(prompts: Sequence[str] | None = None) -> list[dict[str, str]]:
    """One row ``{"prompt": text}`` per prompt ("" samples from the start of a document)."""
    return [{"prompt": str(p)} for p in (prompts or [""])]


def encode_prompt(example: Mapping[str, Any], tokenizer: Any, field: str = "prompt") -> dict[str, list[int]]:
    """Preprocess: the prompt's ids as ``prompt_ids`` and an empty ``input_ids`` (nothing to score)."""
    text = example.get(field) or ""
    return {"prompt_ids": list(tokenizer.encode(text, add_special_tokens=False)) if text else [], "input_ids": []}
