"""Entry point of the example family (``[project.entry-points.xlm] example = "xlm_example_family.plugin"``)."""

from __future__ import annotations

from importlib.resources import files
from typing import Any

from xlm_core.hookspecs import hookimpl


@hookimpl
def register_families(register: Any) -> None:
    """Register the family "example" with the Hydra config tree shipped in this package."""
    register(
        name="example",
        config_dir=files("xlm_example_family") / "configs",
        description="Example family: causal running-mean language model (docs/plugins.md).",
    )
