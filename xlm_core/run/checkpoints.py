"""Checkpoints that survive crashes, and reading them back safely.

- :class:`AtomicCheckpointIO` writes every checkpoint beside its target, fsyncs it and renames it
  over the target, so a full disk or a kill during a save leaves the previous checkpoint intact
  (Lightning's own writer stages the file in the temp dir and copies it over the target, truncating
  it first, which loses the last good checkpoint when the copy fails).
- :func:`verify_checkpoint` tells a truncated or corrupt file, or one holding pickled code (never run), in
  one line; :func:`newest_intact` falls back to the newest checkpoint that loads, with a warning.
- :func:`config_differences` compares the config a checkpoint was trained with and the one given now.
"""

from __future__ import annotations

import errno
import inspect
import logging
import pickle
import re
import zipfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.utilities.types import _PATH
from lightning.pytorch.plugins.io import TorchCheckpointIO

from xlm_core.config.tools import flatten
from xlm_core.errors import UsageError
from xlm_core.run.fileio import atomic_writer

__all__ = [
    "CONFIG_KEY",
    "AtomicCheckpointIO",
    "CheckpointError",
    "load_checkpoint",
    "checkpoint_step",
    "verify_checkpoint",
    "newest_intact",
    "checkpoint_config",
    "config_differences",
    "has_finite_weights",
    "last_finite_checkpoint",
]

logger = logging.getLogger(__name__)

CONFIG_KEY = "xlm_config"
"""Key under which the harness stores the run's config in every checkpoint."""


class CheckpointError(UsageError):
    """A checkpoint file that cannot be used (missing, truncated, corrupt)."""


class AtomicCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` whose local saves replace the target atomically (remote paths as before)."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: _PATH, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options, got {storage_options!r}.")
        if "://" in str(path) and not str(path).startswith("file://"):  # object stores: Lightning's own writer
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        try:
            with atomic_writer(Path(path), "wb") as f:
                torch.save(checkpoint, f)
        except OSError as exc:
            if exc.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
                raise
            raise CheckpointError(
                f"no space left to save checkpoint {path} ({exc.strerror}); the previous checkpoint "
                "there is intact: free space (or set paths.runs_dir elsewhere) and rerun to resume"
            ) from exc


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint dict, memory-mapped (tensors are read lazily), without running pickled code."""
    verify_checkpoint(path)
    return torch.load(path, map_location="cpu", weights_only=True, mmap=True)


def verify_checkpoint(path: str | Path) -> None:
    """Raise :class:`CheckpointError` (one line, naming the file) unless ``path`` is a readable checkpoint."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; give an existing .ckpt file.")
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
        if not any(n.endswith("data.pkl") for n in names):
            raise zipfile.BadZipFile("no data.pkl record")
        torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except pickle.UnpicklingError as exc:  # objects or code the safe loader refuses: never loaded any other way
        found = re.search(r"GLOBAL ([\w.]+)", str(exc))
        what = f" ({found.group(1)})" if found else ""
        raise CheckpointError(
            f"checkpoint {path} is not a checkpoint xlm can load: it holds pickled objects or code{what}, which xlm "
            "never runs; use another checkpoint of the run"
        ) from None
    except (zipfile.BadZipFile, RuntimeError, EOFError, OSError, ValueError) as exc:
        size = path.stat().st_size
        raise CheckpointError(
            f"checkpoint {path} is truncated or corrupt ({size:,} bytes; {type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else 'unreadable'}); use another checkpoint of the run"
        ) from None


def checkpoint_step(path: str | Path) -> int:
    """The optimizer step a checkpoint was saved at."""
    return int(load_checkpoint(path).get("global_step", 0))


def newest_intact(candidates: Iterable[Path], preferred: Path | None = None) -> tuple[Path, list[str]]:
    """``preferred`` when it loads, else the intact candidate with the highest step; plus warnings.

    Raises :class:`CheckpointError` when none of them loads.
    """
    warnings: list[str] = []
    if preferred is not None:
        try:
            verify_checkpoint(preferred)
            return preferred, warnings
        except CheckpointError as exc:
            warnings.append(str(exc))
    intact: list[tuple[int, Path]] = []
    for path in candidates:
        if path == preferred:
            continue
        try:
            intact.append((checkpoint_step(path), path))
        except CheckpointError as exc:
            warnings.append(str(exc))
    if not intact:
        where = preferred.parent if preferred is not None else "the run"
        raise CheckpointError(f"no intact checkpoint in {where}: " + "; ".join(warnings or ["none found"]))
    # at equal steps prefer a checkpoint saved at a step boundary (last, keep_step_N) over best.ckpt
    step, path = max(intact, key=lambda item: (item[0], item[1].name == "last.ckpt", item[1].name != "best.ckpt"))
    if preferred is not None:
        warnings.append(f"using {path.name} (step {step}) instead of {preferred.name}")
    return path, warnings


def checkpoint_config(path: str | Path) -> dict[str, Any] | None:
    """The config stored in a checkpoint by the harness (None for checkpoints of other tools)."""
    stored = load_checkpoint(path).get(CONFIG_KEY)
    return stored if isinstance(stored, dict) else None


def _constructor_defaults(section: str, node: Any) -> dict[str, Any]:
    """``{"model.key": default}`` of the keyword defaults of ``node["_target_"]`` (empty when it cannot be located).

    A key one config lacks and the other sets to its constructor default builds the same object: e.g. an
    option added to a model after a checkpoint was trained (``model.absolute_positions: false``).
    """
    target = node.get("_target_") if isinstance(node, dict) else None
    if not isinstance(target, str):
        return {}
    try:
        from hydra.utils import get_object

        params = inspect.signature(get_object(target)).parameters.values()
    except Exception:  # noqa: BLE001 - an unknown target has no defaults to offer
        return {}
    return {f"{section}.{p.name}": p.default for p in params if p.default is not inspect.Parameter.empty}


def config_differences(stored: Mapping[str, Any], current: Mapping[str, Any], sections: Iterable[str]) -> list[str]:
    """``"model.nhead: 4 -> 2"`` for every key of ``sections`` whose value differs (added/removed included).

    A key set on one side only is no difference when its value is the constructor default of the
    section's ``_target_`` (the side without it built the object with that default).
    """
    diffs: list[str] = []
    for section in sections:
        old = (
            flatten(stored.get(section) or {}, section)
            if isinstance(stored.get(section), dict)
            else {section: stored.get(section)}
        )
        new = (
            flatten(current.get(section) or {}, section)
            if isinstance(current.get(section), dict)
            else {section: current.get(section)}
        )
        defaults: dict[str, Any] | None = None
        for key in sorted(set(old) | set(new)):
            a, b = old.get(key, "<unset>"), new.get(key, "<unset>")
            if a == b:
                continue
            if (key in old) != (key in new):
                if defaults is None:
                    defaults = _constructor_defaults(section, current.get(section) or stored.get(section))
                if key in defaults and defaults[key] == (a if key in old else b):
                    continue
            diffs.append(f"{key}: {a!r} -> {b!r}")
    return diffs


def has_finite_weights(path: str | Path) -> bool:
    """True when every floating-point tensor of the checkpoint's ``state_dict`` is finite (no NaN / Inf)."""
    state = load_checkpoint(path).get("state_dict") or {}
    return all(
        bool(torch.isfinite(t).all()) for t in state.values() if isinstance(t, torch.Tensor) and t.is_floating_point()
    )


def last_finite_checkpoint(ckpt_dir: Path, before_step: int) -> tuple[Path, int] | None:
    """The newest intact checkpoint in ``ckpt_dir`` saved before ``before_step`` with finite weights (NaN-guard
    files excluded): its training loss was finite too, as the guard stops at the first non-finite one.

    At equal steps a step-boundary checkpoint (last, keep_step_N) wins over best.ckpt.
    """
    found: list[tuple[int, bool, bool, Path]] = []
    for path in sorted(Path(ckpt_dir).glob("*.ckpt")):
        if path.name.startswith("nan_guard"):
            continue
        try:
            step = checkpoint_step(path)
            if step < before_step and has_finite_weights(path):
                found.append((step, path.name == "last.ckpt", path.name != "best.ckpt", path))
        except CheckpointError:
            continue
    if not found:
        return None
    step, _, _, path = max(found)
    return path, step
