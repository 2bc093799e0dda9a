"""Errors the ``xlm`` command reports as one line (exit code 2) instead of a traceback."""

from __future__ import annotations

__all__ = ["UsageError", "JobStopped"]


class UsageError(Exception):
    """A failure the user caused and can fix; the CLI prints only its message and exits with 2."""

    exit_code = 2
    label = "error"


class JobStopped(UsageError):
    """The user stopped a job (Ctrl-C) and it stopped cleanly; the message says how to continue."""

    exit_code = 130
    label = "stopped"
