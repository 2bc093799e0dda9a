"""Both distributions build as wheels, and installed (not editable) into a fresh venv they work:
`xlm families` lists arlm and `job_type=name` composes its config from the packaged config trees."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest
import yaml
from xlm_wheel_env import CORE_SOURCES, REPO, Venv, build_wheel, make_venv

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Venv, Path, Path, Path]:
    work = tmp_path_factory.mktemp("wheels")
    core = build_wheel(REPO, work, only=CORE_SOURCES)
    arlm = build_wheel(REPO / "xlm_plugins" / "arlm", work)
    venv = make_venv(work)
    venv.install(core, arlm)
    return venv, work, core, arlm


def test_wheels_ship_config_trees_and_entry_points(installed) -> None:
    _, _, core, arlm = installed
    core_files = set(zipfile.ZipFile(core).namelist())
    assert {
        "xlm_core/configs/__init__.py",
        "xlm_core/configs/config.yaml",
        "xlm_core/configs/paths/default.yaml",
        "xlm_core/cli/main.py",
        "xlm_core/plugin/manager.py",
        "xlm_core/plugin/hookspecs.py",
    } <= core_files
    templates = {p.relative_to(REPO).as_posix() for p in (REPO / "xlm_core" / "scaffold" / "template").rglob("*.tmpl")}
    assert templates and templates <= core_files  # what `xlm new-family` writes from
    arlm_zip = zipfile.ZipFile(arlm)
    assert "xlm_arlm/configs/experiment/star_easy_arlm.yaml" in arlm_zip.namelist()
    (eps,) = [n for n in arlm_zip.namelist() if n.endswith(".dist-info/entry_points.txt")]
    assert arlm_zip.read(eps).decode().split() == ["[xlm]", "arlm", "=", "xlm_arlm.plugin"]


def test_packages_are_imported_from_the_venv(installed) -> None:
    venv, work, _, _ = installed
    proc = venv.run(
        ["python", "-c", "import json, xlm_core, xlm_arlm; print(json.dumps([xlm_core.__file__, xlm_arlm.__file__]))"],
        cwd=work,
    )
    for path in json.loads(proc.stdout):
        assert Path(path).is_relative_to(venv.root), f"{path} is not inside the test venv {venv.root}"


def test_xlm_families_lists_arlm(installed) -> None:
    venv, work, _, _ = installed
    payload = json.loads(venv.run(["xlm", "families", "--json"], cwd=work).stdout)
    assert payload["errors"] == []
    (arlm,) = [f for f in payload["families"] if f["name"] == "arlm"]
    assert (arlm["distribution"], arlm["version"]) == ("xlm-arlm", "0.2.0")
    assert Path(arlm["config_dir"]) == venv.site_packages / "xlm_arlm" / "configs"
    assert "star_easy_arlm" in arlm["experiments"]
    text = venv.run(["xlm", "families"], cwd=work).stdout
    assert text.startswith("arlm  (xlm-arlm 0.2.0)\n")


def test_compose_arlm_experiment_from_installed_wheels(installed) -> None:
    venv, work, _, _ = installed
    cwd = work / "user-dir"
    cwd.mkdir()
    proc = venv.run(["xlm", "family=arlm", "experiment=star_easy_arlm", "job_type=name"], cwd=cwd)
    cfg = yaml.safe_load(proc.stdout)
    assert (cfg["family"], cfg["job_type"], cfg["job_name"]) == ("arlm", "name", "star_easy_arlm")
    assert (cfg["input_block_size"], cfg["block_size"]) == (28, 14)  # star easy, docs/tasks.md
    assert cfg["paths"]["run_dir"] == f"{cwd}/outputs/star_easy_arlm"
    assert list(cwd.iterdir()) == []
