"""Run checks under pytest: ``run_check`` (NotApplicable -> skip) and ``parametrize_with_checks``."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from xlm_core.testing.registry import Kind, NotApplicable
from xlm_core.testing.suite import checks_for

__all__ = ["run_check", "parametrize_with_checks"]


def run_check(check: Callable[[Any], None], subject: Any) -> None:
    """Call ``check(subject)``; a check that cannot apply to these inputs skips the test with its reason."""
    try:
        check(subject)
    except NotApplicable as e:
        import pytest

        name = getattr(check, "name", None) or getattr(check, "__name__", repr(check))
        pytest.skip(str(e) if str(e).startswith(name) else f"{name}: {e}")


def parametrize_with_checks(kind: Kind, capabilities: Iterable[str] = ()) -> Any:
    """``pytest.mark.parametrize("check", ...)`` over the checks of ``kind`` that ``capabilities`` allow.

    Example::

        @parametrize_with_checks("model", capabilities={"causal", "key_padding"})
        def test_model(check, model, run_forward, vocab_size):
            run_check(check, ModelSubject(model, run_forward, vocab_size))
    """
    import pytest

    checks = checks_for(kind, capabilities)
    return pytest.mark.parametrize("check", checks, ids=[c.name for c in checks])
