"""Every job type end to end through the real CLI (``xlm_core.cli.main``) on a tiny config."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from xlm_core.cli import main

from tiny_runs import TINY_STAR_ARLM

TINY = [
    *TINY_STAR_ARLM,
    "per_device_batch_size=32",
    "global_batch_size=32",
    "predictor.max_steps=10",
]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run trained for 4 steps (validation at 2 and 4, checkpoints every 2) in a fresh root dir."""
    root = tmp_path_factory.mktemp("jobs")
    code = main(
        [
            *TINY,
            "job_type=train",
            f"paths.root_dir={root}",
            "trainer.max_steps=4",
            "trainer.val_check_interval=2",
            "checkpointing.every_n_steps=2",
            "checkpointing.keep_every_n_steps=2",
            "progress_every_n_steps=1",
            "trainer.log_every_n_steps=1",
        ]
    )
    assert code == 0
    return root / "outputs" / "star_easy_arlm"


def test_prepare_data_reports_the_cache(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*TINY, "job_type=prepare_data", f"paths.root_dir={tmp_path}"]) == 0
    out = capsys.readouterr().out
    assert f"cache: {tmp_path / '.xlm_cache'}" in out
    assert "val/prediction: kind=prediction" in out
    assert any((tmp_path / ".xlm_cache").iterdir())


def test_train_writes_the_run_directory(trained: Path) -> None:
    ckpts = sorted(p.name for p in (trained / "checkpoints").iterdir())
    assert ckpts == ["best.ckpt", "keep_step_2.ckpt", "keep_step_4.ckpt", "last.ckpt"]
    assert (trained / "config.yaml").is_file() and (trained / "plots" / "curves.png").stat().st_size > 1000
    metrics = json.loads((trained / "metrics.json").read_text())
    assert metrics["step"] == 4
    for key in (
        "val/lm/accumulated_loss",
        "val/prediction/exact_match",
        "val/prediction/token_accuracy",
        "tokens_per_second",
    ):
        assert key in metrics
    assert 0.0 <= metrics["val/prediction/token_accuracy"] <= 1.0
    preds = trained / "predictions" / "val" / "prediction"
    assert sorted(p.name for p in preds.iterdir()) == ["step_2.jsonl", "step_4.jsonl"]
    assert len((preds / "step_4.jsonl").read_text().splitlines()) == 32
    (csv,) = trained.glob("logs/version_*/metrics.csv")
    assert "val/lm/accumulated_loss" in csv.read_text().splitlines()[0]
    history = json.loads((trained / "plots" / "history.json").read_text())
    assert [s for s, _ in history["val/lm/accumulated_loss"]] == [2, 4]


def test_train_prints_progress_lines_and_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(
            [
                *TINY,
                "job_type=train",
                f"paths.root_dir={tmp_path}",
                "trainer.max_steps=2",
                "trainer.val_check_interval=2",
                "progress_every_n_steps=1",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "step 1/2 | epoch 0 | loss " in out and "tok/s" in out
    assert "monitored (val/lm/accumulated_loss):" in out and "val/prediction/exact_match:" in out
    assert str(tmp_path / "outputs" / "star_easy_arlm" / "checkpoints") in out
    # a second run resumes from last.ckpt (already at max_steps) instead of starting over
    assert (
        main(
            [
                *TINY,
                "job_type=train",
                f"paths.root_dir={tmp_path}",
                "trainer.max_steps=2",
                "trainer.val_check_interval=2",
            ]
        )
        == 0
    )
    assert "xlm: resuming from" in capsys.readouterr().out


def test_each_eval_writes_its_own_directory(trained: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = trained.parent.parent
    before = (trained / "metrics.json").read_bytes()
    for _ in range(2):
        assert main([*TINY, "job_type=eval", "eval.split=test", f"paths.root_dir={root}"]) == 0
    assert "test/prediction/exact_match" in capsys.readouterr().out
    runs = sorted((trained / "eval").iterdir())
    assert len(runs) == 2 and all(r.name.endswith("-test-step4") or "-test-step4-" in r.name for r in runs)
    for out in runs:
        rows = (out / "predictions" / "test" / "prediction" / "step_4.jsonl").read_text().splitlines()
        assert len(rows) == 64  # the debug test split once, not twice
        metrics = json.loads((out / "metrics.json").read_text())
        assert metrics["step"] == 4 and "test/lm/accumulated_loss" in metrics
        assert (out / "config.yaml").is_file()
    assert (trained / "metrics.json").read_bytes() == before  # training's metrics are untouched


def test_eval_rejects_unknown_split(trained: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*TINY, "job_type=eval", "eval.split=train", f"paths.root_dir={trained.parent.parent}"]) == 2
    assert "eval.split='train'" in capsys.readouterr().err


def test_generate_from_prompts_and_from_predict_dataloader(trained: Path) -> None:
    root = trained.parent.parent
    assert main([*TINY, "job_type=generate", f"paths.root_dir={root}", '+prompts=["1 2 3 4", "5 6"]']) == 0
    (first,) = (trained / "generate").iterdir()
    rows = [
        json.loads(r) for r in (first / "predictions" / "predict" / "prompts" / "step_4.jsonl").read_text().splitlines()
    ]
    assert [r["prompt"] for r in rows] == ["1 2 3 4", "5 6"]
    assert all(isinstance(r["text"], str) and len(r["ids"]) > r["output_start_idx"] for r in rows)
    assert main([*TINY, "job_type=generate", f"paths.root_dir={root}"]) == 0
    (second,) = set((trained / "generate").iterdir()) - {first}
    assert len((second / "predictions" / "predict" / "prediction" / "step_4.jsonl").read_text().splitlines()) == 64
    assert (first / "predictions" / "predict" / "prompts" / "step_4.jsonl").is_file()  # not overwritten


def test_indivisible_global_batch_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*TINY, "job_type=train", f"paths.root_dir={tmp_path}", "global_batch_size=48"]) == 2
    assert "global_batch_size=48 is not divisible" in capsys.readouterr().err


def test_generate_without_checkpoint_says_how_to_fix(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*TINY, "job_type=generate", f"paths.root_dir={tmp_path}"]) == 2
    assert "train first" in capsys.readouterr().err


def test_training_summary_lists_every_validation_metric_the_run_reported(tmp_path: Path) -> None:
    from xlm_core.jobs.train import format_summary

    star = format_summary(
        {
            "step": 3200,
            "val/lm/accumulated_loss": 0.15,
            "val/prediction/exact_match": 0.38,
            "val/prediction/token_accuracy": 0.5933,
            "train/loss": 0.1,
        },
        tmp_path,
        95302.0,
        None,
        None,
        monitor="val/lm/accumulated_loss",
    )
    assert "monitored (val/lm/accumulated_loss): 0.1500" in star
    assert "val/prediction/exact_match: 0.3800" in star and "val/prediction/token_accuracy: 0.5933" in star
    assert "throughput: 95,302 tokens/s" in star and "train/loss" not in star
    gsm = format_summary(
        {
            "step": 40,
            "val/lm/accumulated_loss": 5.73,
            "val/prediction/code_exec_accuracy": 0.25,
            "val/prediction/n_correct": 1.0,
            "val/prediction/n_total": 4.0,
            "val/prediction/gsm8k/code_exec_accuracy": 0.0,
            "val/prediction/gsm8k/n_correct": 0.0,
            "val/prediction/gsm8k/n_total": 100.0,
        },
        tmp_path,
        None,
        None,
        None,
    )
    for line in (
        "val/prediction/code_exec_accuracy: 0.2500",
        "val/prediction/n_correct: 1.0000",
        "val/prediction/gsm8k/n_total: 100.0000",
    ):
        assert line in gsm
    assert "exact match" not in gsm and "throughput: n/a" in gsm
    bare = format_summary({"step": 3, "val/lm/loss": 2.0}, tmp_path, None, None, None, monitor="val/lm/loss")
    assert "monitored (val/lm/loss): 2.0000" in bare and bare.count("val/lm/loss") == 1
    assert "validation: n/a" in format_summary({"step": 1}, tmp_path, None, None, None)


@pytest.mark.parametrize("found_by", ["main_script", "beside_interpreter", "nowhere"])
def test_ddp_relaunch_finds_the_xlm_program_without_an_activated_venv(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, found_by: str
) -> None:
    # Lightning reruns sys.argv for each DDP rank; the CLI hands Hydra argv[0] = "xlm". With
    # `.venv/bin/xlm ...` run from a shell whose PATH lacks .venv/bin, `which xlm` finds nothing.
    import sys

    import __main__
    from xlm_core.errors import UsageError
    from xlm_core.jobs.common import _ensure_argv0_is_a_path

    bindir = tmp_path / "venv" / "bin"
    bindir.mkdir(parents=True)
    script = bindir / "xlm"
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setattr(__main__, "__spec__", None, raising=False)
    monkeypatch.setattr(sys, "argv", ["xlm", "job_type=train"])
    if found_by == "main_script":
        script.write_text("#!/bin/sh\n")
        monkeypatch.setattr(__main__, "__file__", str(script), raising=False)
        monkeypatch.setattr(sys, "executable", str(tmp_path / "elsewhere" / "python"))
    else:
        monkeypatch.setattr(__main__, "__file__", str(tmp_path / "pytest_runner.py"), raising=False)
        monkeypatch.setattr(sys, "executable", str(bindir / "python"))
        if found_by == "beside_interpreter":
            script.write_text("#!/bin/sh\n")
    if found_by == "nowhere":
        with pytest.raises(UsageError, match=r"'xlm' was not found.*python -m xlm_core.cli"):
            _ensure_argv0_is_a_path()
        return
    _ensure_argv0_is_a_path()
    assert sys.argv == [str(script), "job_type=train"]


def test_export_writes_a_directory_transformers_loads(trained: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = trained.parent / "exported"
    assert main([*TINY, "job_type=export", f"paths.root_dir={trained.parent.parent}", f"export.dir={out}"]) == 0
    assert f"as export.format=hf to {out}" in capsys.readouterr().out
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"} <= {
        p.name for p in out.iterdir()
    }
    model = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert model.config.model_type == "gpt_neox" and tokenizer("1 2 3")["input_ids"] == [8, 9, 10]
    # the default directory is inside the run
    assert main([*TINY, "job_type=export", f"paths.root_dir={trained.parent.parent}"]) == 0
    assert (trained / "export" / "hf-step4" / "config.json").is_file()


def test_export_to_an_unknown_format_lists_the_available_ones(
    trained: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*TINY, "job_type=export", "export.format=onnx", f"paths.root_dir={trained.parent.parent}"]) == 2
    assert "cannot export export.format='onnx'; available formats: hf" in capsys.readouterr().err


def test_torch_num_threads_auto_uses_the_idle_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    import torch

    from xlm_core.errors import UsageError
    from xlm_core.training.runtime import set_torch_threads

    before = torch.get_num_threads()
    cores = len(os.sched_getaffinity(0))
    try:
        monkeypatch.setattr(os, "getloadavg", lambda: (cores + 5.0, 0.0, 0.0))  # a fully loaded machine
        assert set_torch_threads("auto") == 1 == torch.get_num_threads()
        monkeypatch.setattr(os, "getloadavg", lambda: (0.0, 0.0, 0.0))  # an idle one
        assert set_torch_threads("auto") == cores == torch.get_num_threads()
        assert set_torch_threads(1) == 1 and set_torch_threads(None) is None
        with pytest.raises(UsageError, match="torch_num_threads=0"):
            set_torch_threads(0)
    finally:
        torch.set_num_threads(before)
