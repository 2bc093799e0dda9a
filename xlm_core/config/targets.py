"""Does a composed config build the selected family's registered components?

A ``_target_`` (or metric ``update_fn``) naming a component that another family registers is an
error: the run would mix families. One naming nothing registered is allowed (a user's own class) but
reported, since ``xlm check`` never looked at it. Core objects (``xlm_core.*``) are shared by all.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from xlm_core.config.tools import import_object, qualified_name
from xlm_core.plugin.manager import FamilyInfo

__all__ = ["component_targets", "check_component_targets"]

_SINGLE = (("model", "model"), ("loss", "loss"), ("predictor", "predictor"))


def _select(cfg: DictConfig, key: str) -> Any:
    try:
        return OmegaConf.select(cfg, key, default=None, throw_on_missing=False)
    except OmegaConfBaseException:
        return None


def component_targets(cfg: DictConfig) -> Iterator[tuple[str, str, str]]:
    """``(config key, component kind, dotted target)`` of every family component the config builds."""
    for key, kind in _SINGLE:
        target = _select(cfg, f"{key}._target_")
        if isinstance(target, str):
            yield f"{key}._target_", kind, target
    collators = _select(cfg, "collator")
    if OmegaConf.is_dict(collators):
        for name in collators:
            target = _select(cfg, f"collator.{name}._target_")
            if isinstance(target, str):
                yield f"collator.{name}._target_", "collator", target
    reported = _select(cfg, "reported_metrics")
    if OmegaConf.is_dict(reported):
        for group, entries in reported.items():
            for metric_name in entries or {}:
                fn = _select(cfg, f"reported_metrics.{group}.{metric_name}.update_fn")
                if isinstance(fn, str):
                    yield f"reported_metrics.{group}.{metric_name}.update_fn", "metric", fn


def _current_path(target: str) -> str:
    """The dotted path of the object ``target`` imports as: an old path kept as a deprecated alias (e.g.
    ``xlm_arlm.datamodule_arlm.X``) names the registered component under its new path; else ``target``."""
    try:
        return qualified_name(import_object(target))
    except Exception:  # not importable here: judged by its name alone
        return target


def check_component_targets(
    cfg: DictConfig, family: FamilyInfo, families: Mapping[str, FamilyInfo]
) -> tuple[list[str], list[str]]:
    """``(errors, notes)`` for the component targets of ``cfg`` run as ``family``."""
    owners: dict[str, list[str]] = {}
    for info in families.values():
        for target in info.components.by_target():
            owners.setdefault(target, []).append(info.name)
    own = family.components.by_target()
    errors, notes = [], []
    for key, kind, target in component_targets(cfg):
        if target not in own and not target.startswith("xlm_core.") and target not in owners:
            target = _current_path(target)
        if target in own or target.startswith("xlm_core."):
            continue
        others = [name for name in owners.get(target, []) if name != family.name]
        if others:
            mine = [c.target for c in getattr(family.components, f"{kind}s", ()) if c.kind == kind]
            choice = f"; family '{family.name}' registers: {', '.join(mine)}" if mine else ""
            errors.append(
                f"{key}={target} is a {kind} of family '{others[0]}', not of family '{family.name}'; "
                f"use family={others[0]} or one of {family.name}'s own {kind}s{choice}"
            )
        elif family.components:
            notes.append(
                f"{key}={target} is not a registered component of family '{family.name}' "
                "(`xlm families --verbose` lists them); it runs without `xlm check` having checked it"
            )
    return errors, notes
