"""All conformance checks, selected by kind and capability (imports every check module once)."""

from __future__ import annotations

from collections.abc import Iterable

from xlm_core.testing import collator_checks, loss_checks, model_checks, predictor_checks  # noqa: F401 (registers)
from xlm_core.testing.registry import CAPABILITIES, Check, Kind, registered_checks

__all__ = ["checks_for"]


def checks_for(kind: Kind, capabilities: Iterable[str] = ()) -> list[Check]:
    """The checks of ``kind`` whose required capabilities are all in ``capabilities``."""
    caps = frozenset(capabilities)
    unknown = caps - CAPABILITIES
    if unknown:
        raise ValueError(f"Unknown capabilities {sorted(unknown)}; known: {sorted(CAPABILITIES)}.")
    return [c for c in registered_checks(kind) if c.requires <= caps]
