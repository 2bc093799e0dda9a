"""Run-time checking of type annotations (jaxtyping shapes/dtypes included) with beartype.

``install_hook(packages)`` makes every later import of ``packages`` check each function's
arguments and return value against its annotations; a wrong shape or dtype at a component
boundary then raises ``jaxtyping.TypeCheckError``. Used three ways:

- the test suite: this module is a pytest plugin (``-p xlm_core.testing.typecheck`` and
  ``--typecheck-packages=xlm_core,xlm_arlm,...`` in pyproject's ``addopts``); packages that are
  not installed are ignored, and ``--typecheck-packages=`` turns the checking off;
- ``xlm check FAMILY --jaxtyping``: the conformance checks of a family, checked;
- ``unchecked()``: a block without checks, for tests of a function's own validation message
  that the hook would pre-empt.

The checker is beartype with the PEP 484 numeric tower (an ``int`` is a valid ``float``, as for
static checkers), plus the fields of ``TypedDict`` hints (batches, loss and prediction dicts), which
beartype alone checks only as mappings: each field is checked against its annotation, and jaxtyping
dimension names are shared with the function's other arguments and return value.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import inspect
import sys
import types
import typing
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import jaxtyping

__all__ = ["TYPECHECKER", "checker", "install_hook", "unchecked"]

TYPECHECKER = "xlm_core.testing.typecheck.checker"
"""The checker the import hook applies, by name (jaxtyping evaluates it when it decorates)."""

# Imported before the hook: while jaxtyping's loader runs a checked module it redirects the bytecode
# cache of every module imported meanwhile to its own file name, so these would be compiled from source
# (seconds per process, or stray *.opt-jaxtyping*.pyc files in site-packages).
_PRELOAD = ("numpy", "torch", "lightning", "hydra", "omegaconf", "pluggy", "datasets", "transformers", "torchmetrics")


@functools.cache
def _conf() -> Any:
    import beartype

    return beartype.BeartypeConf(is_pep484_tower=True)


def _typed_dicts(hint: Any) -> tuple[type, ...]:
    """The TypedDict classes of a hint that is one, or a union of them (``| None`` allowed); else ()."""
    if typing.is_typeddict(hint):
        return (hint,)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if args and all(typing.is_typeddict(a) for a in args):
            return tuple(args)
    return ()


@functools.cache
def _fields(typed_dict: type) -> tuple[dict[str, Any], frozenset[str]]:
    """Field annotations and required keys of a TypedDict."""
    return typing.get_type_hints(typed_dict), frozenset(typed_dict.__required_keys__)


def _field_error(value: Any, typed_dict: type) -> str | None:
    """Why ``value`` does not match ``typed_dict`` (None when it does, or is no mapping: beartype says so)."""
    from beartype.door import is_bearable

    if not isinstance(value, Mapping):
        return None
    hints, required = _fields(typed_dict)
    missing = sorted(required - value.keys())
    if missing:
        return f"{typed_dict.__name__} lacks key(s) {missing}"
    for key, hint in hints.items():
        if key in value and not is_bearable(value[key], hint, conf=_conf()):
            got, shape = value[key], getattr(value[key], "shape", None)
            what = type(got).__name__ + (f" {getattr(got, 'dtype', '')}{list(shape)}" if shape is not None else "")
            return f"{typed_dict.__name__}[{key!r}] is {what}, not {hint}"
    return None


def checker(fn: Callable[..., Any]) -> Callable[..., Any]:
    """beartype ``fn`` (numeric tower), and check the fields of its TypedDict arguments and return value."""
    import beartype

    checked = beartype.beartype(conf=_conf())(fn)
    sig = inspect.signature(fn)
    returns = _typed_dicts(sig.return_annotation)
    params = {n: tds for n, p in sig.parameters.items() if (tds := _typed_dicts(p.annotation))}
    if not params and not returns:
        return checked

    @functools.wraps(checked)
    def check_typed_dicts(*args: Any, **kwargs: Any) -> Any:
        out = checked(*args, **kwargs)
        bound = sig.bind(*args, **kwargs).arguments
        for where, value, tds in [
            *((f"parameter {n!r}", bound.get(n), t) for n, t in params.items()),
            *([("return value", out, returns)] if returns else []),
        ]:
            errors = [_field_error(value, td) for td in tds]
            if errors and all(errors):
                raise jaxtyping.TypeCheckError(f"{fn.__qualname__}: {where}: {'; '.join(e for e in errors if e)}")
        return out

    return check_typed_dicts


def install_hook(packages: Sequence[str]) -> None:
    """Check annotations at run time in every module of ``packages`` imported from now on."""
    from beartype.roar import BeartypeDecorHintPep585DeprecationWarning

    own = {"xlm_core", "xlm_core._moved", "xlm_core.testing", __name__}  # imported to get here; hold no checked code
    already = sorted(
        m for m in list(sys.modules) if m not in own and any(m == p or m.startswith(p + ".") for p in packages)
    )
    if already:
        raise RuntimeError(f"cannot type-check {', '.join(already)}: imported before the hook was installed")
    for name in _PRELOAD:
        with contextlib.suppress(ImportError):
            importlib.import_module(name)
    # beartype flags omegaconf's DictConfig (a typing.MutableMapping subclass) in hints; not a type error.
    warnings.filterwarnings("ignore", category=BeartypeDecorHintPep585DeprecationWarning)
    jaxtyping.install_import_hook(list(packages), TYPECHECKER)


@contextlib.contextmanager
def unchecked() -> Iterator[None]:
    """Switch the hook's checks off inside the block (a no-op without the hook)."""
    previous = jaxtyping.config.jaxtyping_disable
    jaxtyping.config.update("jaxtyping_disable", True)
    try:
        yield
    finally:
        jaxtyping.config.update("jaxtyping_disable", previous)


def pytest_addoption(parser: Any) -> None:
    """``--typecheck-packages=PKG,...``: the packages whose annotations are checked during the tests."""
    parser.getgroup("xlm").addoption(
        "--typecheck-packages",
        default="",
        metavar="PKG,...",
        help="check type/jaxtyping annotations at run time (beartype) in these packages; empty: off",
    )


def pytest_load_initial_conftests(early_config: Any, parser: Any, args: list[str]) -> None:
    """Install the hook before conftest files and test modules import the packages."""
    value = parser.parse_known_args(args).typecheck_packages
    packages = [p.strip() for p in (value or "").split(",") if p.strip()]
    if packages:
        install_hook(packages)
