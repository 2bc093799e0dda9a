"""The ``reported_metrics`` of a config built into torchmetrics objects named ``{split}/{kind}/{name}``,
fed by the families' update functions.

Metric states are sums, so torchmetrics syncs them across DDP ranks before ``compute``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import hydra
import torch
from omegaconf import DictConfig, OmegaConf
from torch import Tensor as TT
from torchmetrics import Metric

from xlm_core.config.tools import import_object

__all__ = [
    "MetricWrapper",
    "UpdateFn",
    "build_metrics",
    "metric_log_name",
    "metrics_for",
    "logged_metric_names",
    "resolve_function",
    "KINDS",
    "METRIC_SPLITS",
]

KINDS = ("lm", "prediction")
METRIC_SPLITS = ("train", "val", "test")

UpdateFn = Callable[..., dict[str, Any]]


def resolve_function(path: str | Callable[..., Any]) -> Callable[..., Any]:
    """Import ``"pkg.module.fn"`` (or return a callable unchanged)."""
    if callable(path):
        return path
    try:
        fn = import_object(str(path))
    except (ImportError, ValueError) as e:
        raise ValueError(f"update_fn {path!r}: {e}") from e
    if not callable(fn):
        raise ValueError(f"update_fn {path!r} is not callable.")
    return fn


def metric_log_name(split: str, kind: str, name: str, dataloader_name: str | None = None) -> str:
    """``{split}/{kind}/{name}``; a dataloader that is not the first of its kind in the split
    gets ``{split}/{kind}/{dataloader_name}/{name}`` so names stay distinct."""
    if dataloader_name:
        return f"{split}/{kind}/{dataloader_name}/{name}"
    return f"{split}/{kind}/{name}"


class MetricWrapper(torch.nn.Module):
    """One torchmetrics metric for one (split, kind, dataloader), fed by a family's update fn.

    ``update_fn(batch, loss_dict_or_preds, tokenizer=None)`` returns the kwargs of ``metric.update``.
    """

    def __init__(
        self,
        name: str,
        metric: Metric,
        update_fn: UpdateFn | str,
        split: str,
        kind: str,
        log_name: str,
        dataloader_name: str | None = None,
    ) -> None:
        super().__init__()
        self.name = name
        self.metric = metric
        self.update_fn = resolve_function(update_fn)
        self.split = split
        self.kind = kind
        self.log_name = log_name
        self.dataloader_name = dataloader_name

    def kwargs(self, batch: Mapping[str, Any], outputs: Mapping[str, Any], tokenizer: Any = None) -> dict[str, Any]:
        out = self.update_fn(batch, outputs, tokenizer=tokenizer)
        if not isinstance(out, Mapping):
            raise TypeError(
                f"update_fn of metric {self.log_name!r} returned {type(out).__name__}; it must return a dict of "
                "keyword arguments for metric.update()."
            )
        return dict(out)

    def update(self, batch: Mapping[str, Any], outputs: Mapping[str, Any], tokenizer: Any = None) -> None:
        """Accumulate this batch into the epoch state."""
        self.metric.update(**self.kwargs(batch, outputs, tokenizer))

    def forward(self, batch: Mapping[str, Any], outputs: Mapping[str, Any], tokenizer: Any = None) -> TT:  # type: ignore[override]
        """Accumulate and return this batch's value (needed to log a metric on step)."""
        return self.metric(**self.kwargs(batch, outputs, tokenizer))


@dataclass(frozen=True)
class _Spec:
    name: str
    kind: str
    metric_cfg: Any
    update_fn: str
    splits: tuple[str, ...]


def _parse_reported_metrics(reported: Mapping[str, Any] | DictConfig | None) -> list[_Spec]:
    if reported is None:
        return []
    if isinstance(reported, DictConfig):
        reported = OmegaConf.to_container(reported, resolve=True)  # type: ignore[assignment]
    specs: list[_Spec] = []
    for kind, entries in dict(reported).items():  # type: ignore[arg-type]
        if kind not in KINDS:
            raise ValueError(f"reported_metrics has kind {kind!r}; expected one of {list(KINDS)}.")
        for name, entry in (entries or {}).items():
            if entry is None:
                continue
            missing = [k for k in ("metric", "update_fn") if k not in entry]
            if missing:
                raise ValueError(f"reported_metrics.{kind}.{name} is missing {missing}; each entry needs "
                                 "'metric' ({_target_: ...}), 'update_fn' (dotted path) and 'splits'.")
            splits = tuple(entry.get("splits") or METRIC_SPLITS)
            bad = [s for s in splits if s not in METRIC_SPLITS]
            if bad:
                raise ValueError(f"reported_metrics.{kind}.{name}.splits has {bad}; allowed: {list(METRIC_SPLITS)}.")
            specs.append(_Spec(name, kind, entry["metric"], entry["update_fn"], splits))
    return specs


def build_metrics(
    reported: Mapping[str, Any] | DictConfig | None,
    dataloaders: Mapping[str, Sequence[tuple[str, str]]],
) -> torch.nn.ModuleDict:
    """Build one ``MetricWrapper`` per (split, dataloader, metric) from ``reported_metrics``.

    ``dataloaders`` maps a split to its ``(dataloader_name, kind)`` pairs in dataloader order.
    Keys are ``"{split}|{dataloader_idx}|{name}"`` with '.' and '/' avoided (ModuleDict keys).
    """
    specs = _parse_reported_metrics(reported)
    out = torch.nn.ModuleDict()
    for split, dls in dataloaders.items():
        seen_kinds: set[str] = set()
        for idx, (dl_name, kind) in enumerate(dls):
            qualifier = dl_name if kind in seen_kinds else None
            seen_kinds.add(kind)
            for spec in specs:
                if spec.kind != kind or split not in spec.splits:
                    continue
                metric = hydra.utils.instantiate(spec.metric_cfg)
                if not isinstance(metric, Metric):
                    raise TypeError(f"reported_metrics.{kind}.{spec.name}.metric built {type(metric).__name__}, "
                                    "not a torchmetrics.Metric.")
                out[f"{split}|{idx}|{spec.name}"] = MetricWrapper(
                    name=spec.name,
                    metric=metric,
                    update_fn=spec.update_fn,
                    split=split,
                    kind=kind,
                    log_name=metric_log_name(split, kind, spec.name, qualifier),
                    dataloader_name=dl_name,
                )
    return out


def metrics_for(metrics: torch.nn.ModuleDict, split: str, dataloader_idx: int) -> Iterable[MetricWrapper]:
    """The wrappers of one split's dataloader."""
    prefix = f"{split}|{dataloader_idx}|"
    for key, wrapper in metrics.items():
        if key.startswith(prefix):
            yield wrapper  # type: ignore[misc]


def logged_metric_names(
    reported: Mapping[str, Any] | DictConfig | None,
    split: str,
    dataloaders: Sequence[tuple[str, str]],
) -> set[str]:
    """The metric names the harness logs for ``split``: ``{split}/lm/loss`` for every "lm" dataloader
    (the loss metric every family gets) plus the ``reported_metrics`` of each dataloader's kind.

    Post-hoc evaluator metrics (``{split}/prediction/<name>``) are not known before they run.
    """
    names: set[str] = set()
    specs = _parse_reported_metrics(reported)
    seen_kinds: set[str] = set()
    for dl_name, kind in dataloaders:
        qualifier = dl_name if kind in seen_kinds else None
        seen_kinds.add(kind)
        if kind == "lm":
            names.add(metric_log_name(split, "lm", "loss", qualifier))
        names.update(metric_log_name(split, kind, spec.name, qualifier)
                     for spec in specs if spec.kind == kind and split in spec.splits)
    return names
