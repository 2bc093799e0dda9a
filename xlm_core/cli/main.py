"""The ``xlm`` command: compose a family's Hydra config and dispatch a job (``train`` by default).

``xlm families``, ``xlm check FAMILY``, ``xlm new-family NAME`` and ``xlm report PATH...`` are subcommands
(``xlm_core.cli.commands``). Anything else is Hydra overrides (and Hydra flags): the core tree
``pkg://xlm_core.configs`` is composed with the selected family's config dir on Hydra's search path,
then ``xlm_core.jobs.<job_type>.run(cfg)`` is called; ``job_type=name`` prints the config and runs
nothing. With ``-m`` (Hydra multirun) each job's run directory is its own sweep folder
(``hydra.sweep.dir``/``hydra.sweep.subdir``) unless ``paths.run_dir`` is given. Every failure prints one
line to stderr (``xlm_core.cli.errors``): usage errors, Hydra override mistakes, full or read-only disks
exit with 2, a stop by a signal with 128 + its number (130, 143), a bug with 1; tracebacks go only to the
invocation's log file.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import traceback
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import hydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from hydra.errors import HydraException
from omegaconf import DictConfig

from xlm_core.cli.commands import COMMANDS
from xlm_core.cli.errors import error_line, log_to_files
from xlm_core.config.aliases import pop_deprecations
from xlm_core.config.checks import reject_new_top_level_keys
from xlm_core.config.compose import CONFIG_MODULE, CONFIG_NAME
from xlm_core.config.targets import check_component_targets
from xlm_core.errors import UsageError
from xlm_core.jobs import load_job
from xlm_core.plugin.manager import FamilyInfo, FamilyNotFoundError, FamilyRegistry, get_registry
from xlm_core.run.invocation import record_invocation
from xlm_core.run.names import check_job_name

__all__ = ["main", "CONFIG_MODULE", "CONFIG_NAME", "DEFAULT_JOB_TYPE", "DRY_RUN_JOB_TYPE"]

DEFAULT_JOB_TYPE = "train"
DRY_RUN_JOB_TYPE = "name"
# Hydra flags that only inspect (print help/config/info) and never run the job.
_INSPECT_FLAGS = {"--help", "-h", "--hydra-help", "--cfg", "-c", "--info", "-i", "--shell-completion", "-sc"}
_MULTIRUN_FLAGS = {"--multirun", "-m"}


class _CliError(UsageError):
    """A usage error found by the CLI itself."""


@dataclass
class _Plan:
    """What one invocation will do: the argv handed to Hydra and the checks to run in the job."""

    user_args: list[str]
    extra_overrides: list[str]
    job_type: str | None  # None when swept or not knowable before composition
    dry_run: bool
    notes: list[str] = field(default_factory=list)
    new_top_level_keys: list[str] = field(default_factory=list)  # `+key=value` overrides of top-level keys


def _quote(value: str) -> str:
    """A single-quoted Hydra override value."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _values(override: Override) -> list[str]:
    """The plain string value(s) of an override; a choice sweep gives all its choices."""
    if override.is_sweep_override():
        if not override.is_choice_sweep():
            raise _CliError(f"{override.key_or_group} can only be swept over a list of choices")
        return list(override.sweep_string_iterator())
    return [override.get_value_element_as_str()]


def _describe_experiments(registry: FamilyRegistry) -> str:
    parts = [f"{f.name} ({', '.join(f.experiments) or 'no experiments'})" for f in registry.families.values()]
    return "installed families and their experiments: " + ("; ".join(parts) if parts else "none")


def _select_family(
    registry: FamilyRegistry, families: list[str], experiments: list[str], notes: list[str]
) -> FamilyInfo | None:
    """The family named by ``family=`` or, failing that, the only one holding the experiment(s)."""
    if len(families) > 1:
        raise _CliError("give one family at a time (family= cannot be swept)")
    if families:
        try:
            return registry.get(families[0])
        except FamilyNotFoundError as exc:
            raise _CliError(str(exc)) from None
    if not experiments:
        return None
    owners = {f.name: f for exp in experiments for f in registry.families_with_experiment(exp)}
    if not owners:
        raise _CliError(
            f"experiment '{experiments[0]}' is not in any installed family; {_describe_experiments(registry)}"
        )
    if len(owners) > 1:
        raise _CliError(
            f"experiment '{'/'.join(experiments)}' exists in families {', '.join(sorted(owners))}; "
            "choose one with family=<name>"
        )
    (info,) = owners.values()
    notes.append(f"using family={info.name}, the only installed family with experiment={','.join(experiments)}")
    return info


def _plan(args: list[str], registry: FamilyRegistry) -> _Plan:
    """Validate the family/experiment/job_type of ``args`` and build the argv Hydra gets."""
    flags = [a for a in args if a.startswith("-")]
    texts = [a for a in args if "=" in a and not a.startswith("-")]
    try:
        parsed = OverridesParser.create().parse_overrides(texts)
    except HydraException as exc:
        raise _CliError(str(exc).splitlines()[0]) from None
    by_key: dict[str, Override] = {o.key_or_group: o for o in parsed if not o.is_delete()}
    new_keys = [
        o.key_or_group
        for o in parsed
        if o.is_add() and "." not in o.key_or_group and "/" not in o.key_or_group and o.package is None
    ]
    user_args = list(args)
    extra: list[str] = []
    notes: list[str] = []
    inspect_only = any(f.split("=")[0] in _INSPECT_FLAGS for f in flags)
    multirun = any(f in _MULTIRUN_FLAGS for f in flags)

    experiments = _values(by_key["experiment"]) if "experiment" in by_key else []
    families = _values(by_key["family"]) if "family" in by_key else []
    info = _select_family(registry, families, experiments, notes)
    if info is not None and info.api_problem:
        print(f"xlm: warning: family '{info.name}' {info.api_problem}", file=sys.stderr)
    if info is None and not flags:
        raise _CliError(
            "choose a family with family=<name> and an experiment with experiment=<name>; "
            f"{_describe_experiments(registry)}"
        )

    if info is not None:
        unknown = [e for e in experiments if e not in info.experiments]
        if unknown:
            listed = (
                ", ".join(info.experiments) if info.experiments else f"none (no {info.config_dir}/experiment/*.yaml)"
            )
            raise _CliError(f"unknown experiment '{unknown[0]}' for family '{info.name}'; its experiments: {listed}")
        if not families:
            extra.append(f"family={info.name}")
        searchpath = [info.searchpath]
        if "hydra.searchpath" in by_key:  # keep the user's extra config dirs, ahead of the family's
            user = by_key["hydra.searchpath"].value()
            searchpath = [str(p) for p in (user if isinstance(user, list) else [user])] + searchpath
            user_args = [a for a in user_args if a.lstrip("+").split("=", 1)[0] != "hydra.searchpath"]
        extra.append("hydra.searchpath=[" + ",".join(_quote(p) for p in searchpath) + "]")

    if multirun and not inspect_only and "paths.run_dir" not in by_key:
        # Each job of a sweep gets its own run directory, its sweep folder (hydra.sweep.dir/subdir); with the
        # default run_dir (runs_dir/job_name) every job would share one and resume the previous job's run.
        extra.append("paths.run_dir=${hydra:runtime.output_dir}")

    if not multirun and not inspect_only:
        _refuse_sweeps_and_stray_words(args, parsed)
    if "job_name" in by_key:
        given = by_key["job_name"]
        for name in (
            _values(given) if given.is_sweep_override() else ["" if given.value() is None else str(given.value())]
        ):
            if "${" not in name:
                try:
                    check_job_name(name)
                except UsageError as exc:
                    raise _CliError(str(exc)) from None
    if "job_name" not in by_key and experiments:
        if len(experiments) == 1:
            extra.append(f"job_name={_quote(experiments[0])}")
        else:
            extra.append("job_name=${hydra:runtime.choices.experiment}")

    job_types = _values(by_key["job_type"]) if "job_type" in by_key else [DEFAULT_JOB_TYPE]
    job_type = job_types[0] if len(job_types) == 1 else None
    if not inspect_only:
        for jt in job_types:
            try:
                load_job(jt)
            except UsageError as exc:
                raise _CliError(str(exc)) from None
    dry_run = job_type == DRY_RUN_JOB_TYPE and not multirun and not inspect_only and "hydra.run.dir" not in by_key
    if dry_run:  # printing a config needs no log files or logging setup
        extra += [f"{group}=none" for group in ("hydra/job_logging", "hydra/hydra_logging") if group not in by_key]
    return _Plan(
        user_args=user_args,
        extra_overrides=extra,
        job_type=job_type,
        dry_run=dry_run,
        notes=notes,
        new_top_level_keys=new_keys,
    )


# Hydra flags whose value is the next word (`--config-name NAME`), so that word is no override.
_FLAGS_WITH_VALUE = {
    "--config-path",
    "-cp",
    "--config-name",
    "-cn",
    "--config-dir",
    "-cd",
    "--experimental-rerun",
    "--cfg",
    "-c",
    "--package",
    "-p",
    "--info",
    "-i",
    "--shell-completion",
    "-sc",
}


def _refuse_sweeps_and_stray_words(args: list[str], parsed: list[Override]) -> None:
    """One line for what Hydra would reject with a trace: a comma sweep without --multirun, and a word that
    is no ``key=value`` (usually the rest of a value with spaces the shell split off)."""
    for override in parsed:
        if override.is_sweep_override():
            key = override.key_or_group
            value = ",".join(_values(override)) if override.is_choice_sweep() else "..."
            raise _CliError(
                f"{key}={value}: a comma makes this a sweep over several values, which runs only with --multirun; "
                f"for one value quote it ({key}='{value}'), or add --multirun to run each"
            )
    previous = ""
    for word in args:
        deletion = word.startswith("~")  # `~key` deletes a key: Hydra's one override without '='
        if (
            "=" not in word
            and not deletion
            and not word.startswith("-")
            and previous.split("=")[0] not in _FLAGS_WITH_VALUE
        ):
            raise _CliError(
                f"{word!r} is not a key=value override (a value with spaces was split by the shell?); quote the whole "
                "override as one word, e.g. 'job_name=my_run' or '+prompts=[\"1 2 3\"]'"
            )
        previous = word


def _with_overrides(args: list[str], extra: list[str]) -> list[str]:
    """``args`` with ``extra`` overrides placed right after the user's last override.

    argparse wants the overrides (positional) in one run, whatever flags come before or after.
    """
    last = max((i for i, a in enumerate(args) if "=" in a and not a.startswith("-")), default=len(args) - 1)
    return args[: last + 1] + extra + args[last + 1 :]


@contextlib.contextmanager
def _argv(argv: list[str]) -> Iterator[None]:
    """Temporarily replace ``sys.argv``, which ``hydra.main`` parses."""
    saved = sys.argv
    sys.argv = argv
    try:
        yield
    finally:
        sys.argv = saved


def _check_targets(cfg: DictConfig, registry: FamilyRegistry) -> None:
    """Refuse a config that builds another family's components; note unregistered ones."""
    name = cfg.get("family")
    if not name or name not in registry.families:
        return
    errors, notes = check_component_targets(cfg, registry.families[name], registry.families)
    if errors:
        raise _CliError(errors[0])
    for note in notes:
        print(f"xlm: note: {note}", file=sys.stderr)


def _report(exc: BaseException, cfg: DictConfig | None = None) -> int:
    """Print ``exc`` as one line (its traceback goes to the run's log file; XLM_DEBUG=1 prints it); return the
    exit code (:func:`xlm_core.cli.errors.error_line`)."""
    if os.environ.get("XLM_DEBUG", "").strip().lower() in ("1", "true", "yes"):
        traceback.print_exception(exc, file=sys.stderr)
    line = error_line(exc, cfg)
    log_to_files(line, exc)
    if not getattr(exc, "quiet", False):  # e.g. the DDP ranks other than 0 of a stopped job
        print(f"xlm: {line.label}: {line.text}", file=sys.stderr)
    return line.exit_code


@contextlib.contextmanager
def _full_hydra_errors() -> Iterator[None]:
    """Let Hydra raise its errors (instead of printing a trace and exiting), so they become one line."""
    saved = os.environ.get("HYDRA_FULL_ERROR")
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("HYDRA_FULL_ERROR", None)
        else:
            os.environ["HYDRA_FULL_ERROR"] = saved


def _run_hydra(plan: _Plan, registry: FamilyRegistry) -> int:
    """Compose with Hydra and run the job; returns the exit code."""
    codes: list[int] = []

    def task(cfg: DictConfig) -> None:
        try:
            for note in pop_deprecations(cfg):
                print(f"xlm: warning: {note}", file=sys.stderr)
            if plan.job_type is not None and cfg.job_type != plan.job_type:
                raise _CliError(
                    f"job_type is chosen on the command line, but the config changed it to "
                    f"'{cfg.job_type}'; remove job_type from the experiment config"
                )
            reject_new_top_level_keys([k for k in plan.new_top_level_keys if k in cfg])  # groups leave no key
            if cfg.job_type != DRY_RUN_JOB_TYPE:
                _check_targets(cfg, registry)
            load_job(str(cfg.job_type))(cfg)
        except (Exception, SystemExit) as exc:  # noqa: BLE001 - every failure ends as one line (see _report)
            stopped = type(exc).__name__ == "SIGTERMException"  # Lightning's SystemExit(None) after a SIGTERM
            if isinstance(exc, SystemExit) and exc.code in (None, 0) and not stopped:
                return
            if isinstance(exc, SystemExit) and not stopped:
                exc = UsageError(f"exited with {exc.code}")
            codes.append(_report(exc, cfg))

    entry = hydra.main(version_base="1.3", config_path=f"pkg://{CONFIG_MODULE}", config_name=CONFIG_NAME)(task)
    with contextlib.ExitStack() as stack:
        args = list(plan.extra_overrides)
        if plan.dry_run:  # `name` runs nothing, so it leaves nothing behind either
            tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="xlm-name-", ignore_cleanup_errors=True))
            args += [f"hydra.run.dir={_quote(tmp)}", "hydra.output_subdir=null"]
        stack.enter_context(_argv(["xlm", *_with_overrides(plan.user_args, args)]))
        stack.enter_context(_full_hydra_errors())
        try:
            entry()
        except SystemExit as exc:
            if exc.code not in (None, 0):
                return exc.code if isinstance(exc.code, int) else 1
        except Exception as exc:  # noqa: BLE001 - Hydra's own failures (composition, logging setup): one line too
            return _report(exc)
    return codes[0] if codes else 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``xlm`` console script; returns the process exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    record_invocation(args)
    try:
        registry = get_registry()
        if args[:1] and args[0] in COMMANDS:
            return COMMANDS[args[0]](args[1:], registry)
        plan = _plan(args, registry)
    except UsageError as exc:
        print(f"xlm: error: {exc}", file=sys.stderr)
        return 2
    for note in plan.notes:
        print(f"xlm: note: {note}", file=sys.stderr)
    return _run_hydra(plan, registry)


if __name__ == "__main__":
    sys.exit(main())
