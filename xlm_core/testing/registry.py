"""Registry of conformance checks: each check has a kind (model, loss, ...) and the capabilities it needs."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["Check", "NotApplicable", "CAPABILITIES", "KINDS", "register", "checks_for"]

Kind = Literal["model", "loss", "collator", "predictor"]
KINDS: tuple[str, ...] = ("model", "loss", "collator", "predictor")
# causal: output at i ignores inputs after i; kv_cache: has set_kv_cache/clear_kv_cache (docs/architecture.md);
# key_padding: ids at padded positions (attention_mask False) never change outputs at real positions.
CAPABILITIES: frozenset[str] = frozenset({"causal", "kv_cache", "key_padding"})


class NotApplicable(Exception):
    """Raised by a check whose inputs cannot exercise it (e.g. a batch without padding); tests skip."""


@dataclass(frozen=True)
class Check:
    """A named conformance check: ``check(subject)`` returns None or raises AssertionError."""

    name: str
    kind: str
    requires: frozenset[str]
    fn: Callable[[Any], None]

    def __call__(self, subject: Any) -> None:
        self.fn(subject)

    def __repr__(self) -> str:
        return f"Check({self.name})"


_REGISTRY: dict[str, list[Check]] = {kind: [] for kind in KINDS}


def register(kind: Kind, requires: Iterable[str] = ()) -> Callable[[Callable[[Any], None]], Callable[[Any], None]]:
    """Decorator adding a check function to the registry (the function itself is returned unchanged)."""
    needs = frozenset(requires)
    if kind not in _REGISTRY or not needs <= CAPABILITIES:
        raise ValueError(
            f"register(kind={kind!r}, requires={sorted(needs)}): kinds are {KINDS}, "
            f"capabilities {sorted(CAPABILITIES)}."
        )

    def wrap(fn: Callable[[Any], None]) -> Callable[[Any], None]:
        _REGISTRY[kind].append(Check(fn.__name__, kind, needs, fn))
        return fn

    return wrap


def checks_for(kind: Kind, capabilities: Iterable[str] = ()) -> list[Check]:
    """The checks of ``kind`` whose required capabilities are all in ``capabilities``."""
    _load_checks()
    if kind not in _REGISTRY:
        raise ValueError(f"Unknown check kind {kind!r}; choose one of {KINDS}.")
    caps = frozenset(capabilities)
    unknown = caps - CAPABILITIES
    if unknown:
        raise ValueError(f"Unknown capabilities {sorted(unknown)}; known: {sorted(CAPABILITIES)}.")
    return [c for c in _REGISTRY[kind] if c.requires <= caps]


def _load_checks() -> None:
    """Import the check modules so that their ``@register`` decorators have run."""
    from xlm_core.testing import collator_checks, loss_checks, model_checks, predictor_checks  # noqa: F401
