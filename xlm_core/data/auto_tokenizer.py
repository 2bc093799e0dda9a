"""Load a Hugging Face tokenizer (hub id or local directory) and add the special tokens a family needs.

Hydra use: ``tokenizer: {_target_: xlm_core.data.auto_tokenizer.load_auto_tokenizer,
name_or_path: Qwen/Qwen2-0.5B, special_tokens: {mask_token: "<|mask|>"}}``.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from huggingface_hub import constants as hf_constants
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from xlm_core.config.tools import to_plain
from xlm_core.data.hub import offline_requested, use_hub_or_cache
from xlm_core.errors import UsageError

__all__ = ["load_auto_tokenizer", "TokenizerNotFoundError"]

logger = logging.getLogger(__name__)


class TokenizerNotFoundError(UsageError, OSError):
    """The tokenizer is neither a local directory nor downloadable (hub unreachable / not cached)."""


def load_auto_tokenizer(
    name_or_path: str | os.PathLike[str],
    special_tokens: Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> PreTrainedTokenizerBase:
    """``AutoTokenizer.from_pretrained`` plus ``special_tokens`` (e.g. ``{"mask_token": "<|mask|>"}``).

    Guarantees a pad token (the EOS token when the tokenizer has none) and sets
    ``tokenizer.full_vocab_size = len(tokenizer)`` after all tokens are added: base vocabulary plus
    every added token, i.e. the rows the model's embedding needs (a class may define it itself).
    Honours ``HF_HUB_OFFLINE=1`` / ``TRANSFORMERS_OFFLINE=1`` read at call time (no network tries).
    A directory saved by ``SimpleSpaceTokenizer.save_pretrained`` loads as that class.
    Extra ``kwargs`` go to ``from_pretrained``.
    """
    name_or_path = os.fspath(name_or_path)
    if not name_or_path:
        raise ValueError("load_auto_tokenizer needs a hub id (e.g. Qwen/Qwen2-0.5B) or a local directory; got ''.")
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        tokenizer = _load_local(path, kwargs)
    elif _looks_like_path(name_or_path):
        raise TokenizerNotFoundError(
            f"Tokenizer directory {name_or_path!r} does not exist. Point tokenizer.name_or_path at a "
            "directory holding tokenizer_config.json (one written by tokenizer.save_pretrained), or "
            "at a Hugging Face hub id such as Qwen/Qwen2-0.5B."
        )
    else:
        tokenizer = _load_from_hub(name_or_path, kwargs)

    if special_tokens:
        special_tokens = _check_special_tokens(tokenizer, special_tokens)
        added = tokenizer.add_special_tokens(special_tokens, replace_extra_special_tokens=False)
        logger.info("Added %d new special token(s) %s to tokenizer %s", added, dict(special_tokens), name_or_path)
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ValueError(
                f"Tokenizer {name_or_path!r} has neither a pad nor an EOS token; pass "
                "special_tokens={'pad_token': '<pad>'} (or another token) to load_auto_tokenizer."
            )
        tokenizer.pad_token = tokenizer.eos_token
        logger.info("Tokenizer %s has no pad token; using its EOS token %r as pad.", name_or_path, tokenizer.eos_token)
    if not isinstance(getattr(type(tokenizer), "full_vocab_size", None), property):
        tokenizer.full_vocab_size = len(tokenizer)
    return tokenizer


def _load_local(path: Path, kwargs: dict[str, Any]) -> PreTrainedTokenizerBase:
    """Load from a directory; our own SimpleSpaceTokenizer is not known to AutoTokenizer."""
    config_file = path / "tokenizer_config.json"
    if config_file.is_file():
        with open(config_file, encoding="utf-8") as f:
            tokenizer_class = json.load(f).get("tokenizer_class")
        if tokenizer_class == "SimpleSpaceTokenizer":
            from xlm_core.data.simple_tokenizer import SimpleSpaceTokenizer

            return SimpleSpaceTokenizer.from_pretrained(str(path), **kwargs)
    try:
        return AutoTokenizer.from_pretrained(str(path), **kwargs)
    except (OSError, ValueError) as e:
        raise TokenizerNotFoundError(
            f"Directory {str(path)!r} exists but does not hold a loadable tokenizer ({e}). It needs the "
            "files tokenizer.save_pretrained writes (tokenizer_config.json plus tokenizer.json or vocab files)."
        ) from e


def _load_from_hub(name: str, kwargs: dict[str, Any]) -> PreTrainedTokenizerBase:
    """Load a hub id (from the HF cache when offline) and explain how to work without the hub."""
    requested = offline_requested() or bool(kwargs.get("local_files_only"))
    offline = not use_hub_or_cache() or requested
    if offline:
        kwargs = {**kwargs, "local_files_only": True}
    try:
        return AutoTokenizer.from_pretrained(name, **kwargs)
    except OSError as e:
        cache = os.environ.get("HF_HUB_CACHE") or (
            os.path.join(os.environ["HF_HOME"], "hub") if os.environ.get("HF_HOME") else hf_constants.HF_HUB_CACHE
        )
        reason = (
            "offline mode is on (HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE / local_files_only)"
            if requested
            else "the Hugging Face Hub is not reachable from this machine"
            if offline
            else "the Hugging Face Hub does not have it"
        )
        raise TokenizerNotFoundError(
            f"Could not load tokenizer {name!r}: {reason}, and no copy was found in the local Hugging "
            f"Face cache ({cache}). Fix it in one of two ways: (1) on a machine with internet run "
            f"`python -c \"from transformers import AutoTokenizer; AutoTokenizer.from_pretrained('{name}')"
            f".save_pretrained('/path/to/dir')\"`, copy the directory here and set "
            f"tokenizer.name_or_path=/path/to/dir; or (2) copy a Hugging Face cache that holds {name!r} "
            f"and point HF_HOME (or HF_HUB_CACHE) at it, with HF_HUB_OFFLINE=1. Original error: {e}"
        ) from e


def _check_special_tokens(tokenizer: PreTrainedTokenizerBase, special_tokens: Mapping[str, Any]) -> dict[str, Any]:
    """Accept the named special-token slots plus ``extra_special_tokens`` (old name: additional_...)."""
    tokens = dict(to_plain(special_tokens))  # a config's lists are ListConfigs, which transformers rejects
    if "additional_special_tokens" in tokens:
        tokens["extra_special_tokens"] = list(tokens.pop("additional_special_tokens"))
    allowed = [*tokenizer.SPECIAL_TOKENS_ATTRIBUTES, "extra_special_tokens"]
    unknown = sorted(set(tokens) - set(allowed))
    if unknown:
        raise ValueError(
            f"load_auto_tokenizer: special_tokens keys {unknown} are not special-token slots. Use one of "
            f"{allowed}; put any other token in extra_special_tokens: ['<|my_token|>']."
        )
    return tokens


def _looks_like_path(name: str) -> bool:
    """Hub ids are ``name`` or ``org/name``; anything else (absolute, ./, ~, deeper) is a path."""
    return os.path.isabs(name) or name.startswith((".", "~")) or name.count("/") > 1 or os.sep != "/" and os.sep in name
