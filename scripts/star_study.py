#!/usr/bin/env python
"""The star-graph study (docs/families.md, "The star-graph study"): which of answer order, architecture
options and family decides path-star at CPU size, measured over seeds with matched budgets.

Every step is an ``xlm`` command, printed before it runs (``--dry-run`` prints them only). Each training
has its own folder ``OUT/<family>/<overrides>`` (``hydra.sweep.subdir=${hydra.job.override_dirname}``).
The rows (``ROWS``): ARLM target_order forward | reverse, each plain and with both architecture options
(learned absolute positions + causal neighbour mixing); MLM plain, absolute positions, (bidirectional)
neighbour mixing, both; MDLM plain and both, at the shared budget of 6,000 steps (``BUDGET``).

1. ``sweep``: every row at every learning rate, with the first seed only.
2. ``select``: ``xlm report OUT/<family> --select optimizer.lr --by val/prediction/exact_match``: each
   row's learning rate, chosen on the validation split (1,000 graphs) of the first seed's runs; written
   to OUT/<family>/selection.json.
3. ``seeds``: every row at its chosen rate with the other seeds (the first seed's run is reused).
4. ``test``: each row at its chosen rate evaluated once on the test split (5,000 graphs), every seed
   (``job_type=eval eval.split=test``, in the same folders, so each lands in its training run).
5. ``orders``: the MLM row and the MDLM row with the best validation exact match, evaluated on the test
   split with every unmasking order (``predictor.unmasking_order``; evaluation only).
6. ``report``: ``xlm report`` over the chosen runs of every family into OUT/report (Markdown, CSV, JSON,
   plot: mean, std, min-max and n per row).

``--parallel N`` runs N trainings at once (one thread each). Rerunning a stage is safe: finished runs
resume at their last step and stop, evaluations add a new eval/ folder.

    python scripts/star_study.py outputs/star_study                      # all stages, 5 seeds, 3 rates
    python scripts/star_study.py outputs/star_study --parallel 2         # two trainings at a time
    python scripts/star_study.py outputs/star_study --dry-run            # print the commands
    python scripts/star_study.py /tmp/toy --seeds 1,2 --lrs 1e-3,2e-3 --toy   # seconds-long runs (the slow test)
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

EXPERIMENTS = {"arlm": "star_easy_arlm_cpu", "mlm": "star_easy_mlm_cpu", "mdlm": "star_easy_mdlm_cpu"}
# What a family's preset changes from the shared budget (6,000 steps, validation every 1,500), put back for
# the study: star_easy_mdlm_cpu trains 3,500 steps, to fit in 10 minutes on one core.
BUDGET = {"mdlm": ["trainer.max_steps=6000", "trainer.val_check_interval=1500", "checkpointing.every_n_steps=1500"]}
# The rows of each family (besides seed and optimizer.lr): the overrides that make each one, as Hydra reads them.
_ARLM_OPTIONS = {
    "plain": ["model.absolute_positions=false", "model.neighbour_mixing=false"],
    "options": ["model.absolute_positions=true", "model.neighbour_mixing=causal"],
}
ROWS: dict[str, list[list[str]]] = {
    "arlm": [[f"target_order={order}", *opts] for order in ("forward", "reverse") for opts in _ARLM_OPTIONS.values()],
    "mlm": [
        [f"model.absolute_positions={a}", f"model.neighbour_mixing={m}"]
        for a, m in (("false", "false"), ("true", "false"), ("false", "true"), ("true", "true"))
    ],
    "mdlm": [
        [f"model.absolute_positions={a}", f"model.neighbour_mixing={m}"]
        for a, m in (("false", "false"), ("true", "true"))
    ],
}
ROW_KEYS = {family: {o.split("=", 1)[0] for row in rows for o in row} for family, rows in ROWS.items()}
UNMASKING_ORDERS = ["confidence", "left_to_right", "right_to_left", "random"]
ORDER_FAMILIES = ("mlm", "mdlm")  # the families whose predictor takes predictor.unmasking_order
SELECT_METRIC = "val/prediction/exact_match"
REPORT_METRICS = [
    "test/prediction/exact_match",
    "test/prediction/token_accuracy",
    "test/prediction/first_step_accuracy",
    "test/prediction/exact_match_given_first_step",
    "val/prediction/exact_match",
]
# Overrides that do not name a run (so train, test and order evaluations share one folder per run).
NOT_IN_FOLDER_NAME = [
    "experiment",
    "family",
    "job_name",
    "job_type",
    "eval.split",
    "eval.checkpoint_path",
    "predictor.unmasking_order",
    "torch_num_threads",
    "paths.run_dir",
]
# --toy: the same commands on a seconds-long budget (tiny model, 64-graph debug splits, 4 steps).
TOY = [
    "debug=overfit",
    "model.d_model=32",
    "model.dim_feedforward=64",
    "model.rotary_emb_dim=8",
    "trainer.max_steps=4",
    "trainer.val_check_interval=2",
    "checkpointing.every_n_steps=2",
    "lr_scheduler.num_warmup_steps=1",
]


def sweep_args(args: argparse.Namespace, family: str) -> list[str]:
    """The Hydra settings that give each job the folder OUT/<family>/<its overrides> (Hydra writes the values
    in its own form: ``model.absolute_positions=False,optimizer.lr=0.001,seed=1,...``). Overrides given to
    every command (``extra``) do not tell runs apart, so they stay out of the name."""
    exclude = [*NOT_IN_FOLDER_NAME, *(e.split("=", 1)[0].lstrip("+~") for e in args.extra)]
    return [
        f"hydra.sweep.dir={args.out / family}",
        "hydra.sweep.subdir=${hydra.job.override_dirname}",
        f"hydra.job.config.override_dirname.exclude_keys=[{','.join(exclude)}]",
    ]


def budget_args(args: argparse.Namespace, family: str) -> list[str]:
    """``BUDGET[family]``, except in toy runs (which set their own few steps)."""
    return [] if args.toy else BUDGET.get(family, [])


def run(cmd: list[str], dry: bool) -> None:
    print("$ " + " ".join(shlex.quote(c) for c in cmd), flush=True)
    if not dry:
        subprocess.run(cmd, check=True)


def _train_all(args: argparse.Namespace, jobs: list[tuple[str, list[str], str, str]]) -> None:
    """Train (family, row overrides, seed, learning rate) jobs, ``args.parallel`` at a time."""
    commands = [
        [
            args.xlm,
            "-m",
            f"experiment={EXPERIMENTS[family]}",
            f"seed={seed}",
            f"optimizer.lr={lr}",
            *row,
            *budget_args(args, family),
            *sweep_args(args, family),
            *args.extra,
        ]
        for family, row, seed, lr in jobs
    ]
    with ThreadPoolExecutor(max(args.parallel, 1)) as pool:
        for future in [pool.submit(run, cmd, args.dry_run) for cmd in commands]:
            future.result()


def sweep(args: argparse.Namespace) -> None:
    for family in args.families:  # fill the data cache once, before parallel jobs would race to build it
        run([args.xlm, f"experiment={EXPERIMENTS[family]}", "job_type=prepare_data", *args.extra], args.dry_run)
    _train_all(
        args, [(family, row, args.seeds[0], lr) for family in args.families for row in ROWS[family] for lr in args.lrs]
    )


def seeds(args: argparse.Namespace) -> None:
    _train_all(
        args,
        [
            (family, row["overrides"], seed, row["lr"])
            for family, rows in load_selection(args).items()
            for row in rows
            for seed in args.seeds[1:]
        ],
    )


def report(args: argparse.Namespace, paths: list[str], out: Path, *extra: str) -> dict[str, Any] | None:
    run([args.xlm, "report", *paths, "--out", str(out), *extra], args.dry_run)
    return None if args.dry_run else json.loads((out / "report.json").read_text())


def normal(value: Any) -> Any:
    """A setting as a comparable value: 'False'/'false' -> False, '1e-3'/'0.001' -> 0.001, else as it is."""
    if isinstance(value, str):
        if value.lower() in ("true", "false"):
            return value.lower() == "true"
        try:
            return float(value)
        except ValueError:
            return value
    return float(value) if isinstance(value, int) and not isinstance(value, bool) else value


def as_override(value: Any, choices: list[str]) -> str:
    """A config value in the sweep's own spelling (0.001 -> '1e-3' when the sweep said 1e-3), for readable commands."""
    for choice in choices:
        if normal(choice) == normal(value):
            return choice
    return str(value).lower() if isinstance(value, bool) else str(value)


def select(args: argparse.Namespace) -> dict[str, list[dict[str, Any]]]:
    """Each row's learning rate, chosen on validation exact match (ties: the first rate listed)."""
    chosen: dict[str, list[dict[str, Any]]] = {}
    for family in args.families:
        first_seed = sorted(str(p) for p in (args.out / family).glob(f"*seed={args.seeds[0]}*") if p.is_dir())
        data = report(
            args,
            first_seed or [str(args.out / family)],
            args.out / family / "report",
            "--metrics",
            SELECT_METRIC,
            "--select",
            "optimizer.lr",
            "--by",
            SELECT_METRIC,
        )
        if data is None:
            chosen[family] = [{"overrides": ["<row>"], "lr": "<chosen>", "val": None}]
            continue
        rows = []
        for row in data["selection"]["rows"]:
            overrides = _row_of(family, row["settings"])
            rows.append({"overrides": overrides, "lr": as_override(row["optimizer.lr"], args.lrs), "val": row["mean"]})
        chosen[family] = rows
        if not args.dry_run:  # one file per family: checkouts that run other families do not overwrite it
            (args.out / family / "selection.json").write_text(json.dumps(rows, indent=2) + "\n")
    return chosen


def _row_of(family: str, settings: dict[str, Any]) -> list[str]:
    """The row of ``ROWS`` a report row's settings describe (the report shows keys that vary together once)."""
    shown = {k: normal(v) for k, v in settings.items() if k in ROW_KEYS[family]}
    matches = [
        row
        for row in ROWS[family]
        if all(normal(o.split("=", 1)[1]) == shown[k] for o in row if (k := o.split("=", 1)[0]) in shown)
    ]
    if len(matches) != 1:
        raise SystemExit(f"{family}: the report row {settings} matches {len(matches)} study rows; expected one")
    return matches[0]


def load_selection(args: argparse.Namespace) -> dict[str, list[dict[str, Any]]]:
    """The select stage's choice for each family (OUT/FAMILY/selection.json, or the family's entry in the
    OUT/selection.json that earlier versions of this script wrote; placeholders in a dry run)."""
    legacy = args.out / "selection.json"
    earlier = json.loads(legacy.read_text()) if legacy.exists() else {}
    chosen: dict[str, list[dict[str, Any]]] = {}
    for family in args.families:
        path = args.out / family / "selection.json"
        if path.exists():
            chosen[family] = json.loads(path.read_text())
        elif family in earlier:
            chosen[family] = earlier[family]
        elif args.dry_run:
            chosen[family] = [{"overrides": ["<row>"], "lr": "<chosen>", "val": None}]
        else:
            raise SystemExit(f"{path} does not exist: run the select stage for {family} first (--stage select)")
    return chosen


def evaluate(args: argparse.Namespace, family: str, row: dict[str, Any], *more: str) -> None:
    run(
        [
            args.xlm,
            "-m",
            f"experiment={EXPERIMENTS[family]}",
            "job_type=eval",
            "eval.split=test",
            f"seed={','.join(args.seeds)}",
            f"optimizer.lr={row['lr']}",
            *row["overrides"],
            *budget_args(args, family),
            *more,
            *sweep_args(args, family),
            *args.extra,
        ],
        args.dry_run,
    )


def test(args: argparse.Namespace) -> None:
    for family, rows in load_selection(args).items():
        for row in rows:
            evaluate(args, family, row)


def orders(args: argparse.Namespace) -> None:
    selection = load_selection(args)
    for family in ORDER_FAMILIES:
        rows = selection.get(family) or []
        if rows:
            best = max(rows, key=lambda r: r["val"] if r["val"] is not None else -1.0)
            evaluate(args, family, best, f"predictor.unmasking_order={','.join(UNMASKING_ORDERS)}")


def run_settings(folder: Path) -> dict[str, Any]:
    """The overrides a job folder is named by (``k=v,k=v``), as comparable values."""
    pairs = [part.split("=", 1) for part in folder.name.split(",") if "=" in part]
    return {k: normal(v) for k, v in pairs}


def final_report(args: argparse.Namespace) -> None:
    """xlm report over the chosen runs only (the test split was scored for those), found by folder name, so a
    chosen run that crashed is listed in the report too."""
    paths = []
    for family, rows in load_selection(args).items():
        folders = sorted(p for p in (args.out / family).iterdir() if p.is_dir()) if not args.dry_run else []
        for row in rows if not args.dry_run else []:
            wanted = {
                "optimizer.lr": normal(row["lr"]),
                **{k: normal(v) for k, v in (o.split("=", 1) for o in row["overrides"])},
            }
            for folder in folders:
                settings = run_settings(folder)
                if all(settings.get(k) == v for k, v in wanted.items()) and settings.get("seed") in {
                    normal(s) for s in args.seeds
                }:
                    paths.append(str(folder))
        if args.dry_run:
            paths.append(str(args.out / family / "<chosen runs>"))
    report(args, paths, args.out / "report", "--metrics", ",".join(REPORT_METRICS))


STAGES = {"sweep": sweep, "select": select, "seeds": seeds, "test": test, "orders": orders, "report": final_report}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("out", type=Path, help="the study's folder (one sweep folder per family inside)")
    parser.add_argument("--stage", choices=[*STAGES, "all"], default="all")
    parser.add_argument("--families", default="arlm,mlm,mdlm", type=lambda s: s.split(","))
    parser.add_argument(
        "--seeds",
        default="1,2,3,4,5",
        type=lambda s: s.split(","),
        help="the first one sweeps the learning rates, the others train at the chosen rate",
    )
    parser.add_argument(
        "--lrs",
        default="5e-4,1e-3,2e-3",
        type=lambda s: s.split(","),
        help="learning rates (written as they should appear in folder names)",
    )
    parser.add_argument("--parallel", type=int, default=1, help="this many trainings at once (one thread each)")
    parser.add_argument("--toy", action="store_true", help="seconds-long runs of the same commands (tests)")
    parser.add_argument("--xlm", default=str(Path(sys.executable).with_name("xlm")), help="the xlm program")
    parser.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    parser.add_argument("extra", nargs="*", help="more overrides for every command, e.g. paths.root_dir=/data")
    args = parser.parse_args(argv)
    args.extra = [*(TOY if args.toy else []), *args.extra]
    args.out = args.out.resolve()
    for stage in STAGES if args.stage == "all" else [args.stage]:
        STAGES[stage](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
