"""Pluggy markers and hook specifications of the "xlm" plugin project.

A plugin is a module named by an entry point of group ``xlm``; it implements these hooks with
``@hookimpl``. Only markers and specs live here, so plugins can import it cheaply.
"""

from __future__ import annotations

from typing import Any

import pluggy

__all__ = ["hookspec", "hookimpl", "register_families", "PROJECT_NAME"]

PROJECT_NAME = "xlm"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def register_families(register: Any) -> None:
    """Call ``register(name, config_dir, description, **components)`` once per family (see xlm_core.plugin.components)."""
