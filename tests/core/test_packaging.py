"""The xlm-core distribution lists every package, and ships the top-level configs/ as xlm_core.configs."""

from __future__ import annotations

import tomllib
from importlib.resources import files
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_subpackage_is_listed_in_pyproject() -> None:
    tool = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(tool["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "xlm_core").rglob("__init__.py")}
    assert found | {"xlm_core.configs"} == listed
    assert tool["package-dir"] == {"xlm_core.configs": "configs"}


def test_core_config_tree_is_found_through_package_resources() -> None:
    tree = files("xlm_core.configs")
    assert Path(str(tree)).resolve() == (ROOT / "configs").resolve()
    assert (tree / "config.yaml").is_file() and (tree / "datasets" / "star.yaml").is_file()
