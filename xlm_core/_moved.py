"""Import paths of xlm-core 0.1 that moved in 0.2, kept working (with a DeprecationWarning) until 0.3.

A plugin or config written against 0.1 (``from xlm_core.components import Component``,
``_target_: xlm_core.metrics.ExactMatch``) still imports; the warning names the new home. New code
imports from :mod:`xlm_core.api`, the stable plugin surface.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import warnings
from types import ModuleType

__all__ = ["MOVED_MODULES", "install"]

REMOVED_IN = "0.3"
MOVED_MODULES: dict[str, str] = {
    "xlm_core.plugins": "xlm_core.plugin.manager",
    "xlm_core.hookspecs": "xlm_core.plugin.hookspecs",
    "xlm_core.components": "xlm_core.plugin.components",
    "xlm_core.protocols": "xlm_core.plugin.protocols",
    "xlm_core.config_targets": "xlm_core.config.targets",
    "xlm_core.compose": "xlm_core.config.compose",
    "xlm_core.config_checks": "xlm_core.config.checks",
    "xlm_core.config_tools": "xlm_core.config.tools",
    "xlm_core.run_files": "xlm_core.run.files",
    "xlm_core.fileio": "xlm_core.run.fileio",
    "xlm_core.run_lock": "xlm_core.run.lock",
    "xlm_core.checkpoints": "xlm_core.run.checkpoints",
    "xlm_core.run_callbacks": "xlm_core.run.callbacks",
    "xlm_core.harness": "xlm_core.training.harness",
    "xlm_core.optim": "xlm_core.training.optim",
    "xlm_core.precision": "xlm_core.training.precision",
    "xlm_core.loggers": "xlm_core.training.loggers",
    "xlm_core.runtime": "xlm_core.training.runtime",
    "xlm_core.batch_checks": "xlm_core.kit.batch_checks",
    "xlm_core.sampling": "xlm_core.kit.sampling",
    "xlm_core.hub": "xlm_core.data.hub",
    "xlm_core.commands": "xlm_core.cli.commands",
}
# Modules whose contents were split: every new home, searched in order.
SPLIT_MODULES: dict[str, tuple[str, ...]] = {
    "xlm_core.metrics": ("xlm_core.kit.metrics", "xlm_core.training.reported_metrics"),
    "xlm_core.callbacks": ("xlm_core.training.callbacks", "xlm_core.run.checkpoint_callbacks", "xlm_core.run.files"),
}


class _MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Serves an old module path as a module holding the public names of its new home(s)."""

    def find_spec(
        self, fullname: str, path: object = None, target: object = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname in MOVED_MODULES or fullname in SPLIT_MODULES:
            return importlib.machinery.ModuleSpec(fullname, self)
        return None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> None:
        return None

    def exec_module(self, module: ModuleType) -> None:
        homes = SPLIT_MODULES.get(module.__name__) or (MOVED_MODULES[module.__name__],)
        warnings.warn(
            f"{module.__name__} moved to {' / '.join(homes)} in xlm-core 0.2 and the old path goes away in "
            f"{REMOVED_IN}; import from the new module (or xlm_core.api)",
            DeprecationWarning,
            stacklevel=2,
        )
        for home in reversed(homes):
            new = importlib.import_module(home)
            public = getattr(new, "__all__", None) or [n for n in vars(new) if not n.startswith("_")]
            module.__dict__.update({name: getattr(new, name) for name in public if hasattr(new, name)})


def install() -> None:
    """Put the finder on ``sys.meta_path`` once (after the regular finders: real modules win)."""
    if not any(isinstance(f, _MovedModules) for f in sys.meta_path):
        sys.meta_path.append(_MovedModules())
