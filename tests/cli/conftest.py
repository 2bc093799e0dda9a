"""Installs test-only family distributions into a temporary site dir for the CLI tests.

Each distribution is a real ``*.dist-info`` with an ``entry_points.txt``, so the CLI finds it
through ``importlib.metadata`` exactly as it finds an installed wheel.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from xlm_core.plugin.manager import reset_registry

FIXTURE_FAMILY = Path(__file__).parent / "fixture_family"

# distribution name -> (version, entry point name, plugin module)
DISTRIBUTIONS = {
    "xlm-clitest": ("0.1.0", "clitest", "xlm_clitest.plugin"),
    "xlm-clitest-twin": ("0.3.0", "twin", "xlm_clitest.twin_plugin"),
    "xlm-clitest-broken": ("0.2.0", "clitest-broken", "xlm_clitest.broken_plugin"),
    "xlm-clitest-r2l": ("0.1.0", "r2l", "xlm_clitest.r2l_plugin"),
    "xlm-clitest-legacy": ("0.1.0", "legacy", "xlm_clitest.legacy_plugin"),
}


def _write_dist(site: Path, dist: str, version: str, ep_name: str, module: str) -> None:
    info = site / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(f"[xlm]\n{ep_name} = {module}\n")


@pytest.fixture
def install_families(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Path]:
    """Return ``install(*dists)``: puts the named test distributions on sys.path; undone after."""
    site = tmp_path / "site"
    site.mkdir()
    shutil.copytree(FIXTURE_FAMILY / "xlm_clitest", site / "xlm_clitest")

    def install(*dists: str) -> Path:
        for dist in dists:
            _write_dist(site, dist, *DISTRIBUTIONS[dist])
        monkeypatch.syspath_prepend(str(site))
        reset_registry()
        return site

    yield install
    reset_registry()
    for name in [m for m in sys.modules if m == "xlm_clitest" or m.startswith("xlm_clitest.")]:
        del sys.modules[name]


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty current directory, so default paths (root_dir = cwd) land in tmp."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return work


@pytest.fixture(autouse=True)
def restore_logging():
    """Hydra configures the root logger for real runs; give each test (and the next ones) a clean one."""
    import logging

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
