"""``xlm report``: aggregate the ``metrics.json`` of many runs into one table grouped by the settings that differ.

A *record* is one run directory (its ``config.yaml`` and ``metrics.json``, plus the metrics of the
evaluations under ``eval/`` that used the run's own settings) or one evaluation of a run whose
settings differ from the run's (e.g. ``predictor.unmasking_order=random``: an evaluation-only row).
Records are grouped by every config setting whose value differs between them, except the aggregate
keys (``seed``) and bookkeeping (``paths.*``, ``job_type``, ``eval.*``, ..., and any value naming a path
inside the run's own directory); settings that always vary
together are shown once (the shortest name; the others are listed as aliases). Each group gets the
mean, sample standard deviation, min, max and n of every metric. Runs that failed, are incomplete,
still running or lack a metric are listed, never silently dropped.

Family- and metric-agnostic: it reads only the run files every job writes (``xlm_core.run.files``).
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import fnmatch
import glob
import io
import json
import math
import os
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from xlm_core.config.tools import flatten
from xlm_core.run.fileio import atomic_write_json, atomic_write_text
from xlm_core.run.lock import LOCK_NAME

__all__ = [
    "DEFAULT_AGGREGATE",
    "DEFAULT_IGNORE",
    "REPORT_MARKER",
    "Record",
    "Problem",
    "Stats",
    "Group",
    "Report",
    "find_run_dirs",
    "load_records",
    "build_report",
    "write_report",
    "format_markdown",
]

DEFAULT_AGGREGATE = ("seed",)
# Settings that say where or how a job ran, not what was trained (prefix match on the dotted key).
DEFAULT_IGNORE = (
    "paths.",
    "hydra.",
    "job_type",
    "eval.",
    "generate.",
    "export.",
    "resume",
    "overwrite",
    "allow_config_mismatch",
    "progress_every_n_steps",
    "summary_samples",
    "logger.",
    "callbacks.",
)
REPORT_MARKER = "report.json"  # a folder holding it is a report's output, not a run
UNSET = "<unset>"
_MAX_DEPTH = 6


@dataclass
class Problem:
    """A run (or evaluation) that contributes nothing, or not everything, to the table, and why."""

    path: str
    reason: str


@dataclass
class Record:
    """One row of input: the settings (flattened config) and the scalar metrics of a run or an evaluation."""

    path: Path
    config: dict[str, Any]
    metrics: dict[str, float]
    kind: str = "run"  # "run" | "eval" (an evaluation whose settings differ from its run's)


@dataclass
class Stats:
    """Spread of one metric over the records of a group (``std`` is the sample standard deviation; NaN for n=1)."""

    mean: float
    std: float
    min: float
    max: float
    n: int
    values: list[float]

    @classmethod
    def of(cls, values: Sequence[float]) -> Stats:
        vals = [float(v) for v in values]
        std = statistics.stdev(vals) if len(vals) > 1 else math.nan
        return cls(statistics.fmean(vals), std, min(vals), max(vals), len(vals), vals)


@dataclass
class Group:
    """The records sharing one value of every group key."""

    settings: dict[str, Any]
    paths: list[str]
    stats: dict[str, Stats]


@dataclass
class Report:
    """Everything ``write_report`` writes."""

    group_keys: list[str]
    aggregate_keys: list[str]
    metrics: list[str]
    groups: list[Group]
    problems: list[Problem]
    aliases: dict[str, list[str]] = field(default_factory=dict)
    selection: dict[str, Any] | None = None
    command: str = ""

    def as_dict(self) -> dict[str, Any]:
        def stats(s: Stats) -> dict[str, Any]:
            return {"mean": _num(s.mean), "std": _num(s.std), "min": s.min, "max": s.max, "n": s.n, "values": s.values}

        return {
            "command": self.command,
            "group_keys": self.group_keys,
            "aggregate_keys": self.aggregate_keys,
            "aliases": self.aliases,
            "metrics": self.metrics,
            "groups": [
                {"settings": g.settings, "runs": g.paths, "metrics": {m: stats(s) for m, s in g.stats.items()}}
                for g in self.groups
            ],
            "problems": [{"path": p.path, "reason": p.reason} for p in self.problems],
            "selection": self.selection,
        }


def _num(value: float) -> float | None:
    return None if math.isnan(value) else value


# ---------------------------------------------------------------------------------------------- finding runs
def _is_run_dir(path: Path) -> bool:
    return any((path / name).exists() for name in ("config.yaml", "metrics.json", "checkpoints", LOCK_NAME))


def find_run_dirs(paths: Iterable[str | os.PathLike[str]]) -> tuple[list[Path], list[Problem]]:
    """Run directories under ``paths``: run directories themselves, folders holding runs (searched
    recursively), Hydra multirun sweep folders (every job folder counts, even one a crash left empty)
    and glob patterns. Returns the runs and the inputs that matched nothing."""
    found: list[Path] = []
    problems: list[Problem] = []

    def walk(path: Path, depth: int) -> None:
        if (path / REPORT_MARKER).exists():
            return
        if _is_run_dir(path):
            found.append(path)
            return
        if depth >= _MAX_DEPTH:
            return
        children = sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
        sweep = (path / "multirun.yaml").exists()
        for child in children:
            if (child / REPORT_MARKER).exists():
                continue
            if sweep and not _is_run_dir(child) and not any(child.iterdir()):
                found.append(child)  # a job folder a crash left empty: listed as failed
            elif sweep and not _is_run_dir(child) and (child / "logs").is_dir():
                found.append(child)
            else:
                walk(child, depth + 1)

    for raw in paths:
        text = str(raw)
        matches = [Path(p) for p in sorted(glob.glob(text, recursive=True))] if glob.has_magic(text) else [Path(text)]
        matches = [m for m in matches if m.is_dir()]
        if not matches:
            problems.append(
                Problem(text, "no such directory" if not glob.has_magic(text) else "the pattern matched no directory")
            )
        for match in matches:
            walk(match, 0)
    unique = list(dict.fromkeys(p.resolve() for p in found))
    return unique, problems


# ---------------------------------------------------------------------------------------------- reading runs
def _read_yaml(path: Path) -> dict[str, Any] | None:
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return None
    return data if isinstance(data, dict) else None


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def _leaf(value: Any) -> Any:
    """A hashable, comparable setting value (lists and dicts as compact JSON)."""
    if isinstance(value, (list, dict)):
        return json.dumps(value, sort_keys=True)
    return value


def _flat_config(config: dict[str, Any]) -> dict[str, Any]:
    return {k: _leaf(v) for k, v in flatten(config).items()}


def _scalars(metrics: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def _is_running(run_dir: Path) -> bool:
    """True when a job holds the run directory's lock (``xlm_core.run.lock``) right now."""
    lock = run_dir / LOCK_NAME
    if not lock.exists():
        return False
    try:
        fd = os.open(lock, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def _last_error(run_dir: Path) -> str:
    """The last line mentioning an error in the run's newest log file (``logs/*.log`` or ``*.log``), or ''."""
    logs = sorted([*run_dir.glob("logs/*.log"), *run_dir.glob("*.log")], key=lambda p: p.stat().st_mtime)
    for log in reversed(logs):
        with contextlib.suppress(OSError):
            lines = [
                ln.strip()
                for ln in log.read_text(errors="replace").splitlines()
                if "error" in ln.lower() or "exception" in ln.lower()
            ]
            if lines:
                return lines[-1][:300]
    return ""


def _ignored(key: str, ignore: Sequence[str]) -> bool:
    return any(key == p or (p.endswith(".") and key.startswith(p)) or key.startswith(p + ".") for p in ignore)


def load_records(
    run_dirs: Iterable[Path], ignore: Sequence[str] = DEFAULT_IGNORE
) -> tuple[list[Record], list[Problem]]:
    """The records of ``run_dirs`` (see module docstring) and the runs that cannot contribute, with the reason."""
    records: list[Record] = []
    problems: list[Problem] = []
    for run_dir in run_dirs:
        where = str(run_dir)
        config = _read_yaml(run_dir / "config.yaml")
        metrics = _read_json(run_dir / "metrics.json")
        if _is_running(run_dir):
            problems.append(Problem(where, "still running (a job holds its lock)"))
            continue
        if config is None:
            error = _last_error(run_dir)
            problems.append(Problem(where, "failed: no readable config.yaml" + (f" ({error})" if error else "")))
            continue
        flat = _flat_config(config)
        if metrics is None:
            error = _last_error(run_dir)
            problems.append(Problem(where, "incomplete: no metrics.json" + (f" ({error})" if error else "")))
            continue
        step, max_steps = metrics.get("step"), flat.get("trainer.max_steps")
        if (
            isinstance(step, (int, float))
            and isinstance(max_steps, int)
            and max_steps > 0
            and step < max_steps
            and flat.get("job_type", "train") == "train"
        ):
            error = _last_error(run_dir)
            problems.append(
                Problem(
                    where, f"incomplete: stopped at step {int(step)} of {max_steps}" + (f" ({error})" if error else "")
                )
            )
            continue
        base = Record(run_dir, flat, _scalars(metrics))
        records.append(base)
        records.extend(_eval_records(run_dir, base, ignore, problems))
    return records, problems


def _eval_records(run_dir: Path, base: Record, ignore: Sequence[str], problems: list[Problem]) -> list[Record]:
    """Merge evaluations with the run's own settings into ``base``; one record per other setting."""
    variants: dict[tuple[tuple[str, Any], ...], Record] = {}
    for eval_dir in sorted((run_dir / "eval").glob("*/")):  # names start with the time: oldest first
        metrics = _read_json(eval_dir / "metrics.json")
        config = _read_yaml(eval_dir / "config.yaml")
        if metrics is None or config is None:
            problems.append(
                Problem(
                    str(eval_dir),
                    "incomplete evaluation: no metrics.json"
                    if config is not None
                    else "incomplete evaluation: no config.yaml",
                )
            )
            continue
        flat = _flat_config(config)
        differs = tuple(
            sorted(
                (k, flat.get(k, UNSET))
                for k in set(flat) | set(base.config)
                if not _ignored(k, ignore) and flat.get(k, UNSET) != base.config.get(k, UNSET)
            )
        )
        values = {k: v for k, v in _scalars(metrics).items() if k != "step"}
        if not differs:
            base.metrics.update(values)  # later evaluations of the same split replace earlier ones
            continue
        if differs not in variants:
            variants[differs] = Record(eval_dir, {**base.config, **dict(differs)}, {}, kind="eval")
        variants[differs].metrics.update(values)
        variants[differs].path = eval_dir
    return list(variants.values())


# ---------------------------------------------------------------------------------------------- grouping
def _partition(records: Sequence[Record], key: str) -> frozenset[frozenset[int]]:
    blocks: dict[Any, set[int]] = {}
    for i, r in enumerate(records):
        blocks.setdefault(_sortable(r.config.get(key, UNSET)), set()).add(i)
    return frozenset(frozenset(b) for b in blocks.values())


def _sortable(value: Any) -> Any:
    return json.dumps(value, sort_keys=True) if not isinstance(value, (str, int, float, bool, type(None))) else value


def _run_dir_of(record: Record) -> str:
    return str(record.path.parent.parent if record.kind == "eval" else record.path)


def _names_its_run(records: Sequence[Record], key: str) -> bool:
    """True when some record's value of ``key`` is a path inside its own run directory (e.g. trainer.default_root_dir)."""
    return any(isinstance(r.config.get(key), str) and _run_dir_of(r) in r.config[key] for r in records)


def _varying_keys(records: Sequence[Record], ignore: Sequence[str]) -> list[str]:
    keys = sorted({k for r in records for k in r.config})
    return [
        k
        for k in keys
        if not _ignored(k, ignore)
        and len({_sortable(r.config.get(k, UNSET)) for r in records}) > 1
        and not _names_its_run(records, k)
    ]


def _shortest(keys: Iterable[str]) -> str:
    return min(keys, key=lambda k: (k.count("."), len(k), k))


def _select_metrics(records: Sequence[Record], patterns: Sequence[str] | None) -> list[str]:
    available = sorted({k for r in records for k in r.metrics})
    if not patterns:
        return [k for k in available if "/" in k]
    chosen: list[str] = []
    for pattern in patterns:
        hits = [k for k in available if fnmatch.fnmatchcase(k, pattern)] if glob.has_magic(pattern) else [pattern]
        chosen.extend(h for h in hits if h not in chosen)
    return chosen


def build_report(
    records: Sequence[Record],
    problems: Sequence[Problem] = (),
    metrics: Sequence[str] | None = None,
    group: Sequence[str] | None = None,
    aggregate: Sequence[str] = DEFAULT_AGGREGATE,
    ignore: Sequence[str] = DEFAULT_IGNORE,
    select: str | None = None,
    by: str | None = None,
    mode: str = "max",
) -> Report:
    """Group ``records`` and compute every metric's spread per group.

    Args:
        metrics: metric names or glob patterns (default: every metric named ``split/group/name``).
        group: the keys that define the groups (default: every setting that differs, aliases merged).
        aggregate: keys aggregated over (never group keys), with every key that varies together with one.
        ignore: key prefixes that are bookkeeping, not settings.
        select: with ``by``, for each combination of the other group keys, the value of this key whose
            mean of metric ``by`` is best (``mode`` max or min): e.g. the learning rate chosen on validation.
    """
    problems = list(problems)
    names = _select_metrics(records, metrics)
    aliases: dict[str, list[str]] = {}
    if group:
        keys = list(group)
    else:
        varying = _varying_keys(records, ignore)
        aggregate_parts = {_partition(records, k) for k in aggregate}
        by_part: dict[frozenset[frozenset[int]], list[str]] = {}
        for key in varying:
            by_part.setdefault(_partition(records, key), []).append(key)
        keys = []
        for part, members in by_part.items():
            if part in aggregate_parts or any(m in aggregate for m in members):
                continue  # the seed, or a key that follows it (datamodule.seed: ${seed})
            head = _shortest(members)
            keys.append(head)
            if len(members) > 1:
                aliases[head] = sorted(m for m in members if m != head)
        keys.sort()
    blocks: dict[tuple[Any, ...], list[Record]] = {}
    for r in records:
        blocks.setdefault(tuple(_sortable(r.config.get(k, UNSET)) for k in keys), []).append(r)
    groups = []
    for values in sorted(blocks, key=lambda t: tuple(str(v) for v in t)):
        members = blocks[values]
        stats: dict[str, Stats] = {}
        for name in names:
            vals = []
            for r in members:
                value = r.metrics.get(name)
                if value is None and not _expected(r, name):
                    continue  # an evaluation-only row has no metrics of the other splits
                if value is None or math.isnan(value):
                    problems.append(
                        Problem(str(r.path), f"missing metric {name}" if value is None else f"{name} is NaN")
                    )
                else:
                    vals.append(value)
            if vals:
                stats[name] = Stats.of(vals)
        groups.append(
            Group(
                dict(zip(keys, (members[0].config.get(k, UNSET) for k in keys))), [str(r.path) for r in members], stats
            )
        )
    report = Report(keys, list(aggregate), names, groups, _dedupe(problems), aliases)
    if select is not None:
        report.selection = _select(report, select, by or (names[0] if names else ""), mode)
    return report


def _expected(record: Record, metric: str) -> bool:
    """Whether ``record`` should have ``metric``: a run, every metric; an evaluation, those of its own split."""
    if record.kind != "eval":
        return True
    split = metric.split("/", 1)[0]
    return any(name.split("/", 1)[0] == split for name in record.metrics)


def _dedupe(problems: Iterable[Problem]) -> list[Problem]:
    seen: dict[tuple[str, str], Problem] = {}
    for p in problems:
        seen.setdefault((p.path, p.reason), p)
    return list(seen.values())


def _select(report: Report, key: str, metric: str, mode: str) -> dict[str, Any]:
    """For each combination of the other group keys, the group whose ``metric`` mean is best over ``key``'s values."""
    if key not in report.group_keys:
        raise ValueError(
            f"--select {key}: not one of the group keys ({', '.join(report.group_keys) or 'none'}); "
            "name a setting that differs between the runs"
        )
    if mode not in ("max", "min"):
        raise ValueError(f"--mode {mode!r}: use max or min")
    others = [k for k in report.group_keys if k != key]
    best: dict[tuple[Any, ...], Group] = {}
    for g in report.groups:
        if metric not in g.stats:
            continue
        slot = tuple(_sortable(g.settings[k]) for k in others)
        current = best.get(slot)
        better = current is None or (
            g.stats[metric].mean > current.stats[metric].mean
            if mode == "max"
            else g.stats[metric].mean < current.stats[metric].mean
        )
        if better:
            best[slot] = g
    rows = [
        {
            "settings": {k: g.settings[k] for k in others},
            key: g.settings[key],
            "mean": g.stats[metric].mean,
            "n": g.stats[metric].n,
        }
        for _, g in sorted(best.items(), key=lambda kv: tuple(str(v) for v in kv[0]))
    ]
    return {"key": key, "by": metric, "mode": mode, "rows": rows}


# ---------------------------------------------------------------------------------------------- writing
def _fmt(x: float, digits: int = 4) -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}g}"


def _cell(s: Stats | None) -> str:
    if s is None:
        return "—"
    spread = f" ± {_fmt(s.std)}" if s.n > 1 else ""
    return f"{_fmt(s.mean)}{spread} [{_fmt(s.min)}–{_fmt(s.max)}]"


def _value(v: Any) -> str:
    return str(v).replace("|", "\\|")


def format_markdown(report: Report) -> str:
    """The report as Markdown: the table (mean ± std [min–max] per metric, n), selection, aliases, problems."""
    out = io.StringIO()
    out.write("# xlm report\n\n")
    if report.command:
        out.write(f"`{report.command}`\n\n")
    agg = ", ".join(report.aggregate_keys) or "nothing"
    out.write(
        f"Grouped by: {', '.join(report.group_keys) or '(all runs in one group)'}; aggregated over: {agg}. "
        "Cells: mean ± sample std [min–max]; n = runs with the metric.\n\n"
    )
    header = [*report.group_keys, "runs", *[f"{m} (n)" for m in report.metrics]]
    out.write("| " + " | ".join(header) + " |\n")
    out.write("|" + "---|" * len(header) + "\n")
    for g in report.groups:
        cells = [_value(g.settings[k]) for k in report.group_keys] + [str(len(g.paths))]
        for m in report.metrics:
            s = g.stats.get(m)
            cells.append(f"{_cell(s)} ({s.n if s else 0})")
        out.write("| " + " | ".join(cells) + " |\n")
    if report.selection:
        sel = report.selection
        out.write(f"\n## Selection: best {sel['key']} by mean {sel['by']} ({sel['mode']})\n\n")
        for row in sel["rows"]:
            where = ", ".join(f"{k}={_value(v)}" for k, v in row["settings"].items()) or "all runs"
            out.write(f"- {where}: {sel['key']}={_value(row[sel['key']])} (mean {_fmt(row['mean'])}, n={row['n']})\n")
    if report.aliases:
        out.write("\n## Settings that vary together (shown once)\n\n")
        for head, others in sorted(report.aliases.items()):
            shown = ", ".join(others[:6]) + (
                f" and {len(others) - 6} more (report.json lists them)" if len(others) > 6 else ""
            )
            out.write(f"- {head}: also {shown}\n")
    out.write(f"\n## Runs left out or incomplete ({len(report.problems)})\n\n")
    if not report.problems:
        out.write("None: every run found has every metric.\n")
    for p in report.problems:
        out.write(f"- `{p.path}`: {p.reason}\n")
    return out.getvalue()


def _csv(report: Report) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(
        [*report.group_keys, "runs", *[f"{m}:{s}" for m in report.metrics for s in ("mean", "std", "min", "max", "n")]]
    )
    for g in report.groups:
        row: list[Any] = [g.settings[k] for k in report.group_keys] + [len(g.paths)]
        for m in report.metrics:
            s = g.stats.get(m)
            row += [s.mean, _num(s.std), s.min, s.max, s.n] if s else ["", "", "", "", 0]
        writer.writerow(row)
    return buf.getvalue()


def _label(settings: dict[str, Any]) -> str:
    return "\n".join(f"{k.rsplit('.', 1)[-1]}={v}" for k, v in settings.items()) or "all runs"


def _plot(report: Report, path: Path) -> Path | None:
    """One panel per metric: a bar per group at its mean, the standard deviation as an error bar, every run as a dot."""
    if not report.metrics or not report.groups:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(report.metrics)
    width = max(6.0, 0.9 * len(report.groups) + 2)
    fig, axes = plt.subplots(n, 1, figsize=(width, 3.2 * n), squeeze=False)
    x = list(range(len(report.groups)))
    for ax, metric in zip(axes[:, 0], report.metrics):
        means = [g.stats[metric].mean if metric in g.stats else math.nan for g in report.groups]
        stds = [
            0.0 if metric not in g.stats or math.isnan(g.stats[metric].std) else g.stats[metric].std
            for g in report.groups
        ]
        ax.bar(x, means, yerr=stds, capsize=4, color="#8fb3d9", edgecolor="#345", zorder=1)
        for i, g in enumerate(report.groups):
            if metric in g.stats:
                vals = g.stats[metric].values
                ax.scatter([i] * len(vals), vals, s=12, color="#222", zorder=2)
        ax.set_title(metric, fontsize=10)
        ax.set_xticks(x)
        ax.set_xticklabels([_label(g.settings) for g in report.groups], fontsize=7)
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_report(report: Report, out_dir: Path) -> dict[str, Path]:
    """Write ``report.md``, ``report.csv``, ``report.json`` and ``report.png`` (bars with spread) into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = {
        "markdown": atomic_write_text(out_dir / "report.md", format_markdown(report)),
        "csv": atomic_write_text(out_dir / "report.csv", _csv(report)),
        "json": atomic_write_json(out_dir / REPORT_MARKER, report.as_dict()),
    }
    plot = _plot(report, out_dir / "report.png")
    if plot is not None:
        written["plot"] = plot
    return written
