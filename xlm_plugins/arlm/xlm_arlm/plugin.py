"""The ARLM family's entry point into xlm (entry point ``xlm: arlm = "xlm_arlm.plugin"``)."""

from __future__ import annotations

from importlib.resources import files
from typing import Any

from xlm_core.hookspecs import hookimpl


@hookimpl
def register_families(register: Any) -> None:
    """Register the auto-regressive family with its Hydra config tree."""
    register(
        name="arlm",
        config_dir=files("xlm_arlm") / "configs",
        description="Auto-regressive causal rotary Transformer language model (next-token prediction).",
    )
