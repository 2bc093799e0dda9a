"""`xlm new-family` end to end from wheels: in a fresh venv holding only xlm-core's wheel, `xlm new-family`
scaffolds a family; that family's wheel, installed next to it, is listed with its components, passes
`xlm check` and its own tests, and trains, evaluates and generates. A broken plugin installed next to it is
reported by name while the family keeps working."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from xlm_wheel_env import CORE_SOURCES, REPO, Venv, build_wheel, make_venv

pytestmark = [pytest.mark.integration, pytest.mark.slow]

NAME = "wheelfam"
PACKAGE = f"xlm_{NAME}"
EXPERIMENT = f"star_easy_{NAME}"
# 20 steps on the debug splits (512 train, 32 val, 64 test graphs), validating and checkpointing at 10 and 20.
RUN = [
    f"family={NAME}",
    f"experiment={EXPERIMENT}",
    "debug=overfit",
    "trainer.max_steps=20",
    "trainer.val_check_interval=10",
    "checkpointing.every_n_steps=10",
]
PROMPT = "8 7 2 11 1 10 17 12 11 1 6 18 3 2 3 0 3 17 12 6 7 16 0 8 3 16"  # a star graph: edges, source, goal


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Venv, Path]:
    """The venv with xlm-core's wheel and the wheel of the family its `xlm new-family` wrote; the family's source."""
    work = tmp_path_factory.mktemp("scaffold")
    venv = make_venv(work)
    venv.install(build_wheel(REPO, work, only=CORE_SOURCES))
    source = work / f"xlm-{NAME}"
    venv.run(["xlm", "new-family", NAME, "--dir", str(source)], cwd=work)
    venv.install(build_wheel(source, work))
    return venv, source


@pytest.fixture(scope="module")
def trained(installed: tuple[Venv, Path], tmp_path_factory: pytest.TempPathFactory) -> tuple[Venv, Path, str]:
    """The run directory of the short training run, and what training printed."""
    venv, _ = installed
    cwd = tmp_path_factory.mktemp("runs")
    proc = venv.run(["xlm", *RUN], cwd=cwd)
    return venv, cwd / "outputs" / EXPERIMENT, proc.stdout


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_families_lists_the_family_and_its_components(installed: tuple[Venv, Path], tmp_path: Path) -> None:
    venv, _ = installed
    payload = json.loads(venv.run(["xlm", "families", "--verbose", "--json"], cwd=tmp_path).stdout)
    assert payload["errors"] == []
    (family,) = payload["families"]
    assert (family["name"], family["distribution"], family["version"]) == (NAME, f"xlm-{NAME}", "0.1.0")
    assert family["config_dir"] == str(venv.site_packages / PACKAGE / "configs")
    assert family["experiments"] == [EXPERIMENT]
    cls = NAME.capitalize()
    assert family["components"] == {
        "model_protocol": f"{cls}LM",
        "models": [f"{PACKAGE}.model.{cls}Model [capabilities=causal,key_padding; tiny]"],
        "losses": [f"{PACKAGE}.loss.{cls}Loss"],
        "collators": [
            f"{PACKAGE}.collators.{cls}Seq2SeqCollator [role=seq2seq; tiny]",
            f"{PACKAGE}.collators.{cls}PredictionCollator [role=prediction; tiny]",
        ],
        "predictors": [f"{PACKAGE}.predictor.{cls}Predictor [tiny]"],
        "metrics": ["xlm_core.kit.metrics.exact_match_update_fn", "xlm_core.kit.metrics.token_accuracy_update_fn"],
        "exporters": {},
    }
    text = venv.run(["xlm", "families", "--verbose"], cwd=tmp_path).stdout
    assert text.startswith(f"{NAME}  (xlm-{NAME} 0.1.0)\n") and f"model protocol: {cls}LM" in text


def test_xlm_check_passes(installed: tuple[Venv, Path], tmp_path: Path) -> None:
    venv, _ = installed
    proc = venv.run(["xlm", "check", NAME], cwd=tmp_path, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    results = [line.rsplit(" ", 1)[-1] for line in proc.stdout.splitlines() if line.endswith(("PASSED", "SKIPPED"))]
    assert len(results) >= 20 and set(results) == {"PASSED"}
    assert proc.stdout.rstrip().endswith("-> OK")


def test_the_family_passes_its_own_tests(installed: tuple[Venv, Path], tmp_path: Path) -> None:
    venv, source = installed
    for name in ("pyproject.toml", "conftest.py", "tests"):  # the package itself comes from the wheel
        src = source / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, tmp_path / name)
    where = venv.run(["python", "-c", f"import {PACKAGE}; print({PACKAGE}.__file__)"], cwd=tmp_path)
    assert Path(where.stdout.strip()).is_relative_to(venv.root)
    proc = venv.run(["python", "-m", "pytest", "-q", "-p", "no:cacheprovider"], cwd=tmp_path, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    last = proc.stdout.strip().splitlines()[-1]
    assert " passed" in last and "failed" not in last and "error" not in last


def test_training_writes_checkpoints_metrics_and_predictions(trained: tuple[Venv, Path, str]) -> None:
    _, run_dir, printed = trained
    assert "monitored (val/prediction/token_accuracy):" in printed
    assert {p.name for p in (run_dir / "checkpoints").iterdir()} >= {"best.ckpt", "last.ckpt"}
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["step"] == 20
    for key in ("val/lm/loss", "val/prediction/exact_match", "val/prediction/token_accuracy"):
        assert 0.0 <= metrics[key] < (20.0 if key.endswith("loss") else 1.0 + 1e-6)
    predictions = run_dir / "predictions" / "val" / "prediction"
    assert sorted(p.name for p in predictions.iterdir()) == ["step_10.jsonl", "step_20.jsonl"]
    rows = _rows(predictions / "step_20.jsonl")
    assert len(rows) == 32 and all({"prompt", "text", "target"} <= set(r) for r in rows)
    assert all(len(r["target"].split()) == 8 for r in rows)  # the gold path: 4 edges, 2 nodes each


def test_eval_scores_the_best_checkpoint_in_a_directory_of_its_own(trained: tuple[Venv, Path, str]) -> None:
    venv, run_dir, _ = trained
    venv.run(["xlm", *RUN, "job_type=eval"], cwd=run_dir.parent.parent)
    (evaluation,) = (run_dir / "eval").iterdir()
    metrics = json.loads((evaluation / "metrics.json").read_text())
    assert metrics["checkpoint"].endswith("best.ckpt") and metrics["step"] in (10, 20)
    assert {"val/lm/loss", "val/prediction/exact_match", "val/prediction/token_accuracy"} <= set(metrics)
    assert len(_rows(evaluation / "predictions" / "val" / "prediction" / f"step_{metrics['step']}.jsonl")) == 32


def test_generate_from_prompts_and_from_the_predict_dataloader(trained: tuple[Venv, Path, str]) -> None:
    venv, run_dir, _ = trained
    cwd = run_dir.parent.parent
    proc = venv.run(["xlm", *RUN, "job_type=generate", f"+prompts=['{PROMPT}']"], cwd=cwd)
    (first,) = (run_dir / "generate").iterdir()
    (row,) = _rows(next((first / "predictions" / "predict" / "prompts").glob("step_*.jsonl")))
    assert row["prompt"] == PROMPT and isinstance(row["text"], str)
    assert f"{PROMPT!r} -> {row['text']!r}" in proc.stdout  # the job prints each generated text
    venv.run(["xlm", *RUN, "job_type=generate"], cwd=cwd)
    (second,) = set((run_dir / "generate").iterdir()) - {first}
    rows = _rows(next((second / "predictions" / "predict" / "prediction").glob("step_*.jsonl")))
    assert len(rows) == 64 and all(isinstance(r["text"], str) and r["target"] for r in rows)


def test_a_broken_plugin_is_reported_while_the_family_works(installed: tuple[Venv, Path], tmp_path: Path) -> None:
    venv, _ = installed
    site = venv.site_packages
    info = site / "xlm_broken_family-0.0.1.dist-info"
    info.mkdir()
    try:  # a distribution, installed by hand, whose plugin module raises on import
        (info / "METADATA").write_text("Metadata-Version: 2.1\nName: xlm-broken-family\nVersion: 0.0.1\n")
        (info / "entry_points.txt").write_text("[xlm]\nbroken = xlm_broken_family_plugin\n")
        (site / "xlm_broken_family_plugin.py").write_text("raise RuntimeError('this family is broken on purpose')\n")

        listing = venv.run(["xlm", "families"], cwd=tmp_path).stdout
        assert listing.startswith(f"{NAME}  (xlm-{NAME} 0.1.0)\n")
        assert listing.split("\n\n")[1] == (
            "Broken plugins (their families are unavailable):\n"
            "  plugin 'broken' (xlm-broken-family 0.0.1): import failed: RuntimeError: this family is broken on purpose"
        )
        assert yaml.safe_load(venv.run(["xlm", *RUN, "job_type=name"], cwd=tmp_path).stdout)["family"] == NAME
        missing = venv.run(["xlm", "family=broken"], cwd=tmp_path, check=False)
        assert missing.returncode == 2
        assert missing.stderr.startswith(f"xlm: error: unknown family 'broken'; installed families: {NAME}; ")
        assert "plugin 'broken' (xlm-broken-family 0.0.1): import failed: RuntimeError" in missing.stderr
    finally:
        shutil.rmtree(info)
        (site / "xlm_broken_family_plugin.py").unlink()
