"""Registers "twin", a second family sharing clitest's configs (so experiments are ambiguous)."""

from importlib.resources import files

from xlm_core.plugin.hookspecs import hookimpl


@hookimpl
def register_families(register):
    """Register "twin" over the same config tree as "clitest"."""
    register(name="twin", config_dir=files("xlm_clitest") / "configs", description="Twin of clitest.")
