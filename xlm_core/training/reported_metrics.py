"""The ``reported_metrics`` of a config built into torchmetrics objects named ``{split}/{group}/{name}``,
fed by the families' update functions.

The config is a mapping ``group -> name -> entry``. The group is the family's choice (``lm``,
``prediction``, ``r2l`` ...): it is the middle part of the logged name. Each entry says which
dataloaders feed it with ``kind`` (``lm``: the update function gets the loss's output on the batches of
``lm`` dataloaders; ``prediction``: the predictor's output on those of ``prediction`` dataloaders); the
kind defaults to the group's name when that is ``lm`` or ``prediction``::

    reported_metrics:
      prediction:                  # logged as {split}/prediction/exact_match; kind: prediction implied
        exact_match: {metric: {_target_: xlm_core.kit.metrics.ExactMatch},
                      update_fn: xlm_core.kit.metrics.exact_match_update_fn, splits: [val, test]}
      r2l:                         # logged as {split}/r2l/exact_match
        exact_match: {kind: prediction, metric: {...}, update_fn: ..., splits: [val]}

A mistake in this mapping is a :class:`ReportedMetricsError`: one line naming the key, the bad value and
the fix (the CLI prints it without a traceback). Metric states are sums, so torchmetrics syncs them across
DDP ranks before ``compute``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import hydra
import torch
from omegaconf import DictConfig, OmegaConf
from torch import Tensor as TT
from torchmetrics import Metric

from xlm_core.config.tools import import_object
from xlm_core.data.datamodule import DATALOADER_KINDS
from xlm_core.errors import UsageError
from xlm_core.kit.renamed import moved_attributes

__all__ = [
    "MetricWrapper",
    "MetricSpec",
    "ReportedMetricsError",
    "UpdateFn",
    "build_metrics",
    "metric_log_name",
    "metrics_for",
    "logged_metric_names",
    "parse_reported_metrics",
    "resolve_function",
    "DATALOADER_KINDS",
    "METRIC_SPLITS",
]

METRIC_SPLITS = ("train", "val", "test")
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]*$")
_ENTRY_KEYS = frozenset({"kind", "metric", "update_fn", "splits"})
__getattr__ = moved_attributes(
    __name__, {"KINDS": "xlm_core.data.datamodule.DATALOADER_KINDS"}, removed_in="xlm-core 0.3"
)

UpdateFn = Callable[..., dict[str, Any]]


class ReportedMetricsError(UsageError, ValueError):
    """A ``reported_metrics`` config that cannot be built: the message names the key, the value and the fix."""


def resolve_function(path: str | Callable[..., Any]) -> Callable[..., Any]:
    """Import ``"pkg.module.fn"`` (or return a callable unchanged)."""
    if callable(path):
        return path
    try:
        fn = import_object(str(path))
    except (ImportError, ValueError) as e:
        raise ReportedMetricsError(f"update_fn {path!r}: {e}") from e
    if not callable(fn):
        raise ReportedMetricsError(f"update_fn {path!r} is not callable.")
    return fn


def metric_log_name(split: str, group: str, name: str, dataloader_name: str | None = None) -> str:
    """``{split}/{group}/{name}``; a dataloader that is not the first of its kind in the split
    gets ``{split}/{group}/{dataloader_name}/{name}`` so names stay distinct."""
    if dataloader_name:
        return f"{split}/{group}/{dataloader_name}/{name}"
    return f"{split}/{group}/{name}"


class MetricWrapper(torch.nn.Module):
    """One torchmetrics metric for one (split, dataloader) of its kind, fed by a family's update fn.

    ``update_fn(batch, loss_dict_or_preds, tokenizer=None)`` returns the kwargs of ``metric.update``;
    ``kind`` is the dataloader kind that feeds it, ``group`` the middle part of its ``log_name``.
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
        group: str | None = None,
    ) -> None:
        super().__init__()
        self.name = name
        self.metric = metric
        self.update_fn = resolve_function(update_fn)
        self.split = split
        self.kind = kind
        self.group = kind if group is None else group
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
class MetricSpec:
    """One entry of ``reported_metrics``: logged as ``{split}/{group}/{name}`` on the splits it names, fed
    by the dataloaders of ``kind``."""

    group: str
    name: str
    kind: str
    metric_cfg: Any
    update_fn: Any
    splits: tuple[str, ...]


def _fail(where: str, message: str) -> ReportedMetricsError:
    return ReportedMetricsError(f"reported_metrics{where}: {message}")


def _entry_spec(group: str, name: str, entry: Any) -> MetricSpec:
    where = f".{group}.{name}"
    if not _NAME.match(str(name)):
        raise _fail(where, f"metric name {name!r}; use letters, digits, '_' and '-' (it is part of the logged name)")
    if not isinstance(entry, Mapping):
        raise _fail(
            where,
            f"got {entry!r}; give a mapping with metric ({{_target_: ...}}), update_fn (a dotted path) and splits",
        )
    unknown = sorted(set(entry) - _ENTRY_KEYS)
    if unknown:
        raise _fail(where, f"unknown key(s) {unknown}; an entry has {', '.join(sorted(_ENTRY_KEYS))}")
    kind = entry.get("kind")
    if kind is None:
        if group not in DATALOADER_KINDS:
            raise _fail(
                where,
                f"group {group!r} is not a dataloader kind, so say which dataloaders feed it: "
                "kind: prediction (the predictor's output) or kind: lm (the loss's output)",
            )
        kind = group
    if kind not in DATALOADER_KINDS:
        raise _fail(
            f"{where}.kind",
            f"{kind!r} is not a dataloader kind; use kind: prediction (fed the predictor's "
            "output) or kind: lm (fed the loss's output)",
        )
    missing = [k for k in ("metric", "update_fn") if entry.get(k) is None]
    if missing:
        raise _fail(
            where,
            f"missing {missing}; each entry needs metric ({{_target_: ...}}), update_fn (a dotted path) and splits",
        )
    splits = entry.get("splits") or METRIC_SPLITS
    splits = (splits,) if isinstance(splits, str) else tuple(splits)
    bad = [s for s in splits if s not in METRIC_SPLITS]
    if bad:
        raise _fail(f"{where}.splits", f"{bad} are not splits; use any of {list(METRIC_SPLITS)}")
    return MetricSpec(str(group), str(name), str(kind), entry["metric"], entry["update_fn"], splits)


def parse_reported_metrics(reported: Mapping[str, Any] | DictConfig | None) -> list[MetricSpec]:
    """The entries of a ``reported_metrics`` config (see the module docstring); a mistake raises
    :class:`ReportedMetricsError` naming the key, the value and the fix."""
    if reported is None:
        return []
    if isinstance(reported, DictConfig):
        reported = OmegaConf.to_container(reported, resolve=True)  # type: ignore[assignment]
    if not isinstance(reported, Mapping):
        raise _fail("", f"got {reported!r}; give a mapping group -> metric name -> entry (docs/plugins.md)")
    specs: list[MetricSpec] = []
    for group, entries in reported.items():
        if not _NAME.match(str(group)):
            raise _fail(
                f".{group}",
                f"group name {group!r}; use letters, digits, '_' and '-' (it is part of the "
                "logged name {split}/{group}/{name})",
            )
        if entries is not None and not isinstance(entries, Mapping):
            raise _fail(f".{group}", f"got {entries!r}; give a mapping metric name -> entry")
        specs.extend(
            _entry_spec(str(group), str(name), entry) for name, entry in (entries or {}).items() if entry is not None
        )
    return specs


def build_metrics(
    reported: Mapping[str, Any] | DictConfig | None,
    dataloaders: Mapping[str, Sequence[tuple[str, str]]],
) -> torch.nn.ModuleDict:
    """Build one ``MetricWrapper`` per (split, dataloader, metric) from ``reported_metrics``.

    ``dataloaders`` maps a split to its ``(dataloader_name, kind)`` pairs in dataloader order.
    Keys are ``"{split}|{dataloader_idx}|{group}|{name}"`` (ModuleDict keys may not hold '.').
    """
    specs = parse_reported_metrics(reported)
    out = torch.nn.ModuleDict()
    for split, dls in dataloaders.items():
        seen_kinds: set[str] = set()
        for idx, (dl_name, kind) in enumerate(dls):
            qualifier = dl_name if kind in seen_kinds else None
            seen_kinds.add(kind)
            for spec in specs:
                if spec.kind != kind or split not in spec.splits:
                    continue
                where = f"reported_metrics.{spec.group}.{spec.name}.metric"
                try:
                    metric = hydra.utils.instantiate(spec.metric_cfg)
                except Exception as exc:  # hydra wraps whatever the metric's import or constructor raised
                    raise ReportedMetricsError(f"{where}: {str(exc).splitlines()[0]}") from exc
                if not isinstance(metric, Metric):
                    raise ReportedMetricsError(
                        f"{where} built {type(metric).__name__}, not a torchmetrics.Metric; "
                        "give a torchmetrics.Metric's _target_"
                    )
                out[f"{split}|{idx}|{spec.group}|{spec.name}"] = MetricWrapper(
                    name=spec.name,
                    metric=metric,
                    update_fn=spec.update_fn,
                    split=split,
                    kind=kind,
                    log_name=metric_log_name(split, spec.group, spec.name, qualifier),
                    dataloader_name=dl_name,
                    group=spec.group,
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
    (the loss metric every family gets) plus ``{split}/{group}/{name}`` of each ``reported_metrics`` entry
    fed by a dataloader's kind.

    Post-hoc evaluator metrics (``{split}/prediction/<name>``) are not known before they run.
    """
    names: set[str] = set()
    specs = parse_reported_metrics(reported)
    seen_kinds: set[str] = set()
    for dl_name, kind in dataloaders:
        qualifier = dl_name if kind in seen_kinds else None
        seen_kinds.add(kind)
        if kind == "lm":
            names.add(metric_log_name(split, "lm", "loss", qualifier))
        names.update(
            metric_log_name(split, spec.group, spec.name, qualifier)
            for spec in specs
            if spec.kind == kind and split in spec.splits
        )
    return names
