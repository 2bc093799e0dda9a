"""The MLM family's entry point into xlm (entry point ``xlm: mlm = "xlm_mlm.plugin"``)."""

from __future__ import annotations

from importlib.resources import files
from typing import Any

from xlm_core.hookspecs import hookimpl


@hookimpl
def register_families(register: Any) -> None:
    """Register the masked family with its Hydra config tree."""
    register(
        name="mlm",
        config_dir=files("xlm_mlm") / "configs",
        description="Bidirectional rotary Transformer masked language model with iterative unmasking.",
    )
