"""Compose a family's config from Python (what the ``xlm`` command does, without running a job)."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig

import xlm_core.configs  # noqa: F401  (registers the resolvers the core tree uses)
from xlm_core.config.aliases import pop_deprecations
from xlm_core.plugin.manager import FamilyInfo, get_family

__all__ = ["CONFIG_MODULE", "CONFIG_NAME", "compose_config"]

CONFIG_MODULE = "xlm_core.configs"
CONFIG_NAME = "config"


def compose_config(family: str | FamilyInfo, overrides: Sequence[str] = ()) -> DictConfig:
    """The config ``xlm family=<family> <overrides>`` would run (Hydra's own keys left unresolved)."""
    info = get_family(family) if isinstance(family, str) else family
    args = [f"family={info.name}", f"hydra.searchpath=[{info.searchpath}]", *overrides]
    if not any(a.split("=", 1)[0].lstrip("+") == "job_name" for a in args):
        experiment = next((a.split("=", 1)[1] for a in args if a.split("=", 1)[0] == "experiment"), None)
        if experiment:
            args.append(f"job_name={experiment}")
    if GlobalHydra.instance().is_initialized():
        GlobalHydra.instance().clear()
    with initialize_config_module(config_module=CONFIG_MODULE, version_base="1.3"):
        cfg = compose(config_name=CONFIG_NAME, overrides=args)
    for note in pop_deprecations(cfg):
        warnings.warn(note, DeprecationWarning, stacklevel=2)
    return cfg
