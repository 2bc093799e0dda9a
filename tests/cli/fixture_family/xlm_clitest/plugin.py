"""Registers the test family "clitest"."""

from importlib.resources import files

from xlm_core.plugin.hookspecs import hookimpl


@hookimpl
def register_families(register):
    """Register "clitest" with its config tree."""
    register(
        name="clitest", config_dir=files("xlm_clitest") / "configs", description="CLI test family.", api_version="1.0"
    )
