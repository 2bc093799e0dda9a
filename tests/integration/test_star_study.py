"""The star-graph study's command at toy size: scripts/star_study.py --toy runs every stage (train sweeps,
learning-rate selection on validation, the other seeds, test evaluations, MLM unmasking orders, xlm report) on 4-step
runs of the three families."""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "star_study.py"


@pytest.mark.slow
def test_the_study_command_runs_at_toy_size_and_reports_every_row(tmp_path: Path) -> None:
    out = tmp_path / "study"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), str(out), "--seeds", "1,2", "--lrs", "1e-3,2e-3", "--toy"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=3000,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    # prepare, sweep (rows x rates, first seed), select, seeds (rows x other seeds), test, orders, report;
    # rows: ARLM 4, MLM 4, MDLM 2
    assert proc.stdout.count("$ ") == 3 + 10 * 2 + 3 + 10 * 1 + 10 + 2 + 1

    arlm = [p for p in (out / "arlm").iterdir() if (p / "metrics.json").exists()]
    mlm = [p for p in (out / "mlm").iterdir() if (p / "metrics.json").exists()]
    mdlm = [p for p in (out / "mdlm").iterdir() if (p / "metrics.json").exists()]
    assert len(arlm) == 4 * (2 + 1) and len(mlm) == 4 * (2 + 1)  # rows x (rates at seed 1 + seed 2 at the chosen rate)
    assert len(mdlm) == 2 * (2 + 1)
    assert all(json.loads((p / "metrics.json").read_text())["step"] == 4 for p in arlm + mlm + mdlm)

    selection = {
        family: json.loads((out / family / "selection.json").read_text()) for family in ("arlm", "mlm", "mdlm")
    }
    assert len(selection["arlm"]) == 4 and len(selection["mlm"]) == 4 and len(selection["mdlm"]) == 2
    assert {row["lr"] for rows in selection.values() for row in rows} <= {"1e-3", "2e-3"}
    reverse_rows = [r for r in selection["arlm"] if "target_order=reverse" in r["overrides"]]
    assert len(reverse_rows) == 2

    report = json.loads((out / "report" / "report.json").read_text())
    assert report["problems"] == []
    assert "family" in report["group_keys"] and "predictor.unmasking_order" in report["group_keys"]
    groups = report["groups"]
    assert len(groups) == 4 + 4 + 2 + 3 + 3  # ARLM, MLM, MDLM rows; the best MLM and MDLM rows' three other orders
    assert all(g["metrics"]["test/prediction/exact_match"]["n"] == 2 for g in groups)
    orders = sorted(str(g["settings"]["predictor.unmasking_order"]) for g in groups)
    assert orders.count("<unset>") == 4 and orders.count("confidence") == 6  # ARLM rows; MLM, MDLM rows as trained
    mdlm_orders = {str(g["settings"]["predictor.unmasking_order"]) for g in groups if g["settings"]["family"] == "mdlm"}
    assert mdlm_orders == {"confidence", "left_to_right", "right_to_left", "random"}
    assert {"left_to_right", "right_to_left", "random"} <= set(orders)
    assert (out / "report" / "report.png").stat().st_size > 5000
    markdown = (out / "report" / "report.md").read_text()
    assert "test/prediction/exact_match_given_first_step (n)" in markdown


def test_each_family_keeps_its_own_selection_beside_the_file_of_earlier_versions(tmp_path: Path) -> None:
    """Checkouts that run different families into one study folder must not overwrite each other's choice."""
    spec = importlib.util.spec_from_file_location("star_study", SCRIPT)
    study = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(study)
    arlm_row = [{"overrides": ["target_order=reverse"], "lr": "5e-4", "val": 0.98}]
    mdlm_row = [{"overrides": ["model.absolute_positions=true"], "lr": "2e-3", "val": 0.99}]
    (tmp_path / "selection.json").write_text(json.dumps({"arlm": arlm_row, "mlm": []}))  # an earlier version's file
    (tmp_path / "mdlm").mkdir()
    (tmp_path / "mdlm" / "selection.json").write_text(json.dumps(mdlm_row))
    args = argparse.Namespace(out=tmp_path, families=["arlm", "mdlm"], dry_run=False)
    assert study.load_selection(args) == {"arlm": arlm_row, "mdlm": mdlm_row}
    (tmp_path / "arlm").mkdir()
    (tmp_path / "arlm" / "selection.json").write_text(json.dumps([]))  # a family's own file wins
    assert study.load_selection(args)["arlm"] == []
    with pytest.raises(SystemExit, match="run the select stage for mlm2"):
        study.load_selection(argparse.Namespace(out=tmp_path, families=["mlm2"], dry_run=False))
