"""The ``xlm`` subcommands that are not jobs: ``families``, ``check``, ``new-family`` and ``report``.

Each takes its own arguments (after the subcommand name) and the loaded family registry, and
returns the process exit code; usage errors raise ``UsageError`` (one line, exit code 2).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Callable
from importlib import metadata
from typing import Any

from xlm_core.config.tools import qualified_name
from xlm_core.errors import UsageError
from xlm_core.plugin.components import describe_component
from xlm_core.plugin.manager import FamilyInfo, FamilyNotFoundError, FamilyRegistry
from xlm_core.plugin.version import PLUGIN_API_VERSION

__all__ = ["COMMANDS", "families_command", "check_command", "new_family_command", "report_command"]


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors as ``UsageError`` instead of exiting."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{message} (usage: {self.format_usage().strip().removeprefix('usage: ')})")


def _family_payload(f: FamilyInfo, verbose: bool) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "name": f.name,
        "distribution": f.distribution,
        "version": f.version,
        "config_dir": str(f.config_dir),
        "description": f.description,
        "experiments": list(f.experiments),
        "api_version": f.api_version,
        "api_problem": f.api_problem,
    }
    if verbose:
        c = f.components
        payload["components"] = {
            "model_protocol": c.model_protocol.__name__ if c.model_protocol else None,
            **{
                kind: [describe_component(x) for x in getattr(c, kind)]
                for kind in ("models", "losses", "collators", "predictors", "metrics")
            },
            "exporters": {fmt: x.target for fmt, x in c.exporters.items()},
        }
        n = f.names
        payload["names"] = {
            "token_key": n.token_key,
            "mask_key": n.mask_key,
            "target_key": n.target_key,
            "predicted_ids_key": n.predicted_ids_key,
            "ignore_index": n.ignore_index,
            "count_tokens": qualified_name(n.count_tokens) if n.count_tokens else None,
        }
    return payload


def families_command(args: list[str], registry: FamilyRegistry) -> int:
    """``xlm families [--verbose] [--json]``: installed families (and their components) and broken plugins."""
    parser = _Parser(prog="xlm families", description="List installed xlm families and plugins that failed to load.")
    parser.add_argument("-v", "--verbose", action="store_true", help="also list each family's registered components")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    opts = parser.parse_args(args)
    if opts.json:
        print(
            json.dumps(
                {
                    "families": [_family_payload(f, opts.verbose) for f in registry.families.values()],
                    "errors": [
                        {"plugin": e.plugin, "distribution": e.distribution, "error": e.error} for e in registry.errors
                    ],
                    "core": {"version": _core_version(), "plugin_api": PLUGIN_API_VERSION},
                },
                indent=2,
            )
        )
        return 0
    if not registry.families:
        print(
            "No families installed. Install a family distribution: from a checkout of xlm, "
            "`pip install -e xlm_plugins/arlm` (or a family's wheel, docs/plugins.md); `xlm new-family NAME` starts one."
        )
    for f in registry.families.values():
        version = f" {f.version}" if f.version else ""
        print(f"{f.name}  ({f.distribution}{version})")
        if f.description:
            print(f"  {f.description}")
        print(f"  config dir:  {f.config_dir}")
        print(f"  experiments: {', '.join(f.experiments) if f.experiments else '(none)'}")
        print(f"  plugin API:  {f.api_version or '(not declared)'}")
        if f.api_problem:
            print(f"  warning: {f.api_problem}")
        if opts.verbose:
            payload = _family_payload(f, True)
            comps, names = payload["components"], payload["names"]
            print("  names: " + ", ".join(f"{k}={v}" for k, v in names.items() if v is not None))
            print(f"  model protocol: {comps['model_protocol'] or '(none)'}")
            for kind in ("models", "losses", "collators", "predictors", "metrics"):
                print(f"  {kind}:" + ("" if comps[kind] else " (none)"))
                for line in comps[kind]:
                    print(f"    {line}")
            exporters = comps["exporters"]
            print("  exporters:" + (" (none)" if not exporters else ""))
            for fmt, target in exporters.items():
                print(f"    {fmt}: {target}")
    if registry.errors:
        print("\nBroken plugins (their families are unavailable):")
        for e in registry.errors:
            print(f"  {e}")
    print(f"\nxlm-core {_core_version()} provides plugin API {PLUGIN_API_VERSION}.")
    return 0


def _core_version() -> str:
    try:
        return metadata.version("xlm-core")
    except metadata.PackageNotFoundError:
        return "(not installed)"


def _family_packages(family: FamilyInfo) -> list[str]:
    """Top-level import packages of the family's distribution (for the jaxtyping import hook)."""
    try:
        dist = metadata.distribution(family.distribution)
    except metadata.PackageNotFoundError:
        return []
    top = (dist.read_text("top_level.txt") or "").split()
    if not top:
        top = sorted({ep.value.split(".")[0] for ep in dist.entry_points if ep.group == "xlm"})
    return top


def _check_with_jaxtyping(family: FamilyInfo, extra: list[str]) -> int:
    """Rerun ``xlm check`` in a fresh interpreter whose imports of xlm_core and the family are type-checked."""
    try:
        import beartype  # noqa: F401
    except ImportError:
        raise UsageError("--jaxtyping needs beartype: pip install beartype") from None
    packages = ["xlm_core", *_family_packages(family)]
    code = (
        "import sys; from xlm_core.testing.typecheck import install_hook; install_hook(sys.argv[1].split(',')); "
        "from xlm_core.cli import main; sys.exit(main(['check', *sys.argv[2:]]))"
    )
    env = {**os.environ, "XLM_JAXTYPING": "1"}
    return subprocess.call([sys.executable, "-c", code, ",".join(packages), family.name, *extra], env=env)


def check_command(args: list[str], registry: FamilyRegistry) -> int:
    """``xlm check FAMILY [--jaxtyping] [--json] [--no-configs]``: conformance checks; exit 1 on any failure."""
    from xlm_core.testing.family_check import check_family, format_results

    parser = _Parser(
        prog="xlm check",
        description="Run the core's conformance checks on a family's registered "
        "components (no test file needed); exit status 1 when any check fails.",
    )
    parser.add_argument("family", help="an installed family (xlm families lists them)")
    parser.add_argument(
        "--jaxtyping",
        action="store_true",
        help="check jaxtyping shape/dtype annotations at run time (beartype) while checking",
    )
    parser.add_argument("--json", action="store_true", help="machine-readable results")
    parser.add_argument("--no-configs", action="store_true", help="skip composing the family's experiments")
    opts = parser.parse_args(args)
    try:
        family = registry.get(opts.family)
    except FamilyNotFoundError as exc:
        raise UsageError(str(exc)) from None
    if opts.jaxtyping and os.environ.get("XLM_JAXTYPING") != "1":
        return _check_with_jaxtyping(family, [a for a in args if a not in ("--jaxtyping", opts.family)])
    results = check_family(family, dict(registry.families), configs=not opts.no_configs)
    if opts.json:
        print(json.dumps({"family": family.name, "results": [r.as_dict() for r in results]}, indent=2))
    else:
        print(format_results(family.name, results))
    return 1 if any(r.status in ("failed", "error") for r in results) else 0


def new_family_command(args: list[str], registry: FamilyRegistry) -> int:
    """``xlm new-family NAME [--dir DIR]``: scaffold a family package that installs, checks and trains."""
    from xlm_core.scaffold import scaffold_family

    parser = _Parser(
        prog="xlm new-family",
        description="Create a new family package (pyproject with the entry "
        "point, components, configs, a test that runs xlm check).",
    )
    parser.add_argument("name", help="family name, e.g. mylm (the package is xlm_<name>, the distribution xlm-<name>)")
    parser.add_argument("--dir", default=None, help="where to create it (default: ./xlm-<name>)")
    opts = parser.parse_args(args)
    if opts.name in registry.families:
        raise UsageError(
            f"a family named '{opts.name}' is already installed ({registry.families[opts.name].distribution}); "
            "choose another name"
        )
    root = scaffold_family(opts.name, opts.dir)
    print(
        f"Created family '{opts.name}' in {root}\n"
        f"Next:\n  pip install -e {root}\n  xlm check {opts.name}\n"
        f"  xlm family={opts.name} experiment=star_easy_{opts.name}"
    )
    return 0


def _csv_list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def report_command(args: list[str], registry: FamilyRegistry) -> int:
    """``xlm report PATH... [options]``: one table of many runs' metrics, grouped by the settings that differ."""
    from pathlib import Path

    from xlm_core.run.report import (
        DEFAULT_AGGREGATE,
        DEFAULT_IGNORE,
        build_report,
        find_run_dirs,
        format_markdown,
        load_records,
        write_report,
    )

    parser = _Parser(
        prog="xlm report",
        description="Aggregate the metrics.json of many runs (run directories, "
        "folders of runs, Hydra multirun sweep folders, glob patterns) into a table grouped by the config "
        "settings that differ between them: mean, standard deviation, min-max and n per metric. Writes "
        "report.md, report.csv, report.json and report.png; failed or incomplete runs are listed.",
    )
    parser.add_argument(
        "paths", nargs="+", help="run directories, folders holding runs, sweep folders or glob patterns"
    )
    parser.add_argument(
        "--metrics",
        type=_csv_list,
        default=None,
        help="comma-separated metric names or patterns (default: every split/group/name metric), "
        "e.g. 'val/prediction/*,test/prediction/exact_match'",
    )
    parser.add_argument(
        "--group",
        type=_csv_list,
        default=None,
        help="comma-separated config keys that define the groups (default: every setting that differs)",
    )
    parser.add_argument(
        "--aggregate",
        type=_csv_list,
        default=list(DEFAULT_AGGREGATE),
        help=f"keys aggregated over, never grouped by (default: {','.join(DEFAULT_AGGREGATE)})",
    )
    parser.add_argument(
        "--ignore",
        type=_csv_list,
        default=[],
        help="more config keys or prefixes (ending in '.') that are not settings, e.g. torch_num_threads",
    )
    parser.add_argument(
        "--select",
        default=None,
        metavar="KEY",
        help="for each combination of the other group keys, report the value of KEY with the best mean "
        "of --by (e.g. --select optimizer.lr --by val/prediction/exact_match)",
    )
    parser.add_argument(
        "--by", default=None, metavar="METRIC", help="the metric --select ranks by (default: the first)"
    )
    parser.add_argument(
        "--mode", default="max", choices=("max", "min"), help="--select: higher (max) or lower is better"
    )
    parser.add_argument(
        "--out",
        default=None,
        help="output directory (default: <first path>/report for a directory, else report/ beside the first run found)",
    )
    opts = parser.parse_args(args)
    runs, problems = find_run_dirs(opts.paths)
    if not runs:
        reasons = "; ".join(f"{p.path}: {p.reason}" for p in problems) or "no run directory under them"
        raise UsageError(
            f"no runs found in {' '.join(opts.paths)} ({reasons}); a run directory holds config.yaml and metrics.json"
        )
    ignore = [*DEFAULT_IGNORE, *opts.ignore]
    records, more = load_records(runs, ignore)
    try:
        report = build_report(
            records,
            [*problems, *more],
            metrics=opts.metrics,
            group=opts.group,
            aggregate=opts.aggregate,
            ignore=ignore,
            select=opts.select,
            by=opts.by,
            mode=opts.mode,
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    report.command = " ".join(["xlm", "report", *args])
    first = Path(opts.paths[0])
    out = Path(opts.out) if opts.out else (first if first.is_dir() else runs[0].parent) / "report"
    written = write_report(report, out)
    print(format_markdown(report))
    print(f"{len(records)} record(s) from {len(runs)} run(s); written: " + ", ".join(str(p) for p in written.values()))
    return 0


COMMANDS: dict[str, Callable[[list[str], FamilyRegistry], int]] = {
    "families": families_command,
    "check": check_command,
    "new-family": new_family_command,
    "report": report_command,
}
