"""Public config-group options that were renamed: kept composable for one minor version, with a warning.

Each alias is stored in Hydra's ConfigStore under its old ``group/name``; it composes the new option
and carries a ``_deprecated_`` note, which :func:`pop_deprecations` removes from the composed config
and returns as one-line warnings. Remove an alias in the version its note names (see CHANGELOG.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, ListConfig, open_dict

__all__ = ["DEPRECATED_KEY", "ConfigAlias", "ALIASES", "register_aliases", "pop_deprecations"]

DEPRECATED_KEY = "_deprecated_"


@dataclass(frozen=True)
class ConfigAlias:
    """An old ``group/name`` that composes ``node`` (on top of ``new``) and warns with ``note``."""

    group: str
    name: str
    new: str
    node: dict[str, Any]
    note: str
    removed_in: str = "0.3"

    def stored(self) -> dict[str, Any]:
        """What the ConfigStore holds for the old name."""
        message = (
            f"config {self.group}/{self.name} was renamed in xlm-core 0.2 and goes away in {self.removed_in}: "
            f"{self.note}"
        )
        return {"defaults": [self.new, "_self_"], **self.node, DEPRECATED_KEY: message}


def _star_aliases() -> list[ConfigAlias]:
    """datasets/star_<setting>_<split> (0.1) -> datasets/star with ``star_setting`` and the datamodule's split."""
    out = []
    for setting in ("easy", "medium", "hard"):
        for old_split, split in (("train", "train"), ("val", "validation"), ("test", "test")):
            name = f"star_{setting}_{old_split}"
            out.append(
                ConfigAlias(
                    group="datasets",
                    name=name,
                    new="star",
                    node={
                        "name": name,
                        "generator_kwargs": {"setting": setting, "split": split},
                        "debug": {"name": f"{name}_debug"},
                    },
                    note=f"use datasets/star (the setting comes from the top-level key star_setting={setting}, "
                    "the split from the datamodule), or datamodule=star for the whole seq2seq datamodule",
                )
            )
    return out


ALIASES: tuple[ConfigAlias, ...] = tuple(_star_aliases())


def register_aliases() -> None:
    """Store every alias in Hydra's ConfigStore (idempotent)."""
    store = ConfigStore.instance()
    for alias in ALIASES:
        store.store(group=alias.group, name=alias.name, node=alias.stored(), provider="xlm_core")


def pop_deprecations(cfg: DictConfig) -> list[str]:
    """Remove every ``_deprecated_`` note from ``cfg`` (in place) and return them, each once."""
    notes: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, DictConfig):
            if DEPRECATED_KEY in node:
                note = str(node[DEPRECATED_KEY])
                if note not in notes:
                    notes.append(note)
                with open_dict(node):
                    del node[DEPRECATED_KEY]
            for key in list(node.keys()):
                if not node._get_node(key)._is_interpolation():
                    walk(node._get_node(key))
        elif isinstance(node, ListConfig):
            for item in node._iter_ex(resolve=False):
                walk(item)

    walk(cfg)
    return notes
