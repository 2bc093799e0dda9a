"""Registers "legacy": a family written before the plugin API was versioned (no api_version)."""

from importlib.resources import files

from xlm_core.plugin.hookspecs import hookimpl


@hookimpl
def register_families(register):
    """Register "legacy" with the clitest config tree and no declared API version."""
    register(name="legacy", config_dir=files("xlm_clitest") / "configs", description="Legacy test family.")
