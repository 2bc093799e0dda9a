"""Jobs the ``xlm`` CLI dispatches to: module ``xlm_core.jobs.<job_type>`` with ``run(cfg) -> None``.

Job functions take the composed config and nothing else, so they can be called from Python and
tests without going through the command line (lightning-hydra-template style).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from omegaconf import DictConfig

from xlm_core.errors import UsageError

__all__ = ["JOB_TYPES", "JobNotAvailableError", "UsageError", "load_job"]

JOB_TYPES: tuple[str, ...] = ("name", "prepare_data", "train", "eval", "generate", "export")


class JobNotAvailableError(UsageError, LookupError):
    """An unknown job type, or one whose module is not part of this installation."""


def load_job(job_type: str) -> Callable[[DictConfig], None]:
    """The ``run`` function of job ``job_type``; raises JobNotAvailableError if there is none."""
    if job_type not in JOB_TYPES:
        raise JobNotAvailableError(f"unknown job_type={job_type}; choose one of: {', '.join(JOB_TYPES)}")
    module_name = f"{__name__}.{job_type}"
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise  # the job exists but one of its own imports is missing: a real error
        raise JobNotAvailableError(
            f"job_type={job_type}: its module {module_name} is missing from this installation; reinstall xlm-core"
        ) from None
    run = getattr(module, "run", None)
    if not callable(run):
        raise JobNotAvailableError(f"module {module_name} has no run(cfg) function")
    return run
