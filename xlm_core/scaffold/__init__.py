"""``xlm new-family NAME``: write a new family package from the templates shipped in ``xlm_core/scaffold/template``.

Template files end in ``.tmpl`` (so nothing imports, collects or lints them) and hold placeholders that
cannot clash with Hydra's ``${...}``; each is replaced in file contents and in paths:

- ``__FAMILY__``: the family name (``family=<name>``, the entry-point name), e.g. ``mylm``;
- ``__PACKAGE__``: the import package, ``xlm_<name>``; ``__DIST__``: the distribution, ``xlm-<name>``;
- ``__CLASS__``: the CamelCase prefix of the class names, e.g. ``Mylm``;
- ``__CORE_REQUIREMENT__``: the requirement on xlm-core, at least the running version.
"""

from __future__ import annotations

import re
from importlib import metadata, resources
from importlib.abc import Traversable
from importlib.util import find_spec
from pathlib import Path

from xlm_core.errors import UsageError

__all__ = [
    "TEMPLATE_SUFFIX",
    "compatible_range",
    "placeholders",
    "render_files",
    "scaffold_family",
    "validate_family_name",
]

TEMPLATE_SUFFIX = ".tmpl"
_TEMPLATE_DIR = "template"
_NAME = re.compile(r"[a-z][a-z0-9_]*")
_MAX_NAME = 32


def validate_family_name(name: str) -> str:
    """``name`` if it can be a family, a package suffix and a distribution suffix; else a UsageError."""
    if not isinstance(name, str) or not _NAME.fullmatch(name) or len(name) > _MAX_NAME:
        raise UsageError(
            f"invalid family name {name!r}: use lowercase letters, digits and '_', starting with a "
            f"letter, at most {_MAX_NAME} characters (e.g. mylm)"
        )
    if find_spec(f"xlm_{name}") is not None:
        raise UsageError(f"a package named xlm_{name} is already importable here; choose another family name")
    return name


def _core_requirement() -> str:
    """The xlm-core versions the new family works with: this one up to the next breaking release."""
    try:
        version = metadata.version("xlm-core")
    except metadata.PackageNotFoundError:  # xlm_core imported from a source tree that was never installed
        return "xlm-core"
    return compatible_range("xlm-core", version)


def compatible_range(distribution: str, version: str) -> str:
    """``dist>=X.Y,<next-breaking`` for ``version`` (below 1.0 a minor release may break, from 1.0 a major one)."""
    major, minor = (int(part) for part in version.split(".")[:2])
    upper = f"0.{minor + 1}" if major == 0 else f"{major + 1}"
    return f"{distribution}>={major}.{minor},<{upper}"


def placeholders(name: str) -> dict[str, str]:
    """Placeholder -> value for family ``name`` (see the module docstring)."""
    return {
        "__FAMILY__": name,
        "__PACKAGE__": f"xlm_{name}",
        "__DIST__": f"xlm-{name}",
        "__CLASS__": "".join(part.capitalize() for part in name.split("_")),
        "__CORE_REQUIREMENT__": _core_requirement(),
    }


def _fill(text: str, values: dict[str, str]) -> str:
    for key, value in values.items():
        text = text.replace(key, value)
    return text


def _templates(node: Traversable, prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Traversable]]:
    """Every ``.tmpl`` file below ``node`` with its relative path parts, sorted."""
    found: list[tuple[tuple[str, ...], Traversable]] = []
    for child in node.iterdir():
        if child.is_dir():
            found += _templates(child, (*prefix, child.name))
        elif child.name.endswith(TEMPLATE_SUFFIX):
            found.append(((*prefix, child.name), child))
    return sorted(found, key=lambda item: item[0])


def render_files(name: str) -> dict[str, str]:
    """Relative path -> contents of every file of the family ``name`` (nothing is written)."""
    values = placeholders(name)
    root = resources.files("xlm_core.scaffold") / _TEMPLATE_DIR
    return {
        _fill("/".join(parts), values).removesuffix(TEMPLATE_SUFFIX): _fill(node.read_text("utf-8"), values)
        for parts, node in _templates(root)
    }


def scaffold_family(name: str, directory: str | Path | None = None) -> Path:
    """Create the family package ``xlm-<name>`` in ``directory`` (default ``./xlm-<name>``); return its root.

    Refuses an existing ``directory``: nothing is ever overwritten.
    """
    validate_family_name(name)
    root = Path(directory if directory is not None else f"xlm-{name}").expanduser().resolve()
    if root.exists():
        raise UsageError(f"{root} already exists; pass a new directory with --dir (xlm new-family never overwrites)")
    files = render_files(name)
    root.mkdir(parents=True)
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root
