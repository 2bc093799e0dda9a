"""Old names kept working for a while: a module ``__getattr__`` that serves a moved or renamed object
under its old name, and the warning a renamed module gives when imported; both name the new dotted path
(a DeprecationWarning).

Configs name components by dotted path (``update_fn: xlm_arlm.metrics_arlm.seq2seq_exact_match_update_fn``),
so a family that moves one of them into the core keeps the old path importable::

    __getattr__ = moved_attributes(__name__, {"old_fn": "xlm_core.kit.metrics.new_fn"}, removed_in="xlm-myfam 0.3")
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from typing import Any

from xlm_core.config.tools import import_object

__all__ = ["moved_attributes", "warn_renamed_module"]


def moved_attributes(module_name: str, moved: Mapping[str, str], removed_in: str) -> Callable[[str], Any]:
    """A module ``__getattr__``: ``moved`` maps an old attribute name to the dotted path of the object now.

    Each access of an old name warns (``DeprecationWarning``) with the new path and returns that object;
    any other missing name raises AttributeError as usual.
    """
    table = dict(moved)

    def __getattr__(name: str) -> Any:
        if name not in table:
            raise AttributeError(f"module {module_name!r} has no attribute {name!r}")
        warnings.warn(
            f"{module_name}.{name} moved to {table[name]} and the old name goes away in {removed_in}; import it "
            "from there (and name that path in a config's update_fn or _target_)",
            DeprecationWarning,
            stacklevel=2,
        )
        return import_object(table[name])

    return __getattr__


def warn_renamed_module(old: str, new: str, removed_in: str, why: str = "") -> None:
    """Warn (``DeprecationWarning``, pointing at the importer) that module ``old`` was renamed ``new``; call it
    from the old module, which re-exports the new one's names."""
    reason = f" ({why})" if why else ""
    warnings.warn(
        f"{old} was renamed {new}{reason} and the old name goes away in {removed_in}; import from {new} and name "
        f"{new}.<name> in a config's _target_",
        DeprecationWarning,
        stacklevel=3,
    )
