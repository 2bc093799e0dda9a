"""Small helpers for config values: plain Python containers and objects named by dotted paths."""

from __future__ import annotations

import importlib
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

__all__ = ["to_plain", "to_plain_best_effort", "flatten", "import_object", "qualified_name"]


def to_plain(value: Any, resolve: bool = True) -> Any:
    """``value`` as plain dicts/lists when it is an OmegaConf container, else unchanged."""
    return OmegaConf.to_container(value, resolve=resolve) if OmegaConf.is_config(value) else value


def to_plain_best_effort(cfg: Any) -> Any:
    """Plain containers, resolved value by value: a missing (``???``) value or one that cannot resolve
    outside Hydra's runtime stays as written instead of failing the whole conversion."""
    if isinstance(cfg, DictConfig):
        return {str(k): _plain_child(cfg, k) for k in cfg.keys()}
    if isinstance(cfg, ListConfig):
        return [_plain_child(cfg, i) for i in range(len(cfg))]
    return cfg


def _plain_child(container: DictConfig | ListConfig, key: Any) -> Any:
    if OmegaConf.is_missing(container, key):
        return "???"
    try:
        value = container[key]
    except OmegaConfBaseException:
        return container._get_node(key)._value()  # the interpolation string as written
    return to_plain_best_effort(value) if OmegaConf.is_config(value) else value


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` (lists are leaves), for comparing configs key by key."""
    if not isinstance(data, dict):
        return {prefix: data}
    out: dict[str, Any] = {}
    for key, value in data.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        out.update(flatten(value, path) if isinstance(value, dict) and value else {path: value})
    return out


def import_object(dotted: str) -> Any:
    """Import ``pkg.module.attr`` (attributes may be nested: ``pkg.module.Class.method``)."""
    if not isinstance(dotted, str) or "." not in dotted.strip("."):
        raise ValueError(f"{dotted!r} is not a dotted path like 'package.module.function'.")
    parts = dotted.split(".")
    for split in range(len(parts) - 1, 0, -1):
        module_name = ".".join(parts[:split])
        try:
            obj: Any = importlib.import_module(module_name)
        except ModuleNotFoundError as e:
            if e.name is not None and not module_name.startswith(e.name):
                raise ImportError(f"Cannot import module {module_name!r} for {dotted!r}: {e}") from e
            continue
        for attr in parts[split:]:
            if not hasattr(obj, attr):
                raise ImportError(
                    f"Module {module_name!r} has no attribute {'.'.join(parts[split:])!r} (from {dotted!r})."
                )
            obj = getattr(obj, attr)
        return obj
    raise ImportError(f"Cannot import {dotted!r}: no module {parts[0]!r} is installed.")


def qualified_name(obj: Any) -> str:
    """``module.QualName`` of a class or function (what a config's ``_target_`` names)."""
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', getattr(obj, '__name__', repr(obj)))}"
