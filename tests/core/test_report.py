"""xlm report on hand-written run directories: grouping, aliases, exact statistics, evaluations, problems."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
import yaml

from xlm_core.cli import main
from xlm_core.run.report import build_report, find_run_dirs, format_markdown, load_records, write_report


def make_run(
    root: Path, name: str, seed: int, lr: float, metrics: dict | None, max_steps: int = 10, extra: dict | None = None
) -> Path:
    """A run directory as the train job leaves it: config.yaml (resolved) and metrics.json."""
    run = root / name
    run.mkdir(parents=True)
    config = {
        "seed": seed,
        "job_type": "train",
        "paths": {"run_dir": str(run)},
        "datamodule": {"seed": seed},
        "trainer": {"max_steps": max_steps, "default_root_dir": str(run)},
        "optimizer": {"lr": lr},
        "collator": {"train": {"lr_copy": lr}},
        "model": {"d_model": 8},
    }
    for key, value in (extra or {}).items():
        node = config
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    if metrics is not None:
        (run / "metrics.json").write_text(json.dumps({"step": max_steps, "tokens_per_second": 1.0, **metrics}))
    return run


def add_eval(run: Path, name: str, metrics: dict, **changes) -> Path:
    config = yaml.safe_load((run / "config.yaml").read_text())
    config.update({"job_type": "eval", "eval": {"split": "test"}})
    for key, value in changes.items():
        head, leaf = key.split(".")
        config.setdefault(head, {})[leaf] = value
    out = run / "eval" / name
    out.mkdir(parents=True)
    (out / "config.yaml").write_text(yaml.safe_dump(config))
    (out / "metrics.json").write_text(json.dumps({**metrics, "step": 10, "checkpoint": "x"}))
    return out


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    root = tmp_path / "sweep"
    root.mkdir()
    (root / "multirun.yaml").write_text("hydra: {}\n")
    make_run(root, "0", 1, 1e-3, {"val/em": 0.25, "val/loss": 1.0})
    make_run(root, "1", 2, 1e-3, {"val/em": 0.75, "val/loss": 3.0})
    make_run(root, "2", 1, 2e-3, {"val/em": 0.5, "val/loss": 2.0})
    make_run(root, "3", 2, 2e-3, {"val/loss": 1.5})  # no val/em
    make_run(root, "4", 3, 2e-3, None)  # crashed after writing its config
    (root / "4" / "logs").mkdir()
    (root / "4" / "logs" / "20260101-train.log").write_text("ok\nRuntimeError: out of memory\n")
    make_run(root, "5", 3, 1e-3, {"val/em": 0.9, "val/loss": 0.1, "step": 4})  # stopped at step 4 of 10
    (root / "6").mkdir()  # a job folder a crash left empty
    return root


def test_groups_by_the_setting_that_differs_with_exact_statistics(sweep: Path) -> None:
    runs, problems = find_run_dirs([sweep])
    assert [p.name for p in runs] == ["0", "1", "2", "3", "4", "5", "6"] and problems == []
    records, problems = load_records(runs)
    report = build_report(records, problems)
    assert report.group_keys == ["optimizer.lr"]  # seed and datamodule.seed are aggregated over
    assert report.aliases == {"optimizer.lr": ["collator.train.lr_copy"]}
    assert report.metrics == ["val/em", "val/loss"]
    low, high = report.groups
    assert low.settings == {"optimizer.lr": 1e-3} and high.settings == {"optimizer.lr": 2e-3}
    em = low.stats["val/em"]
    assert (em.mean, em.min, em.max, em.n) == (0.5, 0.25, 0.75, 2)
    assert em.std == pytest.approx(math.sqrt(0.125))  # sample std of 0.25 and 0.75
    assert high.stats["val/em"].n == 1 and math.isnan(high.stats["val/em"].std)
    assert high.stats["val/loss"].values == [2.0, 1.5]
    reasons = {Path(p.path).name: p.reason for p in report.problems}
    assert reasons == {
        "3": "missing metric val/em",
        "4": "incomplete: no metrics.json (RuntimeError: out of memory)",
        "5": "incomplete: stopped at step 4 of 10",
        "6": "failed: no readable config.yaml",
    }


def test_evaluations_merge_into_their_run_or_become_their_own_rows(tmp_path: Path) -> None:
    run = make_run(tmp_path, "r", 1, 1e-3, {"val/em": 0.5})
    add_eval(run, "20260101-000000-test-step10", {"test/em": 0.25})
    add_eval(run, "20260101-000100-test-step10", {"test/em": 0.375})  # a later evaluation of the same settings
    add_eval(run, "20260101-000200-test-step10", {"test/em": 0.875}, **{"predictor.order": "random"})
    records, problems = load_records([run])
    assert problems == []
    base, variant = records
    assert base.metrics["test/em"] == 0.375 and base.metrics["val/em"] == 0.5
    assert variant.kind == "eval" and variant.metrics == {"test/em": 0.875}
    report = build_report(records, metrics=["test/em", "val/em"])
    assert report.group_keys == ["predictor.order"]
    assert [(g.settings["predictor.order"], g.stats["test/em"].mean) for g in report.groups] == [
        ("<unset>", 0.375),
        ("random", 0.875),
    ]
    assert "val/em" not in report.groups[1].stats and report.problems == []  # evaluation-only: no val metrics


def test_explicit_groups_metric_patterns_and_selection(sweep: Path) -> None:
    records, _ = load_records(find_run_dirs([sweep])[0])
    report = build_report(records, metrics=["val/e*"], group=["model.d_model"])
    assert report.metrics == ["val/em"] and len(report.groups) == 1 and report.groups[0].stats["val/em"].n == 3
    chosen = build_report(records, metrics=["val/em"], select="optimizer.lr", by="val/em")
    assert chosen.selection["rows"] == [{"settings": {}, "optimizer.lr": 1e-3, "mean": 0.5, "n": 2}]
    lowest_loss = build_report(records, metrics=["val/loss"], select="optimizer.lr", mode="min")
    assert lowest_loss.selection["rows"][0]["optimizer.lr"] == 2e-3
    with pytest.raises(ValueError, match="--select seed: not one of the group keys"):
        build_report(records, select="seed")


def test_writes_markdown_csv_json_and_a_plot(sweep: Path, tmp_path: Path) -> None:
    records, problems = load_records(find_run_dirs([sweep])[0])
    report = build_report(records, problems)
    written = write_report(report, tmp_path / "out")
    markdown = written["markdown"].read_text()
    assert "| optimizer.lr | runs | val/em (n) | val/loss (n) |" in markdown
    assert "| 0.001 | 2 | 0.5 ± 0.3536 [0.25–0.75] (2) | 2 ± 1.414 [1–3] (2) |" in markdown
    assert "incomplete: stopped at step 4 of 10" in markdown and markdown == format_markdown(report)
    rows = list(csv.DictReader(written["csv"].open()))
    assert rows[0]["optimizer.lr"] == "0.001" and float(rows[0]["val/em:mean"]) == 0.5 and rows[1]["val/em:std"] == ""
    data = json.loads(written["json"].read_text())
    assert data["groups"][1]["metrics"]["val/em"] == {
        "mean": 0.5,
        "std": None,
        "min": 0.5,
        "max": 0.5,
        "n": 1,
        "values": [0.5],
    }
    assert len(data["problems"]) == 4
    assert written["plot"].stat().st_size > 5000


def test_cli_writes_into_the_sweep_and_a_second_report_ignores_the_first(sweep: Path, capsys) -> None:
    assert main(["report", str(sweep), "--metrics", "val/em"]) == 0
    out = capsys.readouterr().out
    assert "| 0.001 | 2 | 0.5 ± 0.3536 [0.25–0.75] (2) |" in out
    assert sorted(p.name for p in (sweep / "report").iterdir()) == [
        "report.csv",
        "report.json",
        "report.md",
        "report.png",
    ]
    assert main(["report", str(sweep / "[0-3]"), "--metrics", "val/em"]) == 0  # a glob, and report/ is no run
    assert "Runs left out or incomplete (1)" in capsys.readouterr().out
    assert json.loads((sweep / "report" / "report.json").read_text())["command"].endswith("[0-3] --metrics val/em")


def test_cli_without_runs_is_a_one_line_usage_error(tmp_path: Path, capsys) -> None:
    assert main(["report", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("xlm: error: no runs found in ") and "no such directory" in err and err.count("\n") == 1
