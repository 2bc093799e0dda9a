"""The `xlm` command: family listing, composition, family/experiment errors, job dispatch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from xlm_core.cli import main
from xlm_core.jobs import JOB_TYPES

CONFIGS = Path(__file__).parent / "fixture_family" / "xlm_clitest" / "configs"


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_families_lists_installed_and_broken(install_families, capsys) -> None:
    site = install_families("xlm-clitest", "xlm-clitest-broken")
    code, out, err = run(capsys, "families")
    assert code == 0 and err == ""
    block = out.split("clitest  (xlm-clitest 0.1.0)\n", 1)[1].split("\n\n")[0]
    assert block.splitlines()[:3] == [
        "  CLI test family.",
        f"  config dir:  {site / 'xlm_clitest' / 'configs'}",
        "  experiments: tiny_exp, wide_exp",
    ]
    assert "arlm  (xlm-arlm " in out  # the real family keeps working next to a broken one
    broken = out.split("Broken plugins (their families are unavailable):\n", 1)[1].split("\n\n")[0]
    assert broken.strip() == (
        "plugin 'clitest-broken' (xlm-clitest-broken 0.2.0): import failed: ImportError: "
        "clitest-broken needs the package 'not_installed_dependency'"
    )


def test_families_json(install_families, capsys) -> None:
    site = install_families("xlm-clitest")
    code, out, _ = run(capsys, "families", "--json")
    assert code == 0
    payload = json.loads(out)
    (fam,) = [f for f in payload["families"] if f["name"] == "clitest"]
    assert fam == {
        "name": "clitest",
        "distribution": "xlm-clitest",
        "version": "0.1.0",
        "config_dir": str(site / "xlm_clitest" / "configs"),
        "description": "CLI test family.",
        "experiments": ["tiny_exp", "wide_exp"],
        "api_version": "1.0",
        "api_problem": None,
    }
    assert payload["errors"] == []
    assert payload["core"]["plugin_api"] == "1.0"


def test_families_rejects_unknown_arguments(install_families, capsys) -> None:
    install_families("xlm-clitest")
    code, out, err = run(capsys, "families", "--bogus")
    assert (code, out) == (2, "")
    assert err == ("xlm: error: unrecognized arguments: --bogus (usage: xlm families [-h] [-v] [--json])\n")


def test_name_job_prints_composed_config_and_writes_nothing(install_families, workdir, capsys) -> None:
    install_families("xlm-clitest")
    code, out, err = run(capsys, "family=clitest", "experiment=tiny_exp", "job_type=name", "seed=3")
    assert code == 0, err
    cfg = yaml.safe_load(out)
    assert cfg["family"] == "clitest"
    assert cfg["job_type"] == "name"
    assert cfg["job_name"] == "tiny_exp"
    assert cfg["seed"] == 3
    assert cfg["block_size"] == 7  # from experiment/tiny_exp.yaml
    assert cfg["global_batch_size"] == cfg["per_device_batch_size"] == 32
    assert cfg["model"] == {"_target_": "torch.nn.Linear", "in_features": 4, "out_features": 4}
    assert "noise_schedule" not in cfg  # no component takes one (docs/architecture.md)
    assert cfg["paths"] == {
        "root_dir": str(workdir),
        "data_dir": f"{workdir}/data",
        "cache_dir": f"{workdir}/.xlm_cache",
        "runs_dir": f"{workdir}/outputs",
        "run_dir": f"{workdir}/outputs/tiny_exp",
    }
    assert "hydra" not in cfg
    assert list(workdir.iterdir()) == []  # a dry run leaves no run directory behind


def test_overrides_and_root_dir(install_families, workdir, tmp_path, capsys) -> None:
    install_families("xlm-clitest")
    root = tmp_path / "elsewhere"
    code, out, err = run(
        capsys,
        "family=clitest",
        "experiment=wide_exp",
        f"paths.root_dir={root}",
        "job_name=mine",
        "block_size=5",
        "job_type=name",
    )
    assert code == 0, err
    cfg = yaml.safe_load(out)
    assert (cfg["block_size"], cfg["job_name"]) == (5, "mine")
    assert cfg["model"]["in_features"] == 16
    assert cfg["paths"]["run_dir"] == f"{root}/outputs/mine"


def test_family_inferred_from_experiment_with_note(install_families, workdir, capsys) -> None:
    install_families("xlm-clitest")
    code, out, err = run(capsys, "experiment=wide_exp", "job_type=name")
    assert code == 0
    assert err == "xlm: note: using family=clitest, the only installed family with experiment=wide_exp\n"
    cfg = yaml.safe_load(out)
    assert (cfg["family"], cfg["job_name"], cfg["block_size"]) == ("clitest", "wide_exp", 9)


def test_train_is_the_default_job(install_families, workdir, capsys) -> None:
    """`xlm family=... experiment=...` trains: the clitest family has no tokenizer, so training says so."""
    install_families("xlm-clitest")
    code, out, err = run(capsys, "family=clitest", "experiment=tiny_exp")
    assert (code, out) == (2, "")
    assert err == "xlm: error: No tokenizer in the config; pick an experiment (experiment=<name>) that sets one.\n"


def test_help_flag_prints_usage_and_runs_nothing(install_families, workdir, capsys) -> None:
    install_families("xlm-clitest")
    code, out, err = run(capsys, "family=clitest", "experiment=tiny_exp", "--help")
    assert code == 0, err
    assert "xlm check <family>" in out and "job types: train (default)" in out
    assert list(workdir.iterdir()) == []


def test_unknown_family_lists_installed(install_families, capsys) -> None:
    install_families("xlm-clitest")
    code, out, err = run(capsys, "family=nope", "experiment=tiny_exp")
    assert (code, out) == (2, "")
    assert err.startswith("xlm: error: unknown family 'nope'; installed families: ")
    assert "clitest" in err and "arlm" in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_unknown_experiment_lists_family_experiments(install_families, capsys) -> None:
    install_families("xlm-clitest")
    code, out, err = run(capsys, "family=clitest", "experiment=nope")
    assert (code, out) == (2, "")
    assert err == "xlm: error: unknown experiment 'nope' for family 'clitest'; its experiments: tiny_exp, wide_exp\n"


def test_experiment_in_no_family(install_families, capsys) -> None:
    install_families("xlm-clitest")
    code, _, err = run(capsys, "experiment=nope")
    assert code == 2
    assert err.startswith("xlm: error: experiment 'nope' is not in any installed family; ")
    assert "clitest (tiny_exp, wide_exp)" in err


def test_experiment_in_two_families_is_ambiguous(install_families, capsys) -> None:
    install_families("xlm-clitest", "xlm-clitest-twin")
    code, _, err = run(capsys, "experiment=tiny_exp")
    assert code == 2
    assert err == "xlm: error: experiment 'tiny_exp' exists in families clitest, twin; choose one with family=<name>\n"
    code, out, _ = run(capsys, "family=twin", "experiment=tiny_exp", "job_type=name")
    assert code == 0 and yaml.safe_load(out)["family"] == "twin"


def test_no_family_and_no_experiment(install_families, capsys) -> None:
    install_families("xlm-clitest")
    code, _, err = run(capsys, "seed=1")
    assert code == 2
    assert err.startswith("xlm: error: choose a family with family=<name> and an experiment with experiment=<name>")


def test_unknown_job_type(install_families, capsys) -> None:
    install_families("xlm-clitest")
    code, out, err = run(capsys, "family=clitest", "experiment=tiny_exp", "job_type=bogus")
    assert (code, out) == (2, "")
    assert err == f"xlm: error: unknown job_type=bogus; choose one of: {', '.join(JOB_TYPES)}\n"


def test_missing_job_module_exits_nonzero(install_families, workdir, capsys, monkeypatch) -> None:
    # None in sys.modules makes `import xlm_core.jobs.generate` fail as if the module did not exist.
    monkeypatch.setitem(sys.modules, "xlm_core.jobs.generate", None)
    install_families("xlm-clitest")
    code, out, err = run(capsys, "family=clitest", "experiment=tiny_exp", "job_type=generate")
    assert (code, out) == (2, "")
    assert err == (
        "xlm: error: job_type=generate: its module xlm_core.jobs.generate is missing from this installation; "
        "reinstall xlm-core\n"
    )
    assert list(workdir.iterdir()) == []


def test_cfg_flag_prints_unresolved_config(install_families, workdir, capsys) -> None:
    install_families("xlm-clitest")
    code, out, err = run(capsys, "--cfg", "job", "family=clitest", "experiment=tiny_exp")
    assert code == 0, err
    cfg = yaml.safe_load(out)
    assert cfg["paths"]["run_dir"] == "${paths.runs_dir}/${job_name}"
    assert cfg["block_size"] == 7


def test_user_searchpath_is_kept_ahead_of_the_family(install_families, workdir, tmp_path, capsys) -> None:
    install_families("xlm-clitest")
    extra = tmp_path / "my_configs" / "model"
    extra.mkdir(parents=True)
    (extra / "mine.yaml").write_text("_target_: torch.nn.Identity\n")
    code, out, err = run(
        capsys,
        "family=clitest",
        "experiment=tiny_exp",
        "model=mine",
        f"hydra.searchpath=[file://{extra.parent}]",
        "job_type=name",
    )
    assert code == 0, err
    assert yaml.safe_load(out)["model"] == {"_target_": "torch.nn.Identity"}


def test_console_entry_point_reports_user_errors_without_traceback(tmp_path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "xlm_core.cli", "family=does-not-exist"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.startswith("xlm: error: unknown family 'does-not-exist'; installed families: ")
    assert "arlm" in proc.stderr and "Traceback" not in proc.stderr


def test_multirun_sweeps_experiments_into_separate_run_dirs(install_families, workdir, capsys) -> None:
    install_families("xlm-clitest")
    code, out, err = run(capsys, "-m", "family=clitest", "experiment=tiny_exp,wide_exp", "job_type=name")
    assert code == 0, err
    sweep = workdir / "outputs" / "multirun"
    assert sorted(p.name for p in sweep.iterdir()) == ["0_tiny_exp", "1_wide_exp", "multirun.yaml"]
    assert out.count("family: clitest\n") == 2
    assert [line for line in out.splitlines() if line.startswith(("job_name:", "block_size:"))] == [
        "job_name: tiny_exp",
        "block_size: 7",
        "job_name: wide_exp",
        "block_size: 9",
    ]
