"""The version of the plugin API and what a family's declared version means for it.

The plugin API is what :mod:`xlm_core.api` exports plus the public config groups and batch names of
``docs/plugins.md``. It is versioned ``MAJOR.MINOR`` apart from the distribution: a minor release
only adds, a major one may remove or change. A family declares the API version it was written against
(``register(..., api_version="1.0")``); it works with a core of the same major version whose minor is
the same or newer.
"""

from __future__ import annotations

import re

__all__ = ["PLUGIN_API_VERSION", "parse_api_version", "api_version_problem"]

PLUGIN_API_VERSION = "1.0"
_VERSION = re.compile(r"(\d+)\.(\d+)")


def parse_api_version(value: object) -> tuple[int, int]:
    """``"MAJOR.MINOR"`` as two ints; a ValueError naming the value otherwise."""
    match = _VERSION.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise ValueError(
            f"api_version={value!r} is not 'MAJOR.MINOR'; declare the plugin API version the family "
            f"was written against, e.g. api_version={PLUGIN_API_VERSION!r}"
        )
    return int(match.group(1)), int(match.group(2))


def api_version_problem(declared: str | None, provided: str = PLUGIN_API_VERSION) -> str | None:
    """Why a family declaring ``declared`` may not work with this core (None when it should)."""
    if declared is None:
        return (
            f"declares no plugin API version; it was written before versioning (xlm-core < 0.2): add "
            f"api_version={provided!r} to its register() call once it works with this core"
        )
    (major, minor), (core_major, core_minor) = parse_api_version(declared), parse_api_version(provided)
    if major != core_major:
        return (
            f"targets plugin API {declared} but this xlm-core provides {provided}; install an xlm-core "
            f"of API {major}.x or a version of the family written for {provided}"
        )
    if minor > core_minor:
        return f"targets plugin API {declared}, newer than this xlm-core's {provided}: upgrade xlm-core"
    return None
