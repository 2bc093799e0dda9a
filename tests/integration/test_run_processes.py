"""Run-directory integrity against what other processes and the OS do: a second job on the same run,
``kill -9``, Ctrl-C, and a disk that fills up (docs/reliability.md). Each case runs the real CLI in
subprocesses and watches its progress lines, so these tests are slow."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from xlm_core.run.checkpoints import checkpoint_step

from tiny_runs import TINY_STAR_ARLM

pytestmark = [pytest.mark.slow, pytest.mark.integration]

TINY = [
    "family=arlm",
    *TINY_STAR_ARLM,
    "per_device_batch_size=8",
    "global_batch_size=8",
    "predictor.max_steps=10",
    "progress_every_n_steps=1",
    "trainer.log_every_n_steps=1",
    "trainer.val_check_interval=1000",
]
RUN = "star_easy_arlm"


def start(root: Path, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "xlm_core.cli", *TINY, f"paths.root_dir={root}", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=root,
        env=env,
    )


def wait_for_step(proc: subprocess.Popen[str], step: int, timeout_s: float = 240.0) -> list[str]:
    """Read the job's output until it reports training step ``step``; return the lines read."""
    lines: list[str] = []
    deadline = time.monotonic() + timeout_s
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if line.startswith(f"step {step}/"):
            return lines
    proc.kill()
    tail = "".join(lines[-40:])
    raise AssertionError(f"the job never reached step {step}:\n{tail}")


def finish(proc: subprocess.Popen[str], timeout_s: float = 240.0) -> tuple[int, str]:
    out, _ = proc.communicate(timeout=timeout_s)
    return proc.returncode, out


def test_6_a_second_job_on_a_running_run_is_refused(tmp_path: Path) -> None:
    first = start(tmp_path, "trainer.max_steps=100000")
    try:
        wait_for_step(first, 3)
        second = subprocess.run(
            [sys.executable, "-m", "xlm_core.cli", *TINY, f"paths.root_dir={tmp_path}"],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            timeout=240,
        )
        assert second.returncode == 2
        assert second.stderr.strip().startswith(
            f"xlm: error: run directory {tmp_path / 'outputs' / RUN} is in use "
            f"by another xlm train job (pid {first.pid} on "
        )
        assert "choose another job_name=" in second.stderr
    finally:
        first.kill()
        first.wait()


def test_kill_9_releases_the_run_and_a_rerun_resumes_exactly_there(tmp_path: Path) -> None:
    first = start(tmp_path, "trainer.max_steps=100000", "checkpointing.every_n_steps=2")
    wait_for_step(first, 5)
    first.send_signal(signal.SIGKILL)
    first.wait()
    last = tmp_path / "outputs" / RUN / "checkpoints" / "last.ckpt"
    saved = checkpoint_step(last)
    assert saved in (4, 6)  # the last multiple of 2 it finished
    code, out = finish(start(tmp_path, f"trainer.max_steps={saved + 2}"))
    assert code == 0, out
    assert f"resuming from {last} (step {saved};" in out
    assert checkpoint_step(last) == saved + 2


def test_9_ctrl_c_saves_the_current_step_and_prints_the_resume_command(tmp_path: Path) -> None:
    proc = start(tmp_path, "trainer.max_steps=100000", "checkpointing.every_n_steps=1000")
    wait_for_step(proc, 3)
    proc.send_signal(signal.SIGINT)
    code, out = finish(proc)
    assert code == 130, out
    (line,) = [line for line in out.splitlines() if line.startswith("xlm: stopped: training stopped at step ")]
    step = int(line.split("training stopped at step ")[1].split(";")[0])
    last = tmp_path / "outputs" / RUN / "checkpoints" / "last.ckpt"
    assert step >= 3 and checkpoint_step(last) == step
    assert f"checkpoint saved to {last}. Resume with: xlm family=arlm experiment=star_easy_arlm" in line
    code, out = finish(start(tmp_path, f"trainer.max_steps={step + 1}"))
    assert code == 0 and f"(step {step};" in out


def _mount_tmpfs(where: Path, size: str) -> bool:
    where.mkdir(parents=True)
    return (
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], capture_output=True
        ).returncode
        == 0
    )


def test_1_a_full_disk_keeps_the_last_good_checkpoint(tmp_path: Path) -> None:
    runs = tmp_path / "small_disk"
    if not _mount_tmpfs(runs, "3m"):
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        code, out = finish(
            start(tmp_path, f"paths.runs_dir={runs}", "trainer.max_steps=2", "checkpointing.every_n_steps=2")
        )
        assert code == 0, out
        last = runs / RUN / "checkpoints" / "last.ckpt"
        good = hashlib.sha256(last.read_bytes()).hexdigest()
        filler = runs / "filler.bin"
        free = os.statvfs(runs).f_bavail * os.statvfs(runs).f_frsize
        filler.write_bytes(b"\0" * max(free - 20_000, 0))  # leave far less than a checkpoint
        code, out = finish(
            start(tmp_path, f"paths.runs_dir={runs}", "trainer.max_steps=4", "checkpointing.every_n_steps=2")
        )
        assert code == 2, out
        errors = [line for line in out.splitlines() if line.startswith("xlm: error:")]
        assert len(errors) == 1 and "no space left" in errors[0] and "Traceback" not in out
        assert hashlib.sha256(last.read_bytes()).hexdigest() == good
        assert not [p for p in last.parent.iterdir() if p.name.startswith(".")]
        filler.unlink()
        code, out = finish(
            start(tmp_path, f"paths.runs_dir={runs}", "trainer.max_steps=4", "checkpointing.every_n_steps=2")
        )
        assert code == 0 and "(step 2;" in out and checkpoint_step(last) == 4
    finally:
        subprocess.run(["umount", str(runs)], capture_output=True)


def _children(pid: int) -> list[int]:
    """The child processes of ``pid`` (Linux /proc)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


def _gone(pid: int) -> bool:
    """The process has exited (and is not left running as an orphan; a zombie counts as gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1].startswith("Z")
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return True


def test_r2_1_sigterm_saves_the_current_step_and_exits_143(tmp_path: Path) -> None:
    """What SLURM preemption, `docker stop`, `timeout` and Kubernetes send: handled like Ctrl-C."""
    proc = start(tmp_path, "trainer.max_steps=100000", "checkpointing.every_n_steps=1000")
    wait_for_step(proc, 3)
    proc.send_signal(signal.SIGTERM)
    code, out = finish(proc)
    assert code == 143, out
    (line,) = [line for line in out.splitlines() if line.startswith("xlm: stopped: SIGTERM: training stopped at step ")]
    step = int(line.split("training stopped at step ")[1].split(";")[0])
    last = tmp_path / "outputs" / RUN / "checkpoints" / "last.ckpt"
    assert step >= 3 and checkpoint_step(last) == step
    assert f"checkpoint saved to {last}. Resume with: xlm family=arlm experiment=star_easy_arlm" in line
    assert "Traceback" not in out and not [p for p in last.parent.iterdir() if p.name.startswith(".")]
    code, out = finish(start(tmp_path, f"trainer.max_steps={step + 1}"))
    assert code == 0 and f"(step {step};" in out and checkpoint_step(last) == step + 1


def test_r2_1_sigterm_to_rank_0_stops_every_ddp_rank_at_one_step(tmp_path: Path) -> None:
    """Two DDP processes on gloo (Lightning starts rank 1); SIGTERM reaches only rank 0, as from `kill` or
    `docker stop`: both ranks stop at the same step, rank 0 saves last.ckpt, nothing is left running."""
    if not torch.distributed.is_gloo_available():
        pytest.skip("needs the gloo backend")
    proc = start(
        tmp_path,
        "trainer.max_steps=100000",
        "checkpointing.every_n_steps=1000",
        "trainer_strategy=ddp",
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        "global_batch_size=16",
        "trainer.precision=32",
    )
    wait_for_step(proc, 3)
    ranks = _children(proc.pid)
    assert ranks, "Lightning started no second rank"
    proc.send_signal(signal.SIGTERM)
    code, out = finish(proc)
    assert code == 143, out
    lines = [line for line in out.splitlines() if line.startswith("xlm: stopped: SIGTERM: training stopped at step ")]
    assert len(lines) == 1, out  # printed once, by rank 0
    step = int(lines[0].split("training stopped at step ")[1].split(";")[0])
    assert checkpoint_step(tmp_path / "outputs" / RUN / "checkpoints" / "last.ckpt") == step
    deadline = time.monotonic() + 60
    while not all(_gone(pid) for pid in ranks) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert all(_gone(pid) for pid in ranks), "a DDP rank kept running after rank 0 stopped"
