"""Nothing lost, nothing silently wrong: every way a user can damage or mislead a run directory ends in
correct behaviour or a one-line error (exit code 2), and no earlier file changes (hashes compared).

Cases are numbered like the run-directory integrity issue they come from (docs/reliability.md).
Multi-process cases (two jobs at once, Ctrl-C, kill -9, a real full disk) are in test_run_processes.py.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from xlm_core.cli import main
from xlm_core.run.checkpoints import AtomicCheckpointIO, CheckpointError, checkpoint_step

from tiny_runs import TINY_STAR_ARLM

TINY = [
    "family=arlm",
    *TINY_STAR_ARLM,
    "per_device_batch_size=32",
    "global_batch_size=32",
    "predictor.max_steps=10",
    "progress_every_n_steps=1",
    "trainer.log_every_n_steps=1",
]
RUN = "star_easy_arlm"


def snapshot(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root`` except the per-invocation log files and the lock's holder note."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and "logs" not in p.relative_to(root).parts and p.name != ".xlm.lock"
    }


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
    assert (
        main(
            [
                *TINY,
                f"paths.root_dir={root}",
                "trainer.max_steps=6",
                "trainer.val_check_interval=4",
                "checkpointing.every_n_steps=2",
                "checkpointing.keep_every_n_steps=2",
            ]
        )
        == 0
    )
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
    code, out, err = xlm(
        capsys, run, "resume=false", "overwrite=true", "trainer.max_steps=2", "trainer.val_check_interval=2"
    )
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
@pytest.mark.parametrize(
    "change, shown",
    [("optimizer.lr=1e-5", "optimizer.lr: 0.0001 -> 1e-05"), ("model.d_model=64", "model.d_model: 32 -> 64")],
)
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


@pytest.mark.parametrize(
    "content, needles",
    [
        ("", ["data file", "is empty"]),
        (
            '{"question": "q", "code": "def simple_math_problem():\\n    return 1"}\n{"question": "q2", "code": \n',
            ["line 2 is not valid JSON"],
        ),
        (
            "".join(f'{{"q": "what {i}?", "code": "x"}}\n' for i in range(3)),
            ["lack the field 'question'", "they have q, code"],
        ),
    ],
)
def test_7_bad_local_data_files_are_one_line(tmp_path: Path, capsys, content: str, needles: list[str]) -> None:
    data = tmp_path / "tinygsm.jsonl"
    data.write_text(content)
    code = main(
        [
            "family=arlm",
            "experiment=tinygsm_arlm_offline_demo",
            "job_type=prepare_data",
            f"paths.root_dir={tmp_path}",
            f"tinygsm_data_files={data}",
        ]
    )
    one_line_error(code, capsys.readouterr().err, str(data) if "field" not in needles[0] else "tinygsm_train", *needles)


@pytest.mark.parametrize(
    "override, needles",
    [
        ("optimizer.lr=-1", ["optimizer.lr=-1: must be a number > 0"]),
        ("global_batch_size=-8", ["global_batch_size=-8: must be a positive int"]),
        ("trainer.max_steps=abc", ["trainer.max_steps='abc'", "positive int"]),
        ("trainer.accelerator=gpu", ["trainer.accelerator=gpu but this machine has no usable CUDA GPU"]),
        ("global_batch_size=0", ["global_batch_size=0: must be a positive int"]),  # 8: no longer "unset"
        ("+lr=5", ["+lr=... adds a top-level key", "optimizer.lr"]),  # 8: no longer ignored
        ("model.nhead=3", ["model (_target_=xlm_arlm.model_arlm.RotaryTransformerARLMModel)", "divisible by nhead"]),
    ],
)
def test_7_and_8_bad_values_are_one_line_and_write_nothing(
    tmp_path: Path, capsys, override: str, needles: list[str]
) -> None:
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
    assert err.strip() == (
        "xlm: error: RuntimeError: something inside broke (this looks like a bug; XLM_DEBUG=1 "
        "prints the traceback, which is also in the run's logs/)"
    )
    monkeypatch.setenv("XLM_DEBUG", "1")
    code, _, err = xlm(capsys, tmp_path)
    assert code == 1 and "Traceback (most recent call last)" in err


# ======================================================================================================
# Second round (issue 19): each case reproduces a defect through the CLI; docs/reliability.md lists them.
# ======================================================================================================
def no_traceback(code: int, out: str, err: str, *needles: str) -> str:
    """Exit code 2 and exactly one ``xlm: error:`` line on stderr; no traceback on stdout or stderr."""
    one_line_error(code, err, *needles)
    assert "Traceback" not in out, out[-3000:]
    return next(line for line in err.splitlines() if line.startswith("xlm: error:"))


@contextlib.contextmanager
def read_only(path: Path) -> Iterator[None]:
    """``path`` read-only for this process: a read-only bind mount when root (root ignores file modes), else
    chmod; skips the test where neither works."""
    if os.geteuid() != 0:
        modes = {p: p.stat().st_mode for p in [path, *path.rglob("*")] if not p.is_symlink()}
        for p in modes:
            p.chmod(modes[p] & ~0o222)
        try:
            yield
        finally:
            for p, mode in modes.items():
                p.chmod(mode)
        return
    mounted = subprocess.run(["mount", "--bind", str(path), str(path)], capture_output=True).returncode == 0
    if not mounted or subprocess.run(["mount", "-o", "remount,bind,ro", str(path)], capture_output=True).returncode:
        if mounted:
            subprocess.run(["umount", str(path)], capture_output=True)
        pytest.skip("cannot make a read-only bind mount here")
    try:
        yield
    finally:
        subprocess.run(["umount", str(path)], capture_output=True)


# 2. run names: empty, '.', '..', separators -> one line, nothing created ------------------------------
@pytest.mark.parametrize("name", ["", ".", "..", "../x", "a/b", "my run"])
def test_r2_2_unsafe_run_names_are_refused(tmp_path: Path, capsys, name: str) -> None:
    code, out, err = xlm(capsys, tmp_path, f"job_name={name}", "trainer.max_steps=2")
    no_traceback(code, out, err, f"job_name={name!r} cannot name a run directory")
    assert list(tmp_path.iterdir()) == []  # not even Hydra's logs/ directory


# 3. a changed monitor on resume would replace best.ckpt: refused, or kept aside ------------------------
def test_r2_3_a_changed_monitor_keeps_the_old_best_checkpoint(run: Path, capsys) -> None:
    run_dir = run / "outputs" / RUN
    before = snapshot(run_dir)
    new = ["monitor=val/prediction/token_accuracy", "monitor_mode=max", "trainer.max_steps=8"]
    code, out, err = xlm(capsys, run, *new)
    no_traceback(
        code,
        out,
        err,
        "monitor=val/lm/accumulated_loss monitor_mode=min -> monitor=val/prediction/token_accuracy monitor_mode=max",
        "allow_config_mismatch=true",
    )
    assert snapshot(run_dir) == before
    code, out, err = xlm(capsys, run, *new, "allow_config_mismatch=true")
    assert code == 0, err
    aside = run_dir / "checkpoints" / "best.val_lm_accumulated_loss-min.ckpt"
    assert snapshot(run_dir)["checkpoints/best.val_lm_accumulated_loss-min.ckpt"] == before["checkpoints/best.ckpt"]
    assert f"previous best.ckpt (by val/lm/accumulated_loss) is kept as {aside}" in out
    best = torch.load(run_dir / "checkpoints" / "best.ckpt", weights_only=True)
    assert any(k.startswith("BestCheckpoint{'monitor': 'val/prediction/token_accuracy'") for k in best["callbacks"])


# 4. allow_config_mismatch=true applies the new optimizer settings, so what is recorded is what is used -
def test_r2_4_a_resume_with_another_lr_uses_and_records_it(run: Path, capsys) -> None:
    run_dir = run / "outputs" / RUN
    code, out, err = xlm(capsys, run, "optimizer.lr=1e-5", "allow_config_mismatch=true", "trainer.max_steps=8")
    assert code == 0, err
    assert "the new optimizer / schedule settings are applied to the resumed optimizer" in out
    last = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["global_step"] == 8 and last["xlm_config"]["optimizer"]["lr"] == 1e-5
    assert [g["lr"] for g in last["optimizer_states"][0]["param_groups"]] == [1e-5, 1e-5]
    assert last["lr_schedulers"][0]["base_lrs"] == [1e-5, 1e-5]
    (resumed,) = run_dir.glob("config.resume-step6-*.yaml")
    assert "lr: 1.0e-05" in resumed.read_text()


# 5. the NaN guard: truthful labels, the last finite checkpoint, advice that works, nothing overwritten --
def test_r2_5_the_nan_guard_names_the_last_finite_checkpoint_and_its_advice_works(tmp_path: Path, capsys) -> None:
    diverging = [
        "optimizer.lr=1e6",
        "lr_scheduler.num_warmup_steps=1000",
        "trainer.max_steps=12",
        "checkpointing.every_n_steps=2",
        "trainer.val_check_interval=1000",
    ]
    code, out, err = xlm(capsys, tmp_path, *diverging)
    line = no_traceback(
        code,
        out,
        err,
        "the training loss became nan at step",
        "for inspection, not to continue from",
        "the newest checkpoint with a finite loss and finite weights is",
    )
    step = int(line.split("became nan at step ")[1].split()[0])
    guard = Path(line.split("the weights that gave it (largest |w| ")[1].split(") are in ")[1].split()[0])
    good = Path(line.split("resume_from=")[1].split()[0])
    good_step = checkpoint_step(good)
    assert guard.name == f"nan_guard_step_{step}.ckpt" and good_step < step
    weights = torch.load(good, weights_only=True)["state_dict"]
    assert all(bool(torch.isfinite(t).all()) for t in weights.values() if t.is_floating_point())
    assert "weights_only" not in out + err and "optimizer.lr=<lower than 1e+06> allow_config_mismatch=true" in line
    first = hashlib.sha256(guard.read_bytes()).hexdigest()
    code, out, err = xlm(capsys, tmp_path, *diverging)  # the same again: an earlier attempt's file stays
    assert code == 2 and (guard.parent / f"nan_guard_step_{step}-2.ckpt").is_file()
    assert hashlib.sha256(guard.read_bytes()).hexdigest() == first
    code, out, err = xlm(
        capsys, tmp_path, *diverging[1:], f"resume_from={good}", "optimizer.lr=1e-4", "allow_config_mismatch=true"
    )  # the advice, with a lower learning rate
    assert code == 0, err
    assert f"resuming from {good} (step {good_step};" in out
    assert checkpoint_step(tmp_path / "outputs" / RUN / "checkpoints" / "last.ckpt") == 12


# 6. data globs: no symlink loops, each real file once, no document on both sides of the split ---------
def test_r2_6_a_self_link_and_copies_do_not_leak_documents_into_training(tmp_path: Path, capsys) -> None:
    corpus = tmp_path / "corpus"
    (corpus / "sub").mkdir(parents=True)
    for i in range(4):
        (corpus / f"d{i}.py").write_text(f"def f{i}(x):\n    return x + {i} * {i}\n" * 5)
    for i in range(4):  # one document four times: the seeded split holds one copy out and trains on three
        (corpus / "sub" / f"copy{i}.py").write_text("class Same:\n    value = 'same text'\n" * 5)
    (corpus / "self").symlink_to(".")
    (corpus / "sub" / "up").symlink_to("..")
    code = main(
        [
            "experiment=pystdlib_arlm_cpu",
            f"corpus.data_files={corpus}/**/*.py",
            "corpus.val_size=3",
            "tokenizer.vocab_size=300",
            "block_size=32",
            "job_type=prepare_data",
            f"paths.root_dir={tmp_path}",
        ]
    )
    out, err = capsys.readouterr()
    assert code == 0, err
    (manifest,) = (tmp_path / ".xlm_cache" / "pystdlib_train").glob("*/xlm_manifest.json")
    files = [f for f, *_ in json.loads(manifest.read_text())["source"]["files"]]
    assert sorted(Path(f).name for f in files) == [*(f"copy{i}.py" for i in range(4)), *(f"d{i}.py" for i in range(4))]
    log = "".join(p.read_text() for p in (tmp_path / "outputs" / "pystdlib_arlm_cpu" / "logs").glob("*.log"))
    assert "pystdlib_train: 3 training row(s) are identical to held-out rows and were left out of training" in log


def test_r2_6_followed_links_enter_each_real_directory_once(tmp_path: Path) -> None:
    from xlm_core.data.file_globs import expand_data_files

    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "x.txt").write_text("x")
    (tmp_path / "a" / "b" / "loop").symlink_to("..")
    (tmp_path / "a" / "self").symlink_to(".")
    (tmp_path / "a" / "y.txt").symlink_to("b/x.txt")
    for follow in (False, True):
        assert expand_data_files(str(tmp_path / "a" / "**" / "*.txt"), follow_symlinks=follow) == [
            str(tmp_path / "a" / "b" / "x.txt")
        ]


# 7. a damaged dataset cache is refused with the directory to delete, never scored with fewer rows -----
def test_r2_7_a_truncated_cache_is_refused_and_names_the_directory(run: Path, capsys) -> None:
    run_dir = run / "outputs" / RUN
    arrows = sorted((run / ".xlm_cache").glob("*/*/data-*.arrow"))
    assert arrows
    for arrow in arrows:
        data = arrow.read_bytes()
        arrow.write_bytes(data[: len(data) * 2 // 5])
    before = snapshot(run_dir)
    code, out, err = xlm(capsys, run, "job_type=eval", "eval.split=test")
    line = no_traceback(code, out, err, "is damaged", "delete that directory (rm -r ")
    damaged = Path(line.split("(rm -r ")[1].split(")")[0])
    assert damaged.parent.parent == run / ".xlm_cache" and any(a.parent == damaged for a in arrows)
    assert snapshot(run_dir) == before and not (run_dir / "eval").exists()


# 8. tiny temperatures are greedy, special tokens typed into a prompt are refused ----------------------
def test_r2_8_a_tiny_temperature_samples_the_greedy_tokens(trained: Path, capsys) -> None:
    texts = []
    for sampling in (
        ["predictor.sampling_method=sample", "predictor.temperature=1e-40"],
        ["predictor.sampling_method=sample_top_k", "predictor.top_k=1"],
    ):
        code, out, err = xlm(capsys, trained, "job_type=generate", '+prompts=["1 2 3 4", "5 6"]', *sampling)
        assert code == 0, err
        newest = max((trained / "outputs" / RUN / "generate").iterdir(), key=lambda p: p.stat().st_mtime_ns)
        rows = [json.loads(r) for r in next(newest.rglob("*.jsonl")).read_text().splitlines()]
        texts.append([r["ids"] for r in rows])
    assert texts[0] == texts[1] and all(len(ids) > 0 for ids in texts[0])


def test_r2_8_special_tokens_typed_into_a_prompt_are_refused(trained: Path, capsys) -> None:
    before = snapshot(trained / "outputs" / RUN)
    code, out, err = xlm(capsys, trained, "job_type=generate", '+prompts=["1 2 [EOS] 3"]')
    no_traceback(code, out, err, "prompt '1 2 [EOS] 3' contains the special token(s) [EOS]")
    assert snapshot(trained / "outputs" / RUN) == before


# 9. notes: warm-up longer than the run, a resume with another batch size or seed -----------------------
def test_r2_9_notes_for_a_short_warmup_and_a_changed_data_order(run: Path, capsys) -> None:
    code, out, err = xlm(
        capsys,
        run,
        "per_device_batch_size=16",
        "global_batch_size=16",
        "seed=7",
        "trainer.max_steps=8",
        "lr_scheduler.num_warmup_steps=100",
        "allow_config_mismatch=true",
    )
    assert code == 0, err
    assert (
        "lr_scheduler.num_warmup_steps=100 is longer than the 8 steps this run trains, so the learning rate never "
        "reaches optimizer.lr (it ends at 8% of it)"
    ) in out
    assert "resuming with seed 42 -> 7, per_device_batch_size 32 -> 16, global_batch_size 32 -> 16" in out
    assert "the batches differ from those of an uninterrupted run" in out


# 10. the code sandbox never falls back to no isolation by itself ---------------------------------------
def test_r2_10_auto_without_an_isolating_sandbox_is_one_line(tmp_path: Path, capsys, monkeypatch) -> None:
    from xlm_core.tasks.code_exec import sandbox

    bare = tmp_path / "bin"  # a PATH without bwrap or unshare
    bare.mkdir()
    monkeypatch.setenv("PATH", str(bare))
    for fn in (sandbox.probe_isolation, sandbox.resolve_isolation):
        fn.cache_clear()
    evaluator = "post_hoc_evaluator={_target_:xlm_core.tasks.code_exec.Gsm8kCodeEval,allow_code_execution:true}"
    try:
        code, out, err = xlm(capsys, tmp_path / "root", evaluator, "trainer.max_steps=2")
        no_traceback(
            code, out, err, "no isolating sandbox works on this machine", "apt-get install bubblewrap", "isolation=none"
        )
        code, out, err = xlm(capsys, tmp_path / "root", evaluator, "+post_hoc_evaluator.isolation=process")
        no_traceback(
            code, out, err, "isolation='process' runs generated code with no isolation", "spelled isolation='none'"
        )
    finally:
        for fn in (sandbox.probe_isolation, sandbox.resolve_isolation):
            fn.cache_clear()
    assert not (tmp_path / "root" / "outputs" / RUN / "checkpoints").exists()


# 11. a checkpoint holding pickled code is "not a checkpoint": never run, never weights_only=False ------
class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_r2_11_a_pickled_code_checkpoint_is_skipped_for_an_intact_one(run: Path, capsys) -> None:
    ckpts = run / "outputs" / RUN / "checkpoints"
    marker = run / "pwned"
    torch.save({"state_dict": {}, "global_step": 99, "x": _Payload(marker)}, ckpts / "last.ckpt")
    code, out, err = xlm(capsys, run, "trainer.max_steps=8")
    assert code == 0, err
    assert "last.ckpt is not a checkpoint xlm can load: it holds pickled objects or code (posix.system)" in out
    assert ".ckpt (step 6) instead of last.ckpt" in out and checkpoint_step(ckpts / "last.ckpt") == 8
    evil = run / "evil.ckpt"
    torch.save({"x": _Payload(marker)}, evil)
    code, out, err = xlm(capsys, run, "job_type=eval", f"eval.checkpoint_path={evil}")
    no_traceback(code, out, err, f"checkpoint {evil} is not a checkpoint xlm can load")
    assert not marker.exists() and "weights_only" not in out + err


# 12. one line (exit 2), never a traceback ---------------------------------------------------------------
@pytest.mark.parametrize(
    "args, needles",
    [
        (["trainer.max_step=5"], ["trainer.max_step: the config has no such key", "did you mean trainer.max_steps"]),
        (["job_name=a,b"], ["job_name=a,b: a comma makes this a sweep", "job_name='a,b'", "--multirun"]),
        (["job_name=my", "run"], ["'run' is not a key=value override", "quote the whole override as one word"]),
        (["+optimizer.foo=1"], ["optimizer.foo: the AdamW optimizer has no option 'foo'"]),
        (
            ["+lr_scheduler.num_warmup_step=5"],
            ["lr_scheduler.num_warmup_step:", "did you mean lr_scheduler.num_warmup_steps"],
        ),
        (
            ["model=rotary_transformer_tiny"],
            ["model=rotary_transformer_tiny: no such config", "did you mean model=rotary_transformer_tiny_arlm"],
        ),
    ],
)
def test_r2_12_mistakes_in_overrides_are_one_line(tmp_path: Path, capsys, args: list[str], needles: list[str]) -> None:
    code, out, err = xlm(capsys, tmp_path, *args)
    no_traceback(code, out, err, *needles)
    assert not (tmp_path / "outputs" / RUN / "checkpoints").exists()


def test_r2_12_a_value_left_as_missing_is_one_line(tmp_path: Path, capsys) -> None:
    code = main(["experiment=text_arlm", f"paths.root_dir={tmp_path}", "trainer.max_steps=2"])
    out, err = capsys.readouterr()
    no_traceback(code, out, err, "corpus.data_files=??? is a value the config leaves for you to set")


@pytest.mark.parametrize(
    "args, needles",
    [
        (
            ["job_type=generate", "generate.batch_size=-1", '+prompts=["1 2"]'],
            ["generate.batch_size=-1: must be a positive"],
        ),
        (
            ["job_type=eval", "model.d_model=64", "allow_config_mismatch=true"],
            [
                "the checkpoint does not fit this model (model.embed_tokens.weight: checkpoint (27, 32) vs model (27, 64)"
            ],
        ),
        (
            ["job_type=generate", "model.d_model=64", "allow_config_mismatch=true", '+prompts=["1 2"]'],
            ["the checkpoint does not fit this model"],
        ),
        (
            ["job_type=export", "model.d_model=64", "allow_config_mismatch=true"],
            ["the checkpoint does not fit this model"],
        ),
    ],
)
def test_r2_12_and_13_failed_jobs_are_one_line_and_leave_no_directory(
    run: Path, capsys, args: list[str], needles: list[str]
) -> None:
    run_dir = run / "outputs" / RUN
    before, dirs = snapshot(run_dir), sorted(p for p in run_dir.rglob("*") if p.is_dir() and "logs" not in p.parts)
    code, out, err = xlm(capsys, run, *args)
    no_traceback(code, out, err, *needles)
    assert snapshot(run_dir) == before  # no file changed or added (config.yaml included) ...
    assert sorted(p for p in run_dir.rglob("*") if p.is_dir() and "logs" not in p.parts) == dirs  # ... nor directory


@pytest.mark.parametrize("job", ["train", "eval", "generate"])
def test_r2_12_a_read_only_run_directory_is_one_line(run: Path, capsys, job: str) -> None:
    run_dir = run / "outputs" / RUN
    before = snapshot(run_dir)
    with read_only(run_dir):
        code, out, err = xlm(capsys, run, f"job_type={job}", "trainer.max_steps=8", '+prompts=["1 2"]')
    no_traceback(code, out, err, f"cannot write {run_dir}/", "make that place writable")
    assert snapshot(run_dir) == before


def test_r2_12_a_read_only_export_directory_is_one_line(run: Path, capsys) -> None:
    target = run / "exports"
    target.mkdir()
    with read_only(target):
        code, out, err = xlm(capsys, run, "job_type=export", f"export.dir={target}/hf")
    no_traceback(code, out, err, f"cannot write {target}/hf", "export.dir=")
    assert list(target.iterdir()) == []


# 1. under SLURM, Lightning's auto-requeue (an hpc_ckpt saved inside its signal handler, which xlm's resume would
#    not read) is off: SIGTERM saves last.ckpt instead (docs/multi_node.md) -------------------------------------
def test_r2_1_under_slurm_lightnings_auto_requeue_is_off(tmp_path: Path, monkeypatch) -> None:
    from lightning.fabric.plugins.environments import SLURMEnvironment

    from xlm_core.config.compose import compose_config
    from xlm_core.jobs.common import build_trainer

    for key, value in {
        "SLURM_NTASKS": "1",
        "SLURM_NTASKS_PER_NODE": "1",
        "SLURM_JOB_NAME": "xlm",
        "SLURM_JOB_ID": "7",
        "SLURM_PROCID": "0",
        "SLURM_LOCALID": "0",
        "SLURM_NODEID": "0",
        "SLURM_NODELIST": "localhost",
    }.items():
        monkeypatch.setenv(key, value)
    cfg = compose_config("arlm", [*TINY[1:], f"paths.root_dir={tmp_path}", "trainer.accelerator=cpu"])
    environment = build_trainer(
        cfg
    )._accelerator_connector.cluster_environment  # what Lightning's signal handling reads
    assert isinstance(environment, SLURMEnvironment) and environment.auto_requeue is False


def test_r2_12_a_deletion_override_is_no_stray_word(tmp_path: Path, capsys) -> None:
    code, out, err = xlm(capsys, tmp_path, "~summary_samples", "job_type=name")
    assert code == 0 and "xlm: error" not in err and "summary_samples" not in out
