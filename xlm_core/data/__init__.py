"""Tokenizers and data plumbing. Only the tokenizers are exported here, lazily (importing
``xlm_core.data`` stays cheap; submodules such as ``xlm_core.data.datamodule`` import directly)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["SimpleSpaceTokenizer", "load_auto_tokenizer", "load_bpe_tokenizer"]

_LAZY = {
    "SimpleSpaceTokenizer": "xlm_core.data.simple_tokenizer",
    "load_auto_tokenizer": "xlm_core.data.auto_tokenizer",
    "load_bpe_tokenizer": "xlm_core.data.bpe_tokenizer",
}

if TYPE_CHECKING:
    from xlm_core.data.auto_tokenizer import load_auto_tokenizer
    from xlm_core.data.bpe_tokenizer import load_bpe_tokenizer
    from xlm_core.data.simple_tokenizer import SimpleSpaceTokenizer


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'xlm_core.data' has no attribute {name!r}")
