"""Plugin loading and family validation (xlm_core.plugin.manager), with explicit plugins and entry points."""

from __future__ import annotations

from importlib import metadata
from importlib.resources import files
from pathlib import Path
from types import ModuleType

import pytest

from xlm_core.plugin.hookspecs import hookimpl
from xlm_core.plugin.manager import (
    FamilyInfo,
    FamilyNotFoundError,
    PluginError,
    get_families,
    get_family,
    load_families,
)


def make_config_dir(root: Path, experiments: tuple[str, ...] = ("exp_a",)) -> Path:
    (root / "model").mkdir(parents=True)
    (root / "model" / "tiny.yaml").write_text("d_model: 8\n")
    for exp in experiments:
        path = root / "experiment" / f"{exp}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("# @package _global_\n")
    return root


def as_module(**hooks) -> ModuleType:
    """A plugin module object holding the given hook functions."""
    module = ModuleType("xlmtest_plugin")
    module.__dict__.update(hooks)
    return module


def family_plugin(*registrations: tuple) -> ModuleType:
    """A plugin object whose register_families hook makes the given register(...) calls."""

    @hookimpl
    def register_families(register):
        for args in registrations:
            register(*args)

    return as_module(register_families=register_families)


def test_valid_family_description(tmp_path: Path) -> None:
    config_dir = make_config_dir(tmp_path / "cfg", ("b_exp", "a_exp", "nested/c_exp"))
    reg = load_families(modules={"good": family_plugin(("good", str(config_dir), "A  good\n family."))})
    assert reg.errors == ()
    assert dict(reg.families) == {
        "good": FamilyInfo(
            name="good",
            distribution="(not installed)",
            version="",
            config_dir=config_dir.resolve(),
            description="A good family.",
            plugin="good",
            experiments=("a_exp", "b_exp", "nested/c_exp"),
        )
    }
    assert reg.get("good").searchpath == "file://" + str(config_dir.resolve())
    assert [f.name for f in reg.families_with_experiment("b_exp")] == ["good"]
    assert reg.families_with_experiment("zzz") == []


def test_duplicate_family_names_are_rejected_and_others_kept(tmp_path: Path) -> None:
    cfg = str(make_config_dir(tmp_path / "cfg"))
    reg = load_families(
        modules={
            "first": family_plugin(("dup", cfg, "one")),
            "second": family_plugin(("dup", cfg, "two"), ("fine", cfg, "ok")),
        }
    )
    assert list(reg.families) == ["fine"]
    assert reg.errors == (
        PluginError(
            plugin="second",
            distribution="(not installed)",
            error="duplicate family name 'dup', registered by plugin 'first' ((not installed)) and "
            "plugin 'second' ((not installed)); uninstall all but one of them",
        ),
    )
    with pytest.raises(FamilyNotFoundError, match=r"family 'dup' is registered by more than one plugin"):
        reg.get("dup")


def test_import_error_reported_by_name_while_others_work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = make_config_dir(tmp_path / "cfg")
    pkg = tmp_path / "mods"
    pkg.mkdir()
    (pkg / "xlmtest_good_plugin.py").write_text(
        "from xlm_core.plugin.hookspecs import hookimpl\n"
        "@hookimpl\n"
        "def register_families(register):\n"
        f"    register('good', {str(cfg)!r}, 'works')\n"
    )
    (pkg / "xlmtest_bad_plugin.py").write_text("import xlmtest_module_that_does_not_exist\n")
    monkeypatch.syspath_prepend(str(pkg))
    eps = [
        metadata.EntryPoint(name="bad", value="xlmtest_bad_plugin", group="xlm"),
        metadata.EntryPoint(name="good", value="xlmtest_good_plugin", group="xlm"),
    ]
    reg = load_families(eps)
    assert list(reg.families) == ["good"]
    assert reg.errors == (
        PluginError(
            plugin="bad",
            distribution="(not installed)",
            error="import failed: ModuleNotFoundError: No module named 'xlmtest_module_that_does_not_exist'",
        ),
    )
    assert str(reg.errors[0]).startswith("plugin 'bad' ((not installed)): import failed")


def test_missing_config_dir(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    reg = load_families(modules={"p": family_plugin(("fam", missing, "x"))})
    assert dict(reg.families) == {}
    assert [e.error for e in reg.errors] == [f"family 'fam': config dir {missing} does not exist"]


def test_empty_config_dir_and_file_instead_of_dir(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    (empty / "model").mkdir(parents=True)
    (empty / "README.txt").write_text("no yaml here")
    a_file = tmp_path / "file.yaml"
    a_file.write_text("x: 1\n")
    good = make_config_dir(tmp_path / "good")
    reg = load_families(modules={"p": family_plugin(("e", empty, ""), ("f", a_file, ""), ("g", good, ""))})
    assert list(reg.families) == ["g"]
    assert [e.error for e in reg.errors] == [
        f"family 'e': config dir {empty} holds no .yaml files (are the configs listed in the package "
        "data of its distribution?)",
        f"family 'f': config dir {a_file} is not a directory",
    ]


def test_invalid_name_and_config_dir_type(tmp_path: Path) -> None:
    cfg = make_config_dir(tmp_path / "cfg")
    reg = load_families(modules={"p": family_plugin(("bad name", cfg, ""), ("ok", 42, ""))})
    assert dict(reg.families) == {}
    assert [e.error for e in reg.errors] == [
        "invalid family name 'bad name': use letters, digits, '_', '-' or '.', starting with a letter, digit or '_'",
        "config dir must be a str, os.PathLike or importlib Traversable, got int",
    ]


def test_raising_hook_discards_its_families(tmp_path: Path) -> None:
    cfg = make_config_dir(tmp_path / "cfg")

    @hookimpl
    def register_families(register):
        register("half", cfg, "")
        raise RuntimeError("boom")

    reg = load_families(
        modules={"raising": as_module(register_families=register_families), "ok": family_plugin(("ok", cfg, ""))}
    )
    assert list(reg.families) == ["ok"]
    assert [str(e) for e in reg.errors] == [
        "plugin 'raising' ((not installed)): register_families raised RuntimeError: boom"
    ]


def test_misspelled_hook_fails_check_pending(tmp_path: Path) -> None:
    cfg = make_config_dir(tmp_path / "cfg")

    @hookimpl
    def register_family(register):  # missing the trailing "s"
        register("typo", cfg, "")

    reg = load_families(
        modules={"typo": as_module(register_family=register_family), "ok": family_plugin(("ok", cfg, ""))}
    )
    assert list(reg.families) == ["ok"]
    assert len(reg.errors) == 1 and reg.errors[0].plugin == "typo"
    assert reg.errors[0].error.startswith("invalid plugin: ")
    assert "register_family" in reg.errors[0].error
    assert reg.plugin_manager.get_plugin("(not installed):typo") is None


def test_unknown_family_lists_installed(tmp_path: Path) -> None:
    cfg = make_config_dir(tmp_path / "cfg")
    reg = load_families(modules={"p": family_plugin(("alpha", cfg, ""), ("beta", cfg, ""))})
    with pytest.raises(FamilyNotFoundError) as info:
        reg.get("gamma")
    assert str(info.value) == "unknown family 'gamma'; installed families: alpha, beta"


def test_unknown_family_with_nothing_installed() -> None:
    reg = load_families(modules={})
    with pytest.raises(FamilyNotFoundError) as info:
        reg.get("arlm")
    assert str(info.value) == (
        "unknown family 'arlm'; installed families: none (install a family distribution, e.g. `pip install -e "
        "xlm_plugins/arlm` from a checkout of xlm or a family's wheel; `xlm families` lists them)"
    )


def test_traversable_config_dir(tmp_path: Path) -> None:
    reg = load_families(modules={"p": family_plugin(("t", files("xlm_core.configs"), ""))})
    assert reg.errors == ()
    assert reg.get("t").config_dir == Path(str(files("xlm_core.configs"))).resolve()


def test_installed_arlm_family() -> None:
    arlm = get_family("arlm")
    assert arlm.distribution == "xlm-arlm"
    assert arlm.version == metadata.version("xlm-arlm")
    assert arlm.config_dir == Path(str(files("xlm_arlm") / "configs")).resolve()
    assert arlm.description
    assert "arlm" in get_families()
    with pytest.raises(FamilyNotFoundError, match=r"unknown family 'no-such-family'; installed families: .*arlm"):
        get_family("no-such-family")
