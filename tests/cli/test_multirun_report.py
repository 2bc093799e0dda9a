"""Hydra multirun through the CLI: every job trains in its own sweep folder, and xlm report aggregates them."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from xlm_core.cli import main

from tiny_runs import TINY_STAR_ARLM

TINY = [
    *TINY_STAR_ARLM,
    "per_device_batch_size=32",
    "global_batch_size=32",
    "predictor.max_steps=10",
    "trainer.max_steps=2",
    "trainer.val_check_interval=2",
    "torch_num_threads=1",
]


def test_multirun_jobs_get_their_own_run_directories_and_report_groups_them(tmp_path: Path, capsys) -> None:
    sweep = tmp_path / "sweep"
    code = main(
        [
            "-m",
            *TINY,
            f"paths.root_dir={tmp_path}",
            f"hydra.sweep.dir={sweep}",
            "seed=1,2",
            "target_order=forward,reverse",
        ]
    )
    assert code == 0
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir())
    assert [p.name for p in jobs] == [f"{i}_star_easy_arlm" for i in range(4)]
    configs = [yaml.safe_load((p / "config.yaml").read_text()) for p in jobs]
    assert [(c["seed"], c["target_order"]) for c in configs] == [
        (1, "forward"),
        (1, "reverse"),
        (2, "forward"),
        (2, "reverse"),
    ]
    assert all(c["paths"]["run_dir"] == str(p) for c, p in zip(configs, jobs))
    assert all(json.loads((p / "metrics.json").read_text())["step"] == 2 for p in jobs)  # none resumed another
    capsys.readouterr()
    assert main(["report", str(sweep), "--metrics", "val/prediction/exact_match"]) == 0
    out = capsys.readouterr().out
    assert "Grouped by: target_order; aggregated over: seed." in out
    table = [line for line in out.splitlines() if line.startswith(("| forward", "| reverse"))]
    assert len(table) == 2 and all(line.split(" | ")[1] == "2" for line in table)
    assert "Runs left out or incomplete (0)" in out
