"""Turn any failure of an ``xlm`` invocation into one line and an exit code (docs/reliability.md).

The ``xlm`` command prints ``xlm: <label>: <line>``; the traceback goes only to the invocation's log
file (``<run_dir>/logs/<time>-<job>.log``), never to the console, unless ``XLM_DEBUG=1``. What the
user can fix exits with 2 (a usage error, a full or read-only disk, a Hydra override mistake, a
``???`` left in the config); a stop by a signal exits with 128 + its number; anything else is a bug
(exit 1).
"""

from __future__ import annotations

import difflib
import errno
import logging
import re
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from hydra.errors import ConfigCompositionException, MissingConfigException
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, MissingMandatoryValue, OmegaConfBaseException

from xlm_core.errors import UsageError

__all__ = ["ErrorLine", "error_line", "log_to_files", "nearest_keys", "missing_value_keys"]

_WRITE_ERRNOS = (errno.EROFS, errno.EACCES, errno.EPERM)
_SPACE_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
_MISSING_RE = re.compile(r"Missing mandatory value: ([\w.\[\]-]+)")
_BUG_HINT = "this looks like a bug; XLM_DEBUG=1 prints the traceback, which is also in the run's logs/"


@dataclass(frozen=True)
class ErrorLine:
    """What the CLI prints (``xlm: <label>: <text>``) and the process exit code."""

    label: str
    text: str
    exit_code: int


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and its causes / contexts, outermost first (each once)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def missing_value_keys(cfg: Any, prefix: str = "") -> list[str]:
    """Dotted keys whose value is ``???`` (interpolations are not followed, so each key appears once)."""
    if not isinstance(cfg, (DictConfig, ListConfig)):
        return []
    keys: list[Any] = list(cfg.keys()) if isinstance(cfg, DictConfig) else list(range(len(cfg)))
    out: list[str] = []
    for key in keys:
        path = f"{prefix}.{key}" if prefix else str(key)
        if path == "hydra":
            continue
        if OmegaConf.is_missing(cfg, key):
            out.append(path)
            continue
        child = cfg._get_node(key)
        if isinstance(child, (DictConfig, ListConfig)) and not child._is_interpolation():
            out.extend(missing_value_keys(child, path))
    return out


def _missing_line(exc: BaseException, cfg: Any) -> str | None:
    """``corpus.data_files=??? ...`` when ``exc`` comes from reading a value the config leaves as ``???``."""
    for link in _chain(exc):
        match = _MISSING_RE.search(str(link))
        if match is None and not isinstance(link, MissingMandatoryValue):
            continue
        key = match.group(1) if match else str(getattr(link, "full_key", "") or "?")
        unset = missing_value_keys(cfg) if cfg is not None else []
        if key not in unset:  # read through an interpolation: name the key the user sets
            same = [k for k in unset if k.rsplit(".", 1)[-1] == key.rsplit(".", 1)[-1]]
            key = same[0] if len(same) == 1 else key
        return (
            f"{key}=??? is a value the config leaves for you to set; give it on the command line, "
            f"e.g. {key}=<value> (`xlm ... job_type=name` prints the config)"
        )
    return None


def nearest_keys(node: Any, key: str, n: int = 3) -> list[str]:
    """The keys of config ``node`` closest in spelling to ``key`` (difflib), best first."""
    if not isinstance(node, DictConfig):
        return []
    return difflib.get_close_matches(key, [str(k) for k in node.keys()], n=n, cutoff=0.6)


def _override_line(exc: ConfigCompositionException) -> str | None:
    """One line for a Hydra override of a key the config does not have, or of a config group option
    that does not exist, with the nearest valid name."""
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if isinstance(exc, MissingConfigException):
        options = sorted(exc.options or [])
        missing = str(exc.missing_cfg_file or "").strip("/")
        group, _, choice = missing.rpartition("/")
        near = difflib.get_close_matches(choice, options, n=1, cutoff=0.5)
        hint = f"did you mean {group}={near[0]}? " if near else ""
        listed = f"the options of {group}: {', '.join(options)}" if options else f"{first}"
        return f"{group or missing}={choice}: no such config; {hint}{listed}"
    match = re.match(r"Could not override '([^']+)'", first)
    if match is None:
        return None
    full = match.group(1)
    cause = next((c for c in _chain(exc) if isinstance(c, (ConfigAttributeError, ConfigKeyError))), None)
    parent = getattr(cause, "parent_node", None)
    bad = str(getattr(cause, "key", "") or full.rsplit(".", 1)[-1])
    parts = full.split(".")
    prefix = ".".join(parts[: parts.index(bad)]) if bad in parts else ".".join(parts[:-1])
    rest = ".".join(parts[parts.index(bad) + 1 :]) if bad in parts else ""
    near = [".".join(p for p in (prefix, k, rest) if p) for k in nearest_keys(parent, bad)]
    hint = f"did you mean {' or '.join(near)}? " if near else "(`xlm ... job_type=name` prints every key) "
    return (
        f"{full}: the config has no such key, so the override would change nothing; {hint}"
        f"(+{full}=... adds a new key, which only a component that reads it would use)"
    )


def _os_line(exc: OSError) -> str | None:
    """Full disks and places xlm may not write to, with the fix."""
    if exc.errno in _SPACE_ERRNOS:
        where = f" writing {exc.filename}" if exc.filename else ""
        return (
            f"no space left on the device{where} ({exc.strerror}); checkpoints are written atomically, so the "
            "last good one is intact: free space (or set paths.runs_dir elsewhere) and rerun to resume"
        )
    if exc.errno in _WRITE_ERRNOS and exc.filename:
        return (
            f"cannot write {exc.filename} ({exc.strerror}); xlm writes its run directory (checkpoints, logs/, "
            "eval/, generate/) and the export directory: make that place writable, or choose another with "
            "paths.runs_dir=... (a copy of the run) or export.dir=..."
        )
    return None


def error_line(exc: BaseException, cfg: Any = None) -> ErrorLine:
    """The one line (and exit code) the CLI reports for ``exc``; ``cfg`` (when composed) helps name keys."""
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    if isinstance(exc, UsageError) and not any(_MISSING_RE.search(str(c)) for c in _chain(exc)):
        return ErrorLine(exc.label, str(exc), exc.exit_code)
    if isinstance(exc, SIGTERMException):
        return ErrorLine(
            "stopped",
            "stopped by SIGTERM before training reached a step it could save; nothing new "
            "was written; rerun the same command to continue",
            128 + signal.SIGTERM,
        )
    missing = _missing_line(exc, cfg)
    if missing is not None:
        return ErrorLine("error", missing, 2)
    for link in _chain(exc):
        if isinstance(link, ConfigCompositionException):
            line = _override_line(link)
            if line is not None:
                return ErrorLine("error", line, 2)
        if isinstance(link, OSError):
            line = _os_line(link)
            if line is not None:
                return ErrorLine("error", line, 2)
    if isinstance(exc, (ConfigCompositionException, OmegaConfBaseException)):
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        return ErrorLine(
            "error",
            f"{first} (see Hydra's override grammar: key=value, +key=value to add, "
            "quote values with spaces or commas, e.g. 'key=\"a b\"')",
            2,
        )
    first = (str(exc).strip().splitlines() or [""])[0]
    return ErrorLine("error", f"{type(exc).__name__}: {first} ({_BUG_HINT})", 1)


def log_to_files(line: ErrorLine, exc: BaseException) -> None:
    """Write ``line`` and the traceback of ``exc`` to the log files of this invocation only (the
    console shows just the one line)."""
    record = logging.getLogger("xlm").makeRecord(
        "xlm", logging.ERROR, __file__, 0, f"xlm: {line.label}: {line.text}", (), (type(exc), exc, exc.__traceback__)
    )
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            try:
                handler.handle(record)
            except OSError:  # a log file that cannot be written must not hide the error itself
                pass
