"""Job ``export``: write a run's weights in another library's format (``export.format``), through the
exporter the run's family provides (e.g. ``hf``: a Hugging Face transformers directory)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from xlm_core.errors import UsageError
from xlm_core.jobs.common import echo, is_rank_zero, load_for_evaluation
from xlm_core.plugin.manager import FamilyNotFoundError, get_family
from xlm_core.run.files import removed_on_failure

__all__ = ["run", "export", "exporter_for", "Exporter"]

Exporter = Callable[[Any, Any, Path], Path]
"""``exporter(model, tokenizer, out_dir) -> out_dir``; refuses what it cannot express with a ValueError."""


def exporter_for(family_name: str, fmt: str) -> Exporter:
    """The exporter ``family_name`` registered for format ``fmt``; an unknown format lists the available ones."""
    try:
        available = get_family(family_name).components.exporters
    except FamilyNotFoundError as exc:
        raise UsageError(str(exc)) from None
    if fmt not in available:
        listed = ", ".join(sorted(available)) or "none"
        raise UsageError(f"family {family_name!r} cannot export export.format={fmt!r}; available formats: {listed}")
    return available[fmt].obj


def export(cfg: DictConfig) -> Path:
    """Load the run's checkpoint (EMA weights when ``ema`` is on) and export it; returns the directory."""
    fmt = str(OmegaConf.select(cfg, "export.format", default="hf") or "hf")
    exporter = exporter_for(str(cfg.get("family")), fmt)  # fail before loading anything
    ev = load_for_evaluation(cfg, "export.checkpoint_path")
    ckpt, harness = ev.checkpoint, ev.harness
    harness.load_weights(ckpt)
    harness._swap_ema()
    out_dir = Path(
        str(OmegaConf.select(cfg, "export.dir") or ev.run_dir / "export" / f"{fmt}-step{ev.step}")
    ).expanduser()
    if not is_rank_zero():
        return out_dir
    if out_dir.is_dir() and any(out_dir.iterdir()) and not OmegaConf.select(cfg, "export.overwrite", default=False):
        raise UsageError(
            f"export.dir {out_dir} is not empty; choose another export.dir=... or add "
            "export.overwrite=true to replace its files"
        )
    fresh = not out_dir.exists()  # a failed export removes the directory it created
    with removed_on_failure(out_dir, keep=None, parent=False) if fresh else contextlib.nullcontext(out_dir):
        try:
            path = Path(exporter(harness.model, harness.tokenizer, out_dir))
        except ValueError as exc:  # a setting the format cannot express: the message names it and the fix
            raise UsageError(str(exc)) from exc
    files = ", ".join(sorted(p.name for p in path.iterdir()))
    echo(f"xlm: exported {ckpt} (step {ev.step}) as export.format={fmt} to {path}\n  files: {files}")
    return path


def run(cfg: DictConfig) -> None:
    """Entry point for ``xlm job_type=export``."""
    export(cfg)
