"""One training job per run directory: an OS file lock held while the job runs.

The lock is ``flock`` on ``<run_dir>/.xlm.lock``, so it disappears with the process however it ends
(exit, crash, ``kill -9``); the file also records who holds it, for the message a second job gets.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from pathlib import Path
from types import TracebackType

from xlm_core.errors import UsageError

__all__ = ["RunLock", "RunDirectoryBusy", "LOCK_NAME"]

LOCK_NAME = ".xlm.lock"


class RunDirectoryBusy(UsageError):
    """Another xlm job holds the run directory."""


class RunLock:
    """Context manager holding the exclusive lock of a run directory (raises :class:`RunDirectoryBusy`)."""

    def __init__(self, run_dir: Path, job: str) -> None:
        self.run_dir = Path(run_dir)
        self.job = job
        self._fd: int | None = None

    @property
    def path(self) -> Path:
        return self.run_dir / LOCK_NAME

    def acquire(self) -> RunLock:
        """Take the lock now; fail at once (never wait) when another job holds it."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise RunDirectoryBusy(
                f"run directory {self.run_dir} is in use by another xlm {holder}; wait for it to finish or "
                "choose another job_name="
            ) from None
        os.ftruncate(fd, 0)
        info = {
            "job": self.job,
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "since": time.strftime("%Y-%m-%d %H:%M:%S"),
        }
        os.write(fd, json.dumps(info).encode())
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()


def _read_holder(fd: int) -> str:
    try:
        info = json.loads(os.pread(fd, 4096, 0) or b"{}")
        return f"{info.get('job', 'job')} job (pid {info.get('pid', '?')} on {info.get('host', '?')} since {info.get('since', '?')})"
    except (OSError, ValueError):
        return "job"
