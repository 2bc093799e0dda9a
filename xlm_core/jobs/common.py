"""Pieces the jobs share: building datamodule, harness and Trainer from the config, and finding the
checkpoint an evaluation loads."""

from __future__ import annotations

import os
import shutil
import sys
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.fabric.plugins.environments import SLURMEnvironment
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities.rank_zero import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from xlm_core.config.checks import instantiate, validate_run_config
from xlm_core.config.tools import import_object, to_plain, to_plain_best_effort
from xlm_core.errors import UsageError
from xlm_core.run.callbacks import FinalValidation, GracefulInterrupt, RunConfigWriter, ValidationMetricsFile
from xlm_core.run.checkpoint_callbacks import BestCheckpoint
from xlm_core.run.checkpoints import (
    AtomicCheckpointIO,
    checkpoint_config,
    checkpoint_step,
    config_differences,
    newest_intact,
    verify_checkpoint,
)
from xlm_core.run.files import run_dir_of
from xlm_core.training.runtime import Runtime, build_runtime
from xlm_core.training.settings import Monitor, RunSettings, run_settings

__all__ = [
    "build_datamodule",
    "build_harness",
    "build_trainer",
    "trainer_kwargs",
    "num_devices",
    "accumulate_grad_batches",
    "Evaluation",
    "run_checkpoints",
    "check_against_checkpoint",
    "load_for_evaluation",
    "find_checkpoint",
    "is_rank_zero",
    "echo",
    "trainer_plugins",
]

_TRAINING_ONLY_CALLBACKS = ("ModelCheckpoint", "LastCheckpoint", "BestCheckpoint", "CurvePlotter", "ResumeDataOrder")


def is_rank_zero() -> bool:
    """True on the global rank-0 process (also before the Trainer exists, from the launcher's env)."""
    return int(getattr(rank_zero_only, "rank", 0) or 0) == 0


def echo(message: str) -> None:
    """Print on rank 0 only, flushed (progress stays visible in CI logs)."""
    if is_rank_zero():
        print(message, flush=True)


def build_datamodule(cfg: DictConfig, runtime: Runtime, datamodule_cfg: Any = None) -> Any:
    """Instantiate ``cfg.datamodule`` (or ``datamodule_cfg``) with the runtime tokenizer."""
    dm_cfg = cfg.get("datamodule") if datamodule_cfg is None else datamodule_cfg
    if dm_cfg is None:
        raise UsageError("No datamodule in the config; pick an experiment (experiment=<name>) that sets one.")
    return instantiate(dm_cfg, "datamodule", tokenizer=runtime.tokenizer, _recursive_=False)


def build_harness(cfg: DictConfig, runtime: Runtime, settings: RunSettings | None = None) -> Any:
    """The family-agnostic LightningModule for ``cfg`` (``settings`` default: resolved from ``cfg``)."""
    from xlm_core.training.harness import XLMHarness

    for key in ("model", "loss"):
        if cfg.get(key) is None:
            raise UsageError(
                f"No {key} in the config; pick an experiment (experiment=<name>) or model_type that sets `{key}`."
            )
    return XLMHarness(cfg, runtime, settings or run_settings(cfg))


def num_devices(devices: Any, accelerator: str | None) -> int:
    """How many devices ``trainer.devices`` means on this machine (``auto``/-1 resolved)."""
    if isinstance(devices, (list, tuple)):
        return len(devices)
    if isinstance(devices, str) and devices not in ("auto", "-1"):
        return len([d for d in devices.split(",") if d.strip()]) if "," in devices else int(devices)
    if devices in (None, "auto", -1, "-1"):
        acc = (accelerator or "auto").lower()
        if acc in ("gpu", "cuda") or (acc == "auto" and torch.cuda.is_available()):
            return max(torch.cuda.device_count(), 1)
        return 1
    return int(devices)


def accumulate_grad_batches(global_batch_size: int, per_device_batch_size: int, devices: int, num_nodes: int) -> int:
    """``global / (per_device * devices * nodes)``; a clear error when it does not divide."""
    per_step = int(per_device_batch_size) * int(devices) * int(num_nodes)
    if per_step <= 0:
        raise UsageError(
            f"per_device_batch_size ({per_device_batch_size}) x devices ({devices}) x num_nodes "
            f"({num_nodes}) must be positive."
        )
    if int(global_batch_size) % per_step:
        raise UsageError(
            f"global_batch_size={global_batch_size} is not divisible by per_device_batch_size x devices x num_nodes "
            f"= {per_device_batch_size} x {devices} x {num_nodes} = {per_step}; change global_batch_size or "
            "per_device_batch_size so it divides."
        )
    return int(global_batch_size) // per_step


def trainer_kwargs(cfg: DictConfig, settings: RunSettings | None = None) -> dict[str, Any]:
    """``cfg.trainer`` as lightning.Trainer kwargs with accumulation, validation interval (in
    optimizer steps) and the precision of ``settings`` (default: resolved from ``cfg``)."""
    kw: dict[str, Any] = dict(to_plain(cfg.get("trainer")) or {})
    kw.pop("_target_", None)
    devices = num_devices(kw.get("devices", "auto"), kw.get("accelerator"))
    nodes = int(kw.get("num_nodes", 1) or 1)
    per_device = int(cfg.get("per_device_batch_size") or 1)
    global_bs = cfg.get("global_batch_size")
    computed = accumulate_grad_batches(int(global_bs), per_device, devices, nodes) if global_bs else 1
    given = kw.get("accumulate_grad_batches")
    if given not in (None, computed):
        raise UsageError(
            f"trainer.accumulate_grad_batches={given} contradicts global_batch_size={global_bs} / "
            f"(per_device_batch_size={per_device} x devices={devices} x num_nodes={nodes}) = {computed}; "
            "set global_batch_size instead and leave accumulate_grad_batches null."
        )
    kw["accumulate_grad_batches"] = computed
    kw["precision"] = (settings or run_settings(cfg)).precision
    vci = kw.get("val_check_interval")
    if isinstance(vci, int) and not isinstance(vci, bool):
        kw["val_check_interval"] = vci * computed  # Lightning counts batches; the config counts optimizer steps
    if kw.get("enable_progress_bar") is None:
        kw["enable_progress_bar"] = sys.stdout.isatty()
    kw.setdefault("default_root_dir", str(run_dir_of(cfg)))
    strategy = kw.get("strategy")
    if isinstance(strategy, Mapping) and "_target_" in strategy:
        kw["strategy"] = instantiate(strategy, "trainer.strategy")
    return kw


def _instantiate_group(group: Any, what: str, extra: Callable[[Any], dict[str, Any] | None] | None = None) -> list[Any]:
    """Instantiate every entry of a config group; ``extra(entry)`` gives more kwargs, or None to leave it out."""
    if group is None:
        return []
    items = group.values() if isinstance(group, Mapping) or OmegaConf.is_dict(group) else group
    out = []
    names = list(group.keys()) if isinstance(group, Mapping) or OmegaConf.is_dict(group) else range(len(items))
    for name, item in zip(names, items):
        if item is None:
            continue
        if not (OmegaConf.is_dict(item) and "_target_" in item):
            raise UsageError(f"Every entry of `{what}` needs a _target_; got {OmegaConf.to_yaml(item).strip()!r}.")
        kwargs = extra(item) if extra is not None else {}
        if kwargs is not None:
            out.append(instantiate(item, f"{what}.{name}", **kwargs))
    return out


def _ensure_argv0_is_a_path() -> None:
    """Lightning's DDP launcher reruns ``sys.argv``; make ``argv[0]`` an absolute path it can execute.

    The CLI hands Hydra ``argv[0] = "xlm"``; the executable is the running script (``__main__``),
    else ``xlm`` on PATH, else the one beside the interpreter (a venv used without activating it).
    """
    import __main__

    if getattr(__main__, "__spec__", None) is not None or not sys.argv or os.path.isabs(sys.argv[0]):
        return  # `python -m ...` is relaunched by module name; an absolute path already works
    name = sys.argv[0]
    main_file = getattr(__main__, "__file__", None)
    candidates = [
        main_file if main_file and os.path.basename(main_file) == os.path.basename(name) else None,
        shutil.which(name),
        os.path.join(os.path.dirname(sys.executable), name),
    ]
    for path in candidates:
        if path and os.path.isfile(path):
            sys.argv[0] = os.path.abspath(path)
            return
    raise UsageError(
        f"Multi-process training relaunches this command, but its program {name!r} was not found (not on PATH, "
        f"not beside {sys.executable}). Run it by its full path or as `python -m xlm_core.cli ...`."
    )


def trainer_plugins() -> list[Any]:
    """Atomic checkpoint writes; under SLURM, Lightning's SLURM environment without its auto-requeue.

    Lightning's auto-requeue saves ``hpc_ckpt_<N>.ckpt`` from inside its signal handler, a file xlm's
    resume (``checkpoints/last.ckpt``) would not read; a job is stopped with SIGTERM instead, which saves
    ``last.ckpt`` at a step boundary (docs/multi_node.md shows the SLURM options and the requeue).
    """
    plugins: list[Any] = [AtomicCheckpointIO()]
    if SLURMEnvironment.detect():
        plugins.append(SLURMEnvironment(auto_requeue=False))
    return plugins


def build_trainer(
    cfg: DictConfig, settings: RunSettings | None = None, *, training: bool = True, **overrides: Any
) -> L.Trainer:
    """A lightning.Trainer from ``cfg.trainer``, ``cfg.callbacks`` and ``cfg.logger`` under ``settings``
    (default: resolved from ``cfg``); ``best.ckpt`` tracks ``settings.monitor``.

    ``training=False`` leaves out the checkpoint, plot and resume callbacks (eval / generate). Training
    always gets the run-integrity callbacks (final validation inside fit, metrics.json after every
    validation, the config written at start, Ctrl-C or SIGTERM with a checkpoint), and every checkpoint is
    written atomically.
    """
    settings = settings or run_settings(cfg)
    kw = trainer_kwargs(cfg, settings)
    kw.update(overrides)
    callbacks = _instantiate_group(cfg.get("callbacks"), "callbacks", extra=_monitor_kwargs(settings.monitor))
    if training:
        run_dir = settings.run_dir
        callbacks += [
            FinalValidation(),
            ValidationMetricsFile(run_dir),
            RunConfigWriter(cfg, run_dir),
            GracefulInterrupt(run_dir / "checkpoints" / "last.ckpt"),
        ]
    if not training:
        callbacks = [c for c in callbacks if type(c).__name__ not in _TRAINING_ONLY_CALLBACKS]
    loggers = _instantiate_group(cfg.get("logger"), "logger")
    kw.setdefault("callbacks", callbacks)
    kw.setdefault("logger", loggers if loggers else False)
    if not any(isinstance(c, ModelCheckpoint) for c in kw["callbacks"]):
        kw.setdefault("enable_checkpointing", False)
    kw.setdefault("plugins", trainer_plugins())
    if (
        kw.get("strategy") not in (None, "auto", "single_device")
        or num_devices(kw.get("devices"), kw.get("accelerator")) > 1
    ):
        _ensure_argv0_is_a_path()
    try:
        return L.Trainer(**kw)
    except TypeError as e:
        raise UsageError(f"trainer config has an option lightning.Trainer does not take: {e}") from e


def _monitor_kwargs(monitor: Monitor | None) -> Callable[[Any], dict[str, Any] | None]:
    """Extra constructor kwargs per callback config: every ``BestCheckpoint`` tracks ``monitor``; without one
    there is nothing to rank, so it is left out (None) and the run has no best.ckpt."""

    def extra(item: Any) -> dict[str, Any] | None:
        target = OmegaConf.select(item, "_target_")
        try:
            cls = import_object(str(target))
        except (ImportError, ValueError):
            return {}  # instantiate reports it
        if not (isinstance(cls, type) and issubclass(cls, BestCheckpoint)):
            return {}
        return None if monitor is None else {"monitor": monitor.metric, "mode": monitor.mode}

    return extra


@dataclass(frozen=True)
class Evaluation:
    """What eval, generate and export start from: the run, its checkpoint, the runtime objects, the harness."""

    run_dir: Path
    checkpoint: Path
    step: int
    runtime: Runtime
    harness: Any
    settings: RunSettings


def run_checkpoints(run_dir: Path) -> list[Path]:
    """The run's checkpoints that hold training state (NaN-guard snapshots excluded)."""
    ckpt_dir = run_dir / "checkpoints"
    if not ckpt_dir.is_dir():
        return []
    return sorted(p for p in ckpt_dir.glob("*.ckpt") if not p.name.startswith("nan_guard"))


def check_against_checkpoint(cfg: DictConfig, checkpoint: Path, sections: tuple[str, ...], doing: str) -> None:
    """Refuse to load ``checkpoint`` when ``sections`` of the config differ from the ones it was trained with
    (unless ``allow_config_mismatch=true``)."""
    stored = checkpoint_config(checkpoint)
    if stored is None:
        return
    diffs = config_differences(stored, to_plain_best_effort(cfg), sections)
    if not diffs:
        return
    if cfg.get("allow_config_mismatch", False):
        echo(f"xlm: warning: {doing} with a config that differs from {checkpoint.name}'s: {'; '.join(diffs)}")
        return
    shown = "; ".join(diffs[:6]) + (f"; ... ({len(diffs)} in all)" if len(diffs) > 6 else "")
    raise UsageError(
        f"{checkpoint} was trained with a different {'/'.join(sections)} config ({shown}); use the "
        f"settings it was trained with, or allow_config_mismatch=true to {doing} anyway"
    )


def load_for_evaluation(cfg: DictConfig, checkpoint_key: str) -> Evaluation:
    """Seed, find the checkpoint (``cfg.<checkpoint_key>`` or the run's best/last), compare its model config
    with ``cfg`` and build the harness."""
    validate_run_config(cfg, training=False)
    L.seed_everything(int(cfg.get("seed", 42)), workers=True, verbose=False)
    # evaluation only needs the weights; the training callbacks' states in the checkpoint do not matter
    warnings.filterwarnings("ignore", message="Be aware that when using `ckpt_path`, callbacks")
    run_dir = run_dir_of(cfg)
    ckpt = find_checkpoint(run_dir, OmegaConf.select(cfg, checkpoint_key))
    check_against_checkpoint(cfg, ckpt, ("model", "tokenizer"), "load its weights")
    runtime = build_runtime(cfg)
    settings = run_settings(cfg)
    return Evaluation(run_dir, ckpt, checkpoint_step(ckpt), runtime, build_harness(cfg, runtime, settings), settings)


def find_checkpoint(run_dir: Path, explicit: str | None, prefer: tuple[str, ...] = ("best.ckpt", "last.ckpt")) -> Path:
    """``explicit`` if given (it must load), else the first intact one of ``prefer`` in ``run_dir/checkpoints``,
    falling back (with a warning) to the run's newest intact checkpoint."""
    if explicit:
        path = Path(str(explicit)).expanduser()
        verify_checkpoint(path)
        return path
    ckpt_dir = run_dir / "checkpoints"
    available = run_checkpoints(run_dir)
    if not available:
        raise UsageError(
            f"No checkpoint ({' or '.join(prefer)}) in {ckpt_dir}; train first (job_type=train with the same "
            "job_name) or pass the checkpoint path explicitly."
        )
    preferred = next((ckpt_dir / name for name in prefer if (ckpt_dir / name).is_file()), None)
    path, notes = newest_intact(available, preferred)
    for note in notes:
        echo(f"xlm: warning: {note}")
    return path
