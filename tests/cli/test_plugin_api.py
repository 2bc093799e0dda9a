"""The versioned plugin API: xlm_core.api's surface, declared API versions and what the CLI says of them."""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

import pytest

import xlm_core.api as api
from xlm_core.plugin.hookspecs import hookimpl
from xlm_core.plugin.manager import load_families
from xlm_core.plugin.version import PLUGIN_API_VERSION, api_version_problem, parse_api_version
from xlm_core.scaffold import compatible_range

REPO = Path(__file__).resolve().parents[2]


def test_every_public_name_is_importable_from_its_own_home() -> None:
    assert len(api.__all__) == len(set(api.__all__))
    for name in api.__all__:
        obj = getattr(api, name)
        home = getattr(obj, "__module__", None)
        if home is not None and name not in ("PLUGIN_API_VERSION", "PREDICTION_TEXT_KEY"):
            assert not home.startswith("xlm_core._"), (name, home)
            assert getattr(importlib.import_module(home), name, obj) is obj


def test_the_public_surface_is_documented() -> None:
    text = (REPO / "docs" / "plugins.md").read_text()
    missing = [name for name in api.__all__ if f"`{name}`" not in text]
    assert not missing, f"docs/plugins.md does not name {missing}"


@pytest.mark.parametrize(
    "declared, problem",
    [
        (PLUGIN_API_VERSION, None),
        ("1.0", None),
        ("0.9", "targets plugin API 0.9 but this xlm-core provides 1.0"),
        ("2.0", "targets plugin API 2.0 but this xlm-core provides 1.0"),
        ("1.7", "targets plugin API 1.7, newer than this xlm-core's 1.0: upgrade xlm-core"),
        (None, "declares no plugin API version"),
    ],
)
def test_api_version_problems(declared, problem) -> None:
    got = api_version_problem(declared, provided="1.0")
    assert got is None if problem is None else got.startswith(problem)


@pytest.mark.parametrize("bad", ["1", "v1.0", "1.0.0", 1.0, ""])
def test_a_malformed_api_version_is_a_plugin_error_naming_it(tmp_path: Path, bad) -> None:
    with pytest.raises(ValueError, match="is not 'MAJOR.MINOR'"):
        parse_api_version(bad)
    cfg = tmp_path / "cfg"
    (cfg / "experiment").mkdir(parents=True)
    (cfg / "experiment" / "e.yaml").write_text("# @package _global_\n")

    @hookimpl
    def register_families(register):
        register("fam", str(cfg), "A family.", api_version=bad)

    module = ModuleType("p")
    module.register_families = register_families
    reg = load_families(modules={"p": module})
    assert not reg.families and len(reg.errors) == 1
    assert f"family 'fam': api_version={bad!r} is not 'MAJOR.MINOR'" in reg.errors[0].error


@pytest.mark.parametrize(
    "version, pinned", [("0.2.0", "xlm-core>=0.2,<0.3"), ("0.2.7", "xlm-core>=0.2,<0.3"), ("1.4.2", "xlm-core>=1.4,<2")]
)
def test_the_scaffold_pins_the_releases_that_keep_the_api(version, pinned) -> None:
    assert compatible_range("xlm-core", version) == pinned


def _block(listing: str, header: str) -> str:
    """The indented lines under ``header`` in ``xlm families`` output."""
    lines = listing.split(header + "\n", 1)[1].splitlines()
    return "\n".join(
        line for line in lines[: next((i for i, x in enumerate(lines) if not x.startswith("  ")), len(lines))]
    )


def test_families_shows_the_api_and_warns_on_a_mismatch(install_families, capsys) -> None:
    from xlm_core.cli import main

    install_families("xlm-clitest", "xlm-clitest-legacy")
    assert main(["families"]) == 0
    out = capsys.readouterr().out
    legacy = _block(out, "legacy  (xlm-clitest-legacy 0.1.0)")
    assert "  plugin API:  (not declared)" in legacy
    assert "  warning: declares no plugin API version" in legacy
    current = _block(out, "clitest  (xlm-clitest 0.1.0)")
    assert "  plugin API:  1.0" in current and "warning" not in current
    assert out.rstrip().endswith(f"provides plugin API {PLUGIN_API_VERSION}.")
    code = main(["family=legacy", "experiment=tiny_exp", "job_type=name"])
    err = capsys.readouterr().err
    assert code == 0 and err.startswith("xlm: warning: family 'legacy' declares no plugin API version")
    assert main(["family=clitest", "experiment=tiny_exp", "job_type=name"]) == 0
    assert "warning" not in capsys.readouterr().err
