"""An out-of-tree family (examples/xlm-example-family), built as a wheel and installed next to
xlm-core and xlm-arlm, is listed, composes with family=example and passes its conformance tests;
an installed family whose import raises is reported by name while the others keep working."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from xlm_wheel_env import CORE_SOURCES, REPO, Venv, build_wheel, make_venv

pytestmark = pytest.mark.integration

EXAMPLE = REPO / "examples" / "xlm-example-family"


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Venv:
    work = tmp_path_factory.mktemp("external")
    wheels = [
        build_wheel(REPO, work, only=CORE_SOURCES),
        build_wheel(REPO / "xlm_plugins" / "arlm", work),
        build_wheel(EXAMPLE, work),
    ]
    venv = make_venv(work)
    venv.install(*wheels)
    return venv


def test_example_family_is_listed(venv: Venv, tmp_path: Path) -> None:
    payload = json.loads(venv.run(["xlm", "families", "--json"], cwd=tmp_path).stdout)
    assert payload["errors"] == []
    families = {f["name"]: f for f in payload["families"]}
    assert set(families) >= {"arlm", "example"}
    assert families["example"] == {
        "name": "example",
        "distribution": "xlm-example-family",
        "version": "0.1.0",
        "config_dir": str(venv.site_packages / "xlm_example_family" / "configs"),
        "description": "Example family: causal running-mean language model (docs/plugins.md).",
        "experiments": ["star_easy_example"],
    }


def test_example_family_composes(venv: Venv, tmp_path: Path) -> None:
    proc = venv.run(["xlm", "experiment=star_easy_example", "job_type=name"], cwd=tmp_path)
    assert proc.stderr.splitlines()[0] == (
        "xlm: note: using family=example, the only installed family with experiment=star_easy_example"
    )
    cfg = yaml.safe_load(proc.stdout)
    assert (cfg["family"], cfg["job_name"], cfg["block_size"]) == ("example", "star_easy_example", 48)
    assert cfg["model"]["_target_"] == "xlm_example_family.model.RunningMeanLM"
    assert cfg["loss"] == {"_target_": "xlm_example_family.loss.NextTokenLoss"}
    assert cfg["collator"]["train"]["_target_"] == "xlm_example_family.collator.NextTokenCollator"
    assert list(tmp_path.iterdir()) == []


def test_example_family_passes_its_conformance_tests(venv: Venv, tmp_path: Path) -> None:
    # Only the tests and their pytest config are copied: the package itself comes from the wheel.
    for name in ("pyproject.toml", "conftest.py", "tests"):
        src = EXAMPLE / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, tmp_path / name)
    where = venv.run(["python", "-c", "import xlm_example_family; print(xlm_example_family.__file__)"], cwd=tmp_path)
    assert Path(where.stdout.strip()).is_relative_to(venv.root)
    proc = venv.run(["python", "-m", "pytest", "-q", "-p", "no:cacheprovider"], cwd=tmp_path, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    last = proc.stdout.strip().splitlines()[-1]
    assert " passed" in last and "failed" not in last and "error" not in last


def test_broken_family_is_reported_while_others_work(venv: Venv, tmp_path: Path) -> None:
    # Install, by hand, a distribution whose plugin module raises on import.
    site = venv.site_packages
    info = site / "xlm_broken_family-0.0.1.dist-info"
    info.mkdir()
    try:
        (info / "METADATA").write_text("Metadata-Version: 2.1\nName: xlm-broken-family\nVersion: 0.0.1\n")
        (info / "entry_points.txt").write_text("[xlm]\nbroken = xlm_broken_family_plugin\n")
        (site / "xlm_broken_family_plugin.py").write_text("raise RuntimeError('this family is broken on purpose')\n")

        listing = venv.run(["xlm", "families"], cwd=tmp_path).stdout
        assert "arlm  (xlm-arlm 0.1.0)" in listing and "example  (xlm-example-family 0.1.0)" in listing
        assert listing.rstrip().endswith(
            "Broken plugins (their families are unavailable):\n"
            "  plugin 'broken' (xlm-broken-family 0.0.1): import failed: RuntimeError: this family is broken on purpose"
        )
        proc = venv.run(["xlm", "family=example", "experiment=star_easy_example", "job_type=name"], cwd=tmp_path)
        assert yaml.safe_load(proc.stdout)["family"] == "example"
        missing = venv.run(["xlm", "family=broken"], cwd=tmp_path, check=False)
        assert missing.returncode == 2
        assert missing.stderr.startswith("xlm: error: unknown family 'broken'; installed families: arlm, example; ")
        assert "plugin 'broken' (xlm-broken-family 0.0.1): import failed: RuntimeError" in missing.stderr
    finally:
        shutil.rmtree(info)
        (site / "xlm_broken_family_plugin.py").unlink()
