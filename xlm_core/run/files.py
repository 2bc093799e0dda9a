"""The files of a run directory: where predictions go, the saved config and ``metrics.json``.

Layout of ``paths.run_dir``::

    config.yaml                          the composed config of the run
    checkpoints/                         last.ckpt, best.ckpt, keep_step_<N>.ckpt
    predictions/<split>/<dataloader>/step_<N>.jsonl   validation predictions during training
    metrics.json                         latest value of every metric training reported
    logs/ plots/                         logger output and training curves
    eval/<time>-<split>-step<N>/         one directory per eval: metrics.json, config.yaml, predictions/
    generate/<time>-step<N>/             one directory per generate: config.yaml, predictions/
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from xlm_core.errors import UsageError
from xlm_core.run.fileio import atomic_write_json, atomic_write_text, write_jsonl
from xlm_core.run.names import check_job_name, check_run_dir

__all__ = [
    "run_dir_of",
    "predictions_path",
    "job_output_dir",
    "removed_on_failure",
    "write_jsonl",
    "config_yaml",
    "save_run_config",
    "read_metrics_json",
    "update_metrics_json",
    "scalar_metrics",
]


def run_dir_of(cfg: DictConfig) -> Path:
    """The run directory (``paths.run_dir``), after checking that ``job_name`` names a directory of its own
    (:mod:`xlm_core.run.names`)."""
    rd = OmegaConf.select(cfg, "paths.run_dir")
    if rd is None:
        raise UsageError("paths.run_dir is not set; the run directory is needed for checkpoints and outputs.")
    if "job_name" in cfg:
        check_job_name(cfg.get("job_name"))
    runs_dir = OmegaConf.select(cfg, "paths.runs_dir")
    return check_run_dir(Path(str(rd)), Path(str(runs_dir)) if runs_dir is not None else None)


def predictions_path(root: str | os.PathLike[str], split: str, dataloader_name: str, step: int) -> Path:
    """``root/predictions/{split}/{dataloader_name}/step_{step}.jsonl`` (root: the run or a job's own directory)."""
    return Path(root) / "predictions" / split / dataloader_name / f"step_{int(step)}.jsonl"


def job_output_dir(run_dir: Path, job: str, label: str, create: bool = True) -> Path:
    """A new directory ``run_dir/<job>/<YYYYmmdd-HHMMSS>-<label>`` for one eval/generate invocation.

    Each invocation gets its own, so a later one never overwrites an earlier one's files. Processes
    that write nothing (DDP ranks other than 0) pass ``create=False``.
    """
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = run_dir / job / f"{stamp}-{label}"
    if not create:
        return base
    path, n = base, 1
    while True:
        try:
            path.mkdir(parents=True)
            return path
        except FileExistsError:
            n += 1
            path = base.with_name(f"{base.name}-{n}")


@contextlib.contextmanager
def removed_on_failure(
    path: Path, keep: tuple[str, ...] | None = ("config.yaml",), parent: bool = True
) -> Iterator[Path]:
    """Yield ``path`` (a job's own output directory); if the job fails, remove it when it holds nothing but
    the ``keep`` files and empty directories (``keep=None``: whatever it holds), and (``parent``) its parent
    when that is left empty, so a failed eval, generate or export leaves no directory that looks like a result."""
    try:
        yield path
    except BaseException:
        with contextlib.suppress(OSError):
            files = [p for p in path.rglob("*") if not p.is_dir()] if path.is_dir() else []
            if keep is None or all(p.parent == path and p.name in keep for p in files):
                shutil.rmtree(path)
                if parent and not any(path.parent.iterdir()):
                    path.parent.rmdir()
        raise


def config_yaml(cfg: DictConfig) -> str:
    """The config as YAML, resolved where every interpolation can be."""
    try:
        return OmegaConf.to_yaml(cfg, resolve=True)
    except OmegaConfBaseException:
        return OmegaConf.to_yaml(cfg)


def save_run_config(cfg: DictConfig, run_dir: Path, name: str = "config.yaml") -> Path:
    """Write the composed config to ``run_dir/<name>`` atomically."""
    return atomic_write_text(run_dir / name, config_yaml(cfg))


def read_metrics_json(run_dir: Path) -> dict[str, Any]:
    """``run_dir/metrics.json`` as a dict ({} when missing or unreadable)."""
    path = run_dir / "metrics.json"
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def update_metrics_json(run_dir: Path, metrics: Mapping[str, Any]) -> Path:
    """Merge ``metrics`` into ``run_dir/metrics.json`` (atomically)."""
    current = read_metrics_json(run_dir)
    current.update(metrics)
    return atomic_write_json(run_dir / "metrics.json", current)


def scalar_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    """Plain floats of Lightning's ``callback_metrics`` (tensors and numbers only)."""
    out: dict[str, float] = {}
    for k, v in metrics.items():
        if isinstance(v, torch.Tensor) and v.numel() == 1:
            out[k] = float(v.detach().cpu().item())
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            out[k] = float(v)
    return out
