"""Errors the ``xlm`` command reports as one line (exit code 2) instead of a traceback."""

from __future__ import annotations

__all__ = ["UsageError", "JobStopped"]


class UsageError(Exception):
    """A failure the user caused and can fix; the CLI prints only its message and exits with 2."""

    exit_code = 2
    label = "error"


class JobStopped(UsageError):
    """The user (Ctrl-C) or the system (SIGTERM) stopped a job and it stopped cleanly; the message says how
    to continue. The exit code is 128 + the signal's number (130 for Ctrl-C, 143 for SIGTERM); ``quiet``
    ones (DDP ranks other than 0) print nothing, so the line appears once."""

    exit_code = 130
    label = "stopped"

    def __init__(self, message: str, exit_code: int = 130, quiet: bool = False) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.quiet = quiet
