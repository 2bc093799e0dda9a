"""Run names: ``job_name`` is the name of a directory under ``paths.runs_dir`` (``paths.run_dir``), so it
must be one plain path component. An empty name would make the runs root itself the run (and
``overwrite=true`` would move every run aside); ``..`` or a separator would write outside it."""

from __future__ import annotations

import re
from pathlib import Path

from xlm_core.errors import UsageError

__all__ = ["check_job_name", "check_run_dir", "MAX_JOB_NAME_LENGTH"]

MAX_JOB_NAME_LENGTH = 200
_SAFE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+=@-]*")


def check_job_name(name: object) -> str:
    """``name`` when it is a safe run-directory name, else :class:`UsageError` naming it and the rule."""
    text = "" if name is None else str(name)
    if _SAFE.fullmatch(text) and len(text) <= MAX_JOB_NAME_LENGTH:
        return text
    raise UsageError(
        f"job_name={text!r} cannot name a run directory: use letters, digits and . _ - + = @, starting with a "
        f"letter or digit, at most {MAX_JOB_NAME_LENGTH} characters (no separators, spaces, '..' or empty name), "
        "e.g. job_name=star_easy_lr3e-4"
    )


def check_run_dir(run_dir: Path, runs_dir: Path | None) -> Path:
    """``run_dir`` unless it is ``runs_dir`` itself or holds it (a run there would take every run in it)."""
    if runs_dir is not None:
        run, root = Path(run_dir).expanduser().resolve(), Path(runs_dir).expanduser().resolve()
        if run == root or run in root.parents:
            raise UsageError(
                f"paths.run_dir={run_dir} is the runs directory paths.runs_dir={runs_dir} (or holds it); a run needs "
                "a directory of its own below it: set job_name=<name> and leave paths.run_dir as it is"
            )
    return Path(run_dir)
