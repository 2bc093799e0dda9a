"""The command line that started this job, for "resume with: ..." hints.

The CLI records it before Hydra runs the job; jobs read it back here. An environment variable
carries it so that processes a DDP launcher starts from the same command see it too.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Sequence

__all__ = ["record_invocation", "recorded_invocation"]

_ENV = "XLM_INVOCATION"


def record_invocation(args: Sequence[str]) -> str:
    """Remember ``xlm <args>`` as this job's command line; returns it."""
    command = shlex.join(["xlm", *args])
    os.environ[_ENV] = command
    return command


def recorded_invocation() -> str | None:
    """The recorded ``xlm ...`` command line, or None when the job was not started by the CLI."""
    return os.environ.get(_ENV) or None
