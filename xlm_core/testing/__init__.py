"""Conformance suites that every family's components must pass.

Two ways to use them (pytest is imported only by the mixins / parametrize helper):

- mixins: ``from xlm_core.testing import BaseModelTests`` and subclass with the fixtures its
  docstring names (enable the shared fixtures with ``pytest_plugins = ["xlm_core.testing.fixtures"]``);
- plain checks: ``checks_for("model", capabilities={"causal"})`` -> list of ``Check``; call each with a
  ``ModelSubject`` / ``LossSubject`` / ``CollatorSubject`` / ``PredictorSubject`` (AssertionError on failure),
  or decorate a test with ``parametrize_with_checks(kind, capabilities)``.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "BaseModelTests",
    "BaseLossTests",
    "BaseCollatorTests",
    "BasePredictorTests",
    "parametrize_with_checks",
    "run_check",
    "checks_for",
    "Check",
    "NotApplicable",
    "CAPABILITIES",
    "ModelSubject",
    "LossSubject",
    "CollatorSubject",
    "PredictorSubject",
    "make_lm_inputs",
]

_LAZY = {
    "BaseModelTests": "xlm_core.testing.mixins",
    "BaseLossTests": "xlm_core.testing.mixins",
    "BaseCollatorTests": "xlm_core.testing.mixins",
    "BasePredictorTests": "xlm_core.testing.mixins",
    "parametrize_with_checks": "xlm_core.testing.parametrize",
    "run_check": "xlm_core.testing.parametrize",
    "checks_for": "xlm_core.testing.suite",
    "Check": "xlm_core.testing.registry",
    "NotApplicable": "xlm_core.testing.registry",
    "CAPABILITIES": "xlm_core.testing.registry",
    "ModelSubject": "xlm_core.testing.model_checks",
    "LossSubject": "xlm_core.testing.loss_checks",
    "CollatorSubject": "xlm_core.testing.collator_checks",
    "PredictorSubject": "xlm_core.testing.predictor_checks",
    "make_lm_inputs": "xlm_core.testing.inputs",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'xlm_core.testing' has no attribute {name!r}")
