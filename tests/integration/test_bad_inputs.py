"""Nothing lost, nothing silently wrong: every way a user can damage or mislead a run directory ends in
correct behaviour or a one-line error (exit code 2), and no earlier file changes (hashes compared).

Cases are numbered like the run-directory integrity issue they come from (docs/reliability.md).
Multi-process cases (two jobs at once, Ctrl-C, kill -9, a real full disk) are in test_run_processes.py.
"""

from __future__ import annotations

import errno
import hashlib
import json
import shutil
from pathlib import Path

import pytest
import torch

from xlm_core.run.checkpoints import AtomicCheckpointIO, CheckpointError, checkpoint_step
from xlm_core.cli import main

TINY = [
    "family=arlm", "experiment=star_easy_arlm", "model=rotary_transformer_tiny_arlm", "model.d_model=32",
    "model.num_layers=1", "model.nhead=2", "model.dim_feedforward=64", "model.rotary_emb_dim=16", "debug=overfit",
    "per_device_batch_size=32", "global_batch_size=32", "trainer.num_sanity_val_steps=0", "predictor.max_steps=10",
    "progress_every_n_steps=1", "trainer.log_every_n_steps=1",
]
RUN = "star_easy_arlm"


def snapshot(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root`` except the per-invocation log files and the lock's holder note."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*"))
            if p.is_file() and "logs" not in p.relative_to(root).parts and p.name != ".xlm.lock"}


def xlm(capsys: pytest.CaptureFixture[str], root: Path, *args: str) -> tuple[int, str, str]:
    code = main([*TINY, f"paths.root_dir={root}", *args])
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(code: int, err: str, *needles: str) -> None:
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.startswith("xlm: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished 6-step run: validation at 4 and (the final step) 6, checkpoints every 2 steps."""
    root = tmp_path_factory.mktemp("integrity")
    assert main([*TINY, f"paths.root_dir={root}", "trainer.max_steps=6", "trainer.val_check_interval=4",
                 "checkpointing.every_n_steps=2", "checkpointing.keep_every_n_steps=2"]) == 0
    return root


@pytest.fixture
def run(trained: Path, tmp_path: Path) -> Path:
    """A private copy of the trained root (tests may damage it)."""
    root = tmp_path / "root"
    shutil.copytree(trained, root)
    return root


# 1. a full disk during a save leaves the previous checkpoint intact --------------------------------------
def test_1_a_failed_save_keeps_the_previous_checkpoint(run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    last = run / "outputs" / RUN / "checkpoints" / "last.ckpt"
    before = last.read_bytes()
    real_save = torch.save

    def disk_fills_up(obj, f, *args, **kwargs):
        real_save(obj, f, *args, **kwargs)
        f.truncate(1000)  # what a full disk leaves behind ...
        raise OSError(errno.ENOSPC, "No space left on device")  # ... and the error it raises

    monkeypatch.setattr(torch, "save", disk_fills_up)
    with pytest.raises(CheckpointError, match=r"no space left to save checkpoint .*last.ckpt.*the previous checkpoint"):
        AtomicCheckpointIO().save_checkpoint({"state_dict": {"w": torch.zeros(1000)}}, last)
    assert last.read_bytes() == before
    assert sorted(p.name for p in last.parent.iterdir() if p.name.startswith(".")) == []  # no temporary left


# 2. best.ckpt and metrics.json reflect the last validation, also at a final step off the interval ------
def test_2_the_final_step_is_validated_inside_training(trained: Path) -> None:
    run_dir = trained / "outputs" / RUN
    metrics = json.loads((run_dir / "metrics.json").read_text())
    history = json.loads((run_dir / "plots" / "history.json").read_text())["val/lm/accumulated_loss"]
    assert [step for step, _ in history] == [4, 6]
    assert metrics["step"] == 6 and metrics["val/lm/accumulated_loss"] == pytest.approx(history[-1][1])
    best = torch.load(run_dir / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=True)
    state = next(v for k, v in best["callbacks"].items() if k.startswith("BestCheckpoint"))
    assert float(state["best_model_score"]) == pytest.approx(min(v for _, v in history))
    assert best["global_step"] == min(history, key=lambda item: item[1])[0]


# 3. resume=false on an existing run refuses; overwrite=true moves the old run aside ----------------------
def test_3_resume_false_refuses_then_overwrite_moves_the_run_aside(run: Path, capsys) -> None:
    run_dir = run / "outputs" / RUN
    before = snapshot(run_dir)
    code, _, err = xlm(capsys, run, "resume=false", "trainer.max_steps=2")
    one_line_error(code, err, "already holds a run", "job_name=", "overwrite=true")
    assert snapshot(run_dir) == before
    code, out, err = xlm(capsys, run, "resume=false", "overwrite=true", "trainer.max_steps=2",
                         "trainer.val_check_interval=2")
    assert code == 0, err
    (aside,) = (run / "outputs").glob(f"{RUN}.replaced-*")
    assert snapshot(aside) == before and f"moved to {aside}" in out
    assert checkpoint_step(run_dir / "checkpoints" / "last.ckpt") == 2


# 4. eval refuses a model config that differs from the checkpoint's, and writes nothing ----------------
def test_4_eval_with_a_different_model_is_refused(run: Path, capsys) -> None:
    run_dir = run / "outputs" / RUN
    before = snapshot(run_dir)
    code, _, err = xlm(capsys, run, "job_type=eval", "model.nhead=1")
    one_line_error(code, err, "model.nhead: 2 -> 1", "allow_config_mismatch=true")
    assert snapshot(run_dir) == before
    code, out, err = xlm(capsys, run, "job_type=eval", "model.nhead=1", "allow_config_mismatch=true")
    assert code == 0, err
    assert "warning: load its weights with a config that differs from best.ckpt's: model.nhead: 2 -> 1" in out


# 5. a resume with other hyperparameters is refused before anything is written --------------------------
@pytest.mark.parametrize("change, shown", [("optimizer.lr=1e-5", "optimizer.lr: 0.0001 -> 1e-05"),
                                           ("model.d_model=64", "model.d_model: 32 -> 64")])
def test_5_resume_with_changed_hyperparameters_is_refused(run: Path, capsys, change: str, shown: str) -> None:
    run_dir = run / "outputs" / RUN
    before = snapshot(run_dir)
    code, _, err = xlm(capsys, run, change, "trainer.max_steps=8")
    one_line_error(code, err, shown, "last.ckpt")
    assert snapshot(run_dir) == before  # config.yaml included


def test_5_a_longer_resume_keeps_every_start_config(run: Path, capsys) -> None:
    run_dir = run / "outputs" / RUN
    first = (run_dir / "config.yaml").read_bytes()
    code, out, err = xlm(capsys, run, "trainer.max_steps=8")
    assert code == 0, err
    assert "trainer.max_steps changed from 6 to 8" in out
    assert (run_dir / "config.yaml").read_bytes() == first
    (resumed,) = run_dir.glob("config.resume-step6-*.yaml")
    assert "max_steps: 8" in resumed.read_text()


# 7. one line, naming the file, row, field or key ------------------------------------------------------
def test_7_a_truncated_last_checkpoint_falls_back_to_the_newest_intact_one(run: Path, capsys) -> None:
    ckpts = run / "outputs" / RUN / "checkpoints"
    data = (ckpts / "last.ckpt").read_bytes()
    (ckpts / "last.ckpt").write_bytes(data[: len(data) // 3])
    code, out, err = xlm(capsys, run, "trainer.max_steps=8")
    assert code == 0, err
    assert "last.ckpt is truncated or corrupt" in out and ".ckpt (step 6) instead of last.ckpt" in out
    assert checkpoint_step(ckpts / "last.ckpt") == 8  # training went on and rewrote it whole


def test_7_an_explicit_truncated_checkpoint_is_one_line(run: Path, capsys) -> None:
    bad = run / "bad.ckpt"
    bad.write_bytes((run / "outputs" / RUN / "checkpoints" / "last.ckpt").read_bytes()[:5000])
    code, _, err = xlm(capsys, run, "job_type=eval", f"eval.checkpoint_path={bad}")
    one_line_error(code, err, f"checkpoint {bad} is truncated or corrupt (5,000 bytes")


@pytest.mark.parametrize("content, needles", [
    ("", ["data file", "is empty"]),
    ('{"question": "q", "code": "def simple_math_problem():\\n    return 1"}\n{"question": "q2", "code": \n',
     ["line 2 is not valid JSON"]),
    ('{"q": "what?", "code": "x"}\n' * 3, ["lack the field 'question'", "they have q, code"]),
])
def test_7_bad_local_data_files_are_one_line(tmp_path: Path, capsys, content: str, needles: list[str]) -> None:
    data = tmp_path / "tinygsm.jsonl"
    data.write_text(content)
    code = main(["family=arlm", "experiment=tinygsm_arlm_offline_demo", "job_type=prepare_data",
                 f"paths.root_dir={tmp_path}", f"tinygsm_data_files={data}"])
    one_line_error(code, capsys.readouterr().err, str(data) if "field" not in needles[0] else "tinygsm_train",
                   *needles)


@pytest.mark.parametrize("override, needles", [
    ("optimizer.lr=-1", ["optimizer.lr=-1: must be a number > 0"]),
    ("global_batch_size=-8", ["global_batch_size=-8: must be a positive int"]),
    ("trainer.max_steps=abc", ["trainer.max_steps='abc'", "positive int"]),
    ("trainer.accelerator=gpu", ["trainer.accelerator=gpu but this machine has no usable CUDA GPU"]),
    ("global_batch_size=0", ["global_batch_size=0: must be a positive int"]),          # 8: no longer "unset"
    ("+lr=5", ["+lr=... adds a top-level key", "optimizer.lr"]),                       # 8: no longer ignored
    ("model.nhead=3", ["model (_target_=xlm_arlm.model_arlm.RotaryTransformerARLMModel)", "divisible by nhead"]),
])
def test_7_and_8_bad_values_are_one_line_and_write_nothing(tmp_path: Path, capsys, override: str,
                                                           needles: list[str]) -> None:
    if override == "trainer.accelerator=gpu" and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    code, _, err = xlm(capsys, tmp_path, override)
    one_line_error(code, err, *needles)
    assert not (tmp_path / "outputs" / RUN / "config.yaml").exists()
    assert not (tmp_path / "outputs" / RUN / "checkpoints").exists()


def test_8_prompt_words_outside_the_vocabulary_are_named(trained: Path, capsys) -> None:
    code, _, err = xlm(capsys, trained, "job_type=generate", '+prompts=["1 2 banana 3", "4 5"]')
    one_line_error(code, err, "'1 2 banana 3' has words the tokenizer does not know: banana")


def test_an_unexpected_failure_is_one_line_with_the_debug_switch(tmp_path: Path, capsys, monkeypatch) -> None:
    from xlm_core.jobs import train as train_job

    def boom(cfg, run_dir):
        raise RuntimeError("something inside broke\nsecond line")

    monkeypatch.setattr(train_job, "_train", boom)
    code, _, err = xlm(capsys, tmp_path)
    assert code == 1 and "Traceback" not in err
    assert err.strip() == ("xlm: error: RuntimeError: something inside broke (this looks like a bug; XLM_DEBUG=1 "
                           "prints the traceback, which is also in the run's logs/)")
    monkeypatch.setenv("XLM_DEBUG", "1")
    code, _, err = xlm(capsys, tmp_path)
    assert code == 1 and "Traceback (most recent call last)" in err
