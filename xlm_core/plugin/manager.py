"""Discovery and validation of model-family plugins.

Every entry point of group ``xlm`` names a plugin module; each is imported and registered with a
pluggy manager one at a time, so one broken plugin is reported by name while the others keep
working (``SystemExit`` from a plugin included; only ``KeyboardInterrupt`` propagates). Families are
contributed through the ``register_families(register)`` hook; the core owns validation (names,
duplicates, config directories, components against their protocols, see ``xlm_core.plugin.components``).
Nothing is discovered through the current directory or environment variables.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from importlib.abc import Traversable
from pathlib import Path
from types import MappingProxyType
from typing import Any, Protocol, runtime_checkable

import pluggy

from xlm_core.plugin import hookspecs
from xlm_core.plugin.components import FamilyComponents, validate_components
from xlm_core.plugin.names import FamilyNames, as_family_names
from xlm_core.plugin.version import api_version_problem, parse_api_version

__all__ = [
    "ENTRY_POINT_GROUP",
    "FamilyInfo",
    "PluginError",
    "FamilyNotFoundError",
    "FamilyRegistry",
    "create_plugin_manager",
    "load_families",
    "get_registry",
    "reset_registry",
    "get_families",
    "get_family",
    "get_plugin_errors",
]

ENTRY_POINT_GROUP = hookspecs.PROJECT_NAME
_FAMILY_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
_NOT_INSTALLED = "(not installed)"


@dataclass(frozen=True)
class FamilyInfo:
    """What the core knows about one installed family (``names``: the keys of its batches and predictions,
    :class:`xlm_core.plugin.names.FamilyNames`)."""

    name: str
    distribution: str
    version: str
    config_dir: Path
    description: str
    plugin: str
    experiments: tuple[str, ...] = ()
    components: FamilyComponents = field(default_factory=FamilyComponents)
    names: FamilyNames = field(default_factory=FamilyNames)
    api_version: str | None = None

    @property
    def api_problem(self) -> str | None:
        """Why this family may not work with this core's plugin API (None when it should)."""
        return api_version_problem(self.api_version)

    @property
    def searchpath(self) -> str:
        """The Hydra search-path entry of the family's config tree."""
        return self.config_dir.as_uri()


@dataclass(frozen=True)
class PluginError:
    """A plugin (or one of its families) that could not be loaded, and why."""

    plugin: str
    distribution: str
    error: str

    def __str__(self) -> str:
        return f"plugin '{self.plugin}' ({self.distribution}): {self.error}"


class FamilyNotFoundError(LookupError):
    """Raised for a family name that no installed plugin registers."""


@dataclass(frozen=True)
class _PluginSource:
    """One plugin to load: its name, where it comes from and how to import it."""

    name: str
    distribution: str
    version: str
    load: Callable[[], object]

    @property
    def label(self) -> str:
        """``"<distribution> <version>"`` for messages."""
        return f"{self.distribution} {self.version}" if self.version else self.distribution


@dataclass
class FamilyRegistry:
    """The result of loading plugins: valid families, errors, and the pluggy manager."""

    families: Mapping[str, FamilyInfo]
    errors: tuple[PluginError, ...]
    plugin_manager: pluggy.PluginManager
    conflicts: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def get(self, name: str) -> FamilyInfo:
        """The family called ``name``; an unknown name raises an error listing what exists."""
        if name in self.families:
            return self.families[name]
        if name in self.conflicts:
            raise FamilyNotFoundError(
                f"family '{name}' is registered by more than one plugin "
                f"({', '.join(self.conflicts[name])}); uninstall all but one of them"
            )
        raise FamilyNotFoundError(f"unknown family '{name}'; {self.describe_installed()}")

    def families_with_experiment(self, experiment: str) -> list[FamilyInfo]:
        """The families whose config tree holds ``experiment/<experiment>.yaml``."""
        return [f for f in self.families.values() if experiment in f.experiments]

    def describe_installed(self) -> str:
        """One line naming the installed families and any broken plugins."""
        names = ", ".join(self.families) if self.families else "none"
        text = f"installed families: {names}"
        if self.errors:
            text += "; broken plugins: " + "; ".join(str(e) for e in self.errors)
        if not self.families:
            text += (
                " (install a family distribution, e.g. `pip install -e xlm_plugins/arlm` from a checkout "
                "of xlm or a family's wheel; `xlm families` lists them)"
            )
        return text


# What a plugin may raise without taking down the other families: everything but Ctrl-C.
_PLUGIN_FAILURES = (Exception, SystemExit)
_COMPONENT_ARGS = frozenset({"model_protocol", "models", "losses", "collators", "predictors", "metrics", "exporters"})


def _describe(exc: BaseException) -> str:
    if isinstance(exc, SystemExit):
        return f"SystemExit({exc.code!r}) (a plugin must not exit the process)"
    return f"{type(exc).__name__}: {exc}"


@runtime_checkable
class EntryPointLike(Protocol):
    """What the loader uses of an entry point. Structural, because once the ``importlib_metadata``
    backport is imported (mlflow does) the stdlib's ``entry_points()`` returns the backport's class."""

    name: str

    def load(self) -> Any: ...


def create_plugin_manager() -> pluggy.PluginManager:
    """A pluggy manager for project "xlm" that knows the core hookspecs."""
    pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    return pm


def _sources_from_entry_points(entry_points: Iterable[EntryPointLike]) -> list[_PluginSource]:
    sources = []
    for ep in entry_points:
        dist = getattr(ep, "dist", None)
        sources.append(
            _PluginSource(
                name=ep.name,
                distribution=dist.name if dist is not None else _NOT_INSTALLED,
                version=dist.version if dist is not None else "",
                load=ep.load,
            )
        )
    return sources


def _sources_from_modules(modules: Mapping[str, object]) -> list[_PluginSource]:
    return [
        _PluginSource(name=name, distribution=_NOT_INSTALLED, version="", load=lambda m=module: m)
        for name, module in modules.items()
    ]


def _as_directory(config_dir: Any) -> Path:
    """A filesystem path for what a plugin passed as its config dir; raises ValueError if none."""
    if isinstance(config_dir, (str, os.PathLike)):
        return Path(config_dir).expanduser().resolve()
    if isinstance(config_dir, Traversable):
        paths = getattr(config_dir, "_paths", None)  # a namespace package's MultiplexedPath
        if paths is not None and len(paths) == 1:
            return Path(paths[0]).resolve()
        raise ValueError(
            f"config dir {config_dir!r} is not a single directory on the file system; pass "
            "importlib.resources.files('<your package>') / 'configs' from a package installed "
            "as plain files (not a zip)"
        )
    raise ValueError(f"config dir must be a str, os.PathLike or importlib Traversable, got {type(config_dir).__name__}")


def _experiments(config_dir: Path) -> tuple[str, ...]:
    exp_dir = config_dir / "experiment"
    if not exp_dir.is_dir():
        return ()
    return tuple(sorted(p.relative_to(exp_dir).with_suffix("").as_posix() for p in exp_dir.rglob("*.yaml")))


def _validate_family(name: Any, config_dir: Any, description: Any) -> tuple[str, Path, str]:
    """Check one ``register(...)`` call; returns normalised values or raises ValueError."""
    if not isinstance(name, str) or not _FAMILY_NAME.match(name):
        raise ValueError(
            f"invalid family name {name!r}: use letters, digits, '_', '-' or '.', starting with a letter, digit or '_'"
        )
    if not isinstance(description, str):
        raise ValueError(f"family '{name}': description must be a str, got {type(description).__name__}")
    path = _as_directory(config_dir)
    if not path.exists():
        raise ValueError(f"family '{name}': config dir {path} does not exist")
    if not path.is_dir():
        raise ValueError(f"family '{name}': config dir {path} is not a directory")
    if not any(path.rglob("*.yaml")):
        raise ValueError(
            f"family '{name}': config dir {path} holds no .yaml files (are the configs "
            "listed in the package data of its distribution?)"
        )
    return name, path, " ".join(description.split())


def load_families(
    entry_points: Iterable[EntryPointLike] | None = None,
    *,
    modules: Mapping[str, object] | None = None,
) -> FamilyRegistry:
    """Load plugins and collect their families.

    With no arguments, every entry point of group ``xlm`` of the environment is loaded. Tests pass
    explicit ``entry_points`` and/or ``modules`` (plugin name -> module object) instead.
    """
    if entry_points is None and modules is None:
        entry_points = metadata.entry_points(group=ENTRY_POINT_GROUP)
    sources = _sources_from_entry_points(tuple(entry_points or ())) + _sources_from_modules(modules or {})

    pm = create_plugin_manager()
    errors: list[PluginError] = []
    families: dict[str, FamilyInfo] = {}
    owners: dict[str, list[tuple[str, str]]] = {}  # family name -> (plugin, dist) of registrants

    for source in sources:
        fail = functools.partial(PluginError, source.name, source.label)
        try:
            plugin = source.load()
        except _PLUGIN_FAILURES as exc:  # a plugin's import may raise anything; report it, keep going
            errors.append(fail(f"import failed: {_describe(exc)}"))
            continue
        try:
            pm.register(plugin, name=f"{source.distribution}:{source.name}")
            pm.check_pending()
        except (ValueError, pluggy.PluginValidationError) as exc:
            if pm.is_registered(plugin) and pm.get_name(plugin) == f"{source.distribution}:{source.name}":
                pm.unregister(plugin)
            errors.append(fail(f"invalid plugin: {exc}"))
            continue

        pending: list[FamilyInfo] = []

        def register(
            name: Any,
            config_dir: Any,
            description: Any = "",
            api_version: Any = None,
            names: Any = None,
            **components: Any,
        ) -> None:
            """The callback handed to ``register_families``: validates and records one family.

            ``name`` (str), ``config_dir`` (str, path or Traversable), ``description`` (str) and
            ``api_version`` (``"MAJOR.MINOR"`` of the plugin API the family targets, see
            ``xlm_core.plugin.version``) come from the plugin and are checked here (any value), so a bad
            one is reported as that plugin's error. ``names``: the keys of the family's batches and
            predictions (``xlm_core.plugin.names.FamilyNames``; default: today's names).
            ``components``: model_protocol, models, losses, collators, predictors, metrics, exporters
            (see ``xlm_core.plugin.components``).
            The hook runs inside this loop iteration, so the loop variables it reads are the current ones.
            """
            try:
                fam_name, path, desc = _validate_family(name, config_dir, description)
                if api_version is not None:
                    try:
                        parse_api_version(api_version)
                    except ValueError as exc:
                        raise ValueError(f"family '{fam_name}': {exc}") from None
                try:
                    declared = as_family_names(names, fam_name)
                except (TypeError, ValueError) as exc:
                    raise ValueError(
                        str(exc) if str(exc).startswith("family") else f"family '{fam_name}': {exc}"
                    ) from None
                unknown = sorted(set(components) - _COMPONENT_ARGS)
                if unknown:
                    raise ValueError(
                        f"family '{fam_name}': register() got unknown argument(s) {unknown}; "
                        f"it takes name, config_dir, description, api_version, names and the components "
                        f"{', '.join(sorted(_COMPONENT_ARGS))}"
                    )
                try:
                    registered = validate_components(**components)
                except ValueError as exc:
                    raise ValueError(f"family '{fam_name}': {exc}") from None
            except ValueError as exc:
                errors.append(fail(str(exc)))  # noqa: B023
                return
            pending.append(  # noqa: B023
                FamilyInfo(
                    name=fam_name,
                    distribution=source.distribution,  # noqa: B023
                    version=source.version,  # noqa: B023
                    config_dir=path,
                    description=desc,
                    plugin=source.name,  # noqa: B023
                    experiments=_experiments(path),
                    components=registered,
                    names=declared,
                    api_version=api_version,
                )
            )

        others = [p for p in pm.get_plugins() if p is not plugin]
        try:
            pm.subset_hook_caller("register_families", remove_plugins=others)(register=register)
        except _PLUGIN_FAILURES as exc:
            errors.append(fail(f"register_families raised {_describe(exc)}"))
            pm.unregister(plugin)
            continue
        for info in pending:
            owners.setdefault(info.name, []).append((info.plugin, source.label))
            families.setdefault(info.name, info)

    conflicts: dict[str, tuple[str, ...]] = {}
    for name, who in owners.items():
        if len(who) < 2:
            continue
        described = tuple(f"plugin '{plugin}' ({dist})" for plugin, dist in who)
        conflicts[name] = described
        del families[name]
        errors.append(
            PluginError(
                plugin=who[-1][0],
                distribution=who[-1][1],
                error=f"duplicate family name '{name}', registered by {' and '.join(described)}; "
                "uninstall all but one of them",
            )
        )
    return FamilyRegistry(
        families=MappingProxyType(dict(sorted(families.items()))),
        errors=tuple(errors),
        plugin_manager=pm,
        conflicts=MappingProxyType(conflicts),
    )


@functools.lru_cache(maxsize=1)
def get_registry() -> FamilyRegistry:
    """The registry of the installed plugins, loaded once per process."""
    return load_families()


def reset_registry() -> None:
    """Forget the loaded registry, so the next call rediscovers installed plugins."""
    get_registry.cache_clear()


def get_families() -> dict[str, FamilyInfo]:
    """All valid installed families, by name."""
    return dict(get_registry().families)


def get_family(name: str) -> FamilyInfo:
    """The installed family ``name``; unknown names raise FamilyNotFoundError listing what exists."""
    return get_registry().get(name)


def get_plugin_errors() -> list[PluginError]:
    """Plugins (or families) that failed to load, with their errors."""
    return list(get_registry().errors)
