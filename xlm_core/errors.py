"""Errors the ``xlm`` command reports as one line (exit code 2) instead of a traceback."""

from __future__ import annotations

__all__ = ["UsageError"]


class UsageError(Exception):
    """A failure the user caused and can fix; the CLI prints only its message and exits with 2."""
