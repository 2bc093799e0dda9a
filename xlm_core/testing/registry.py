"""Registry of conformance checks: each check has a kind (model, loss, ...) and the capabilities it needs.

A check is a plain function ``check(subject) -> None`` decorated with :func:`register`; it raises
``AssertionError`` on a violation and :class:`NotApplicable` when its inputs cannot exercise it. The
check modules import this one (never the other way round); :mod:`xlm_core.testing.suite` imports them
all and is where checks are looked up, so a new check is one decorated function and nothing else.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal

from xlm_core.kit.renamed import moved_attributes
from xlm_core.plugin.components import CAPABILITIES

__all__ = ["Check", "NotApplicable", "CAPABILITIES", "CHECK_KINDS", "Kind", "register", "registered_checks"]

Kind = Literal["model", "loss", "collator", "predictor"]
CHECK_KINDS: tuple[str, ...] = ("model", "loss", "collator", "predictor")
"""The kinds of component the conformance checks cover (not the dataloader kinds lm / prediction)."""
__getattr__ = moved_attributes(__name__, {"KINDS": f"{__name__}.CHECK_KINDS"}, removed_in="xlm-core 0.3")


class NotApplicable(Exception):
    """Raised by a check whose inputs cannot exercise it (e.g. a batch without padding); tests skip."""


@dataclass(frozen=True)
class Check:
    """A named conformance check: ``check(subject)`` returns None or raises AssertionError."""

    name: str
    kind: str
    requires: frozenset[str]
    fn: Callable[[Any], None]

    @property
    def doc(self) -> str:
        """The first line of the check's docstring (what it asserts)."""
        return (self.fn.__doc__ or "").strip().splitlines()[0] if self.fn.__doc__ else self.name

    def __call__(self, subject: Any) -> None:
        self.fn(subject)

    def __repr__(self) -> str:
        return f"Check({self.name})"


_REGISTRY: dict[str, list[Check]] = {kind: [] for kind in CHECK_KINDS}


def register(kind: Kind, requires: Iterable[str] = ()) -> Callable[[Callable[[Any], None]], Callable[[Any], None]]:
    """Decorator adding a check function to the registry (the function itself is returned unchanged)."""
    needs = frozenset(requires)
    if kind not in _REGISTRY or not needs <= CAPABILITIES:
        raise ValueError(
            f"register(kind={kind!r}, requires={sorted(needs)}): kinds are {CHECK_KINDS}, "
            f"capabilities {sorted(CAPABILITIES)}."
        )

    def wrap(fn: Callable[[Any], None]) -> Callable[[Any], None]:
        _REGISTRY[kind].append(Check(fn.__name__, kind, needs, fn))
        return fn

    return wrap


def registered_checks(kind: str) -> list[Check]:
    """The checks of ``kind`` registered so far, in definition order."""
    if kind not in _REGISTRY:
        raise ValueError(f"Unknown check kind {kind!r}; choose one of {CHECK_KINDS}.")
    return list(_REGISTRY[kind])
