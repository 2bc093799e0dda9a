#!/usr/bin/env python
"""The MDLM family's measured results (docs/mdlm.md, docs/families.md), end to end, one stage at a time.

Every training and evaluation is an ``xlm`` command, printed before it runs and run one at a time with one
torch thread; each stage writes its numbers to a JSON file under ``--results`` (default ``docs/mdlm``), with
the commands, the CPU seconds they took and the commit they ran at.

Stages (``--stage``, default all in order):

- ``star``: ``star_easy_mdlm_cpu`` trained with each seed (``--seeds``) and evaluated once on the test split
  (5,000 graphs): exact match per seed, mean, std, n (``star_easy_mdlm_cpu.json``).
- ``text``: on the Python standard library corpus, ``pystdlib_arlm_cpu`` and ``pystdlib_mdlm_cpu`` trained
  for the same number of steps (``--text-steps``; the ARLM preset's 6-minute ``trainer.max_time`` cap is lifted
  so both see the same tokens), then each evaluated on the same held-out files: the ARLM's perplexity, the
  MDLM's NELBO perplexity bound (``--time-samples`` times per row), their ratio, for each seed, with mean and
  spread over the seeds in the file (``pystdlib_nelbo_vs_arlm.json``; another ``--text-steps`` than 800:
  ``pystdlib_nelbo_vs_arlm_<N>steps.json``). The samples stage uses every seed's pair, the cost stage the first seed's.
- ``samples``: unconditional samples of both trained models (``--num-samples`` of ``--sample-length`` tokens
  after BOS, temperature 1, no truncation), the MDLM's at 32 / 128 / 1024 steps; each set scored by the
  trained ARLM (generative perplexity; ``xlm_core.tasks.sample_quality``) with its unigram entropy
  (``pystdlib_samples.json``).
- ``unigram``: the held-out perplexity of an add-one smoothed unigram model of the training rows, what a model
  that ignores context reaches (``pystdlib_unigram_baseline.json``).
- ``bytime``: the first seed's MDLM evaluated with every held-out row at one fixed time, for each of ``--times``:
  how much each masking rate contributes to the bound (``pystdlib_nelbo_by_time.json``).
- ``mixing``: the text stage's MDLM row again with ``model.neighbour_mixing=true``, per seed, beside the plain
  MDLM and the ARLM of that seed (``pystdlib_mdlm_neighbour_mixing.json``).
- ``cost``: the MDLM sampler's cost at each step count, cached and plain, with the same seed: network calls,
  seconds, tokens per second, and whether the two returned the same tokens (``pystdlib_sampler_cost.json``).

    python benchmarks/mdlm_results.py --out /tmp/mdlm_results                 # everything (hours on one core)
    python benchmarks/mdlm_results.py --out /tmp/mdlm_results --stage star --seeds 1,2,3
    python benchmarks/mdlm_results.py --out /tmp/mdlm_results --stage text --dry-run
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
XLM = [sys.executable, "-m", "xlm_core.cli"]
ONE_THREAD = ["torch_num_threads=1"]


def commit() -> str:
    """The repository's commit (with ``+dirty`` when the tree has changes)."""
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run(
        ["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True
    ).stdout.strip()
    return head.stdout.strip() + ("+dirty" if dirty else "")


class Runner:
    """Runs ``xlm`` commands one at a time, printing each and adding up their CPU and wall seconds."""

    def __init__(self, dry_run: bool) -> None:
        self.dry_run = dry_run
        self.log: list[dict[str, Any]] = []

    def __call__(self, args: list[str], cwd: Path) -> dict[str, Any]:
        print("$ " + shlex.join(["xlm", *args]), flush=True)
        if self.dry_run:
            return {"command": shlex.join(["xlm", *args]), "cpu_s": 0.0, "wall_s": 0.0}
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.time()
        subprocess.run([*XLM, *args], cwd=cwd, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        entry = {
            "command": shlex.join(["xlm", *args]),
            "wall_s": round(time.time() - started, 1),
            "cpu_s": round(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime, 1),
        }
        self.log.append(entry)
        return entry


def newest_eval(run_dir: Path, split: str) -> dict[str, Any]:
    """metrics.json of the newest evaluation of ``split`` in ``run_dir``."""
    found = sorted((run_dir / "eval").glob(f"*-{split}-step*/metrics.json"))
    if not found:
        raise FileNotFoundError(f"no {split} evaluation in {run_dir / 'eval'}")
    return json.loads(found[-1].read_text())


def summary(values: list[float]) -> dict[str, float | int]:
    """mean, sample std, min, max and n."""
    return {
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        "min": min(values),
        "max": max(values),
        "n": len(values),
    }


def write(results: Path, name: str, data: dict[str, Any]) -> None:
    results.mkdir(parents=True, exist_ok=True)
    (results / name).write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
    print(f"wrote {results / name}", flush=True)


def merged_runs(path: Path, rows: list[dict[str, Any]], at: str) -> list[dict[str, Any]]:
    """``rows`` (tagged with commit ``at``) plus the runs of other seeds already in ``path``, by seed."""
    for row in rows:
        row["commit"] = at
    seeds = {row["seed"] for row in rows}
    earlier = json.loads(path.read_text())["runs"] if path.exists() else []
    return sorted([r for r in earlier if r["seed"] not in seeds] + rows, key=lambda r: r["seed"])


# ---------------------------------------------------------------------------------------------------- star
STAR = "star_easy_mdlm_cpu"
STAR_METRICS = [
    "test/prediction/exact_match",
    "test/prediction/token_accuracy",
    "test/prediction/first_step_accuracy",
    "test/prediction/exact_match_given_first_step",
    "test/lm/nelbo",
]


def stage_star(args: argparse.Namespace, run: Runner) -> None:
    rows, at = [], commit()
    for seed in args.seeds:
        name = f"{STAR}_seed{seed}"
        base = [
            f"experiment={STAR}",
            "family=mdlm",
            f"seed={seed}",
            f"job_name={name}",
            f"paths.root_dir={args.out}",
            *ONE_THREAD,
        ]
        train = run(base, args.out)
        test = run([*base, "job_type=eval", "eval.split=test"], args.out)
        if args.dry_run:
            continue
        metrics = newest_eval(args.out / "outputs" / name, "test")
        val = json.loads((args.out / "outputs" / name / "metrics.json").read_text())
        rows.append(
            {
                "seed": seed,
                **{k: metrics[k] for k in STAR_METRICS if k in metrics},
                "val/prediction/exact_match": val.get("val/prediction/exact_match"),
                "train_steps": val.get("step"),
                "train_cpu_s": train["cpu_s"],
                "train_wall_s": train["wall_s"],
                "commands": [train, test],
            }
        )
    if args.dry_run:
        return
    rows = merged_runs(args.results / "star_easy_mdlm_cpu.json", rows, at)
    write(
        args.results,
        "star_easy_mdlm_cpu.json",
        {
            "experiment": STAR,
            "commit": at,
            "options": {
                "model.absolute_positions": True,
                "model.neighbour_mixing": "bidirectional",
                "predictor.unmasking": "confidence",
                "predictor.temperature": 0.0,
                "noise_schedule": "loglinear",
            },
            "test_graphs": 5000,
            "exact_match": summary([r["test/prediction/exact_match"] for r in rows]),
            "token_accuracy": summary([r["test/prediction/token_accuracy"] for r in rows]),
            "runs": rows,
        },
    )


# ---------------------------------------------------------------------------------------------------- text
def text_runs(args: argparse.Namespace, seed: int | None = None) -> dict[str, dict[str, Any]]:
    """The two pystdlib rows of one seed (default: the first): family, experiment, job name, shared overrides."""
    seed = args.seeds[0] if seed is None else seed
    shared = [
        f"trainer.max_steps={args.text_steps}",
        "trainer.max_time=null",
        f"seed={seed}",
        f"paths.root_dir={args.out}",
        *ONE_THREAD,
    ]
    return {
        family: {
            "family": family,
            "experiment": f"pystdlib_{family}_cpu",
            "job_name": f"pystdlib_{family}_cpu_{args.text_steps}steps_seed{seed}",
            "base": [
                f"experiment=pystdlib_{family}_cpu",
                f"family={family}",
                f"job_name=pystdlib_{family}_cpu_{args.text_steps}steps_seed{seed}",
                *shared,
            ],
        }
        for family in ("arlm", "mdlm")
    }


def scorer_checkpoint(args: argparse.Namespace) -> Path:
    """The first seed's trained ARLM, its best checkpoint (the generative-perplexity scorer)."""
    return args.out / "outputs" / text_runs(args)["arlm"]["job_name"] / "checkpoints" / "best.ckpt"


def text_seed(args: argparse.Namespace, run: Runner, seed: int) -> dict[str, Any] | None:
    """Train and evaluate both pystdlib rows of one seed; their held-out numbers and the ratio."""
    row: dict[str, Any] = {"seed": seed}
    for family, spec in text_runs(args, seed).items():
        train = run(spec["base"], args.out)
        extra = [f"collator.val.time_samples={args.time_samples}"] if family == "mdlm" else []
        test = run([*spec["base"], "job_type=eval", "eval.split=test", *extra], args.out)
        if args.dry_run:
            continue
        metrics = newest_eval(args.out / "outputs" / spec["job_name"], "test")
        key = "test/lm/perplexity" if family == "arlm" else "test/lm/perplexity_bound"
        row[family] = {
            "experiment": spec["experiment"],
            "metric": key,
            "value": metrics[key],
            "nats_per_token": metrics["test/lm/accumulated_loss" if family == "arlm" else "test/lm/nelbo"],
            "step": metrics.get("step"),
            "train_cpu_s": train["cpu_s"],
            "train_wall_s": train["wall_s"],
            "commands": [train, test],
        }
    if args.dry_run:
        return None
    row["ratio_mdlm_bound_over_arlm"] = row["mdlm"]["value"] / row["arlm"]["value"]
    return row


def earlier_text_runs(path: Path) -> list[dict[str, Any]]:
    """The per-seed rows already in a text results file (a file of one seed keeps its rows under family names)."""
    if not path.exists():
        return []
    data = json.loads(path.read_text())
    runs = data["runs"]
    if isinstance(runs, dict):
        ratio = runs["mdlm"]["value"] / runs["arlm"]["value"]
        return [{"seed": data["seed"], **runs, "ratio_mdlm_bound_over_arlm": ratio, "commit": data["commit"]}]
    return runs


def text_file_name(args: argparse.Namespace) -> str:
    """The text stage's results file for ``--text-steps``."""
    return (
        "pystdlib_nelbo_vs_arlm.json"
        if args.text_steps == 800
        else f"pystdlib_nelbo_vs_arlm_{args.text_steps}steps.json"
    )


def stage_text(args: argparse.Namespace, run: Runner) -> None:
    at = commit()
    rows = [text_seed(args, run, seed) for seed in args.seeds]
    if args.dry_run:
        return
    name = text_file_name(args)
    for row in rows:
        row["commit"] = at
    done = {row["seed"] for row in rows}
    runs = sorted(
        [r for r in earlier_text_runs(args.results / name) if r["seed"] not in done] + rows, key=lambda r: r["seed"]
    )
    write(
        args.results,
        name,
        {
            "corpus": "python_stdlib (10 held-out files, test split = the held-out files)",
            "commit": at,
            "steps": args.text_steps,
            "seeds": [r["seed"] for r in runs],
            "tokens_per_step": 8 * 256,
            "mdlm_time_samples": args.time_samples,
            "options": {
                "mdlm": {"noise_schedule": "loglinear", "eps": 1e-3, "collator.val.fixed_masks": True},
                "both": {
                    "d_model": 128,
                    "num_layers": 4,
                    "block_size": 256,
                    "batch": 8,
                    "lr": 2e-3,
                    "trainer.max_time": None,
                    "torch_num_threads": 1,
                },
            },
            "arlm_perplexity": summary([r["arlm"]["value"] for r in runs]),
            "mdlm_perplexity_bound": summary([r["mdlm"]["value"] for r in runs]),
            "arlm_nats_per_token": summary([r["arlm"]["nats_per_token"] for r in runs]),
            "mdlm_nats_per_token": summary([r["mdlm"]["nats_per_token"] for r in runs]),
            "ratio_mdlm_bound_over_arlm": summary([r["ratio_mdlm_bound_over_arlm"] for r in runs]),
            "paper_anchor": {
                "lm1b": {"mdlm_bound": 23.00, "ar": 20.09, "ratio": round(23.00 / 20.09, 2)},
                "owt": {"mdlm_bound": 22.98, "ar": 17.54, "ratio": round(22.98 / 17.54, 2)},
            },
            "runs": runs,
        },
    )


def stage_mixing(args: argparse.Namespace, run: Runner) -> None:
    """The text stage's MDLM row with ``model.neighbour_mixing=true`` (each position mixes in its neighbours'
    embeddings before the first layer), per seed, beside the plain MDLM and the ARLM of the same seed: does
    telling the bidirectional network where its neighbours are speed up learning from context?"""
    at, rows = commit(), []
    text = json.loads((args.results / text_file_name(args)).read_text())
    plain = {r["seed"]: r for r in earlier_text_runs(args.results / text_file_name(args))}
    for seed in args.seeds:
        spec = text_runs(args, seed)["mdlm"]
        name = spec["job_name"] + "_mixing"
        base = [f"job_name={name}" if a.startswith("job_name=") else a for a in spec["base"]]
        base.append("model.neighbour_mixing=true")
        train = run(base, args.out)
        test = run(
            [*base, "job_type=eval", "eval.split=test", f"collator.val.time_samples={args.time_samples}"], args.out
        )
        if args.dry_run:
            continue
        metrics = newest_eval(args.out / "outputs" / name, "test")
        row = {
            "seed": seed,
            "nats_per_token": metrics["test/lm/nelbo"],
            "perplexity_bound": metrics["test/lm/perplexity_bound"],
            "train_cpu_s": train["cpu_s"],
            "commands": [train, test],
        }
        if seed in plain:
            row["plain_mdlm_nats_per_token"] = plain[seed]["mdlm"]["nats_per_token"]
            row["arlm_nats_per_token"] = plain[seed]["arlm"]["nats_per_token"]
            row["ratio_bound_over_arlm"] = row["perplexity_bound"] / plain[seed]["arlm"]["value"]
        rows.append(row)
    if args.dry_run:
        return
    write(
        args.results,
        text_file_name(args).replace("nelbo_vs_arlm", "mdlm_neighbour_mixing"),
        {
            "commit": at,
            "steps": args.text_steps,
            "options": {
                "mdlm": {"model.neighbour_mixing": True, **text["options"]["mdlm"]},
                "both": text["options"]["both"],
            },
            "nats_per_token": summary([r["nats_per_token"] for r in rows]),
            "perplexity_bound": summary([r["perplexity_bound"] for r in rows]),
            "ratio_bound_over_arlm": summary(
                [r["ratio_bound_over_arlm"] for r in rows if "ratio_bound_over_arlm" in r]
            ),
            "runs": rows,
        },
    )


# ---------------------------------------------------------------------------------------------------- samples
def sample_overrides(args: argparse.Namespace) -> list[str]:
    """``--num-samples`` unconditional prompts, the scorer, and plain sampling (temperature 1, no truncation)."""
    prompts = "[" + ",".join(['""'] * args.num_samples) + "]"
    return [
        "job_type=eval",
        "eval.split=val",
        f"sample_prompts={prompts}",
        f"datamodule.eval_batch_size={args.num_samples}",
        f"eval.scorer_checkpoint={scorer_checkpoint(args)}",
    ]


def newest_eval_dir(run_dir: Path, split: str) -> Path:
    """The newest evaluation folder of ``split`` in ``run_dir``."""
    found = sorted((run_dir / "eval").glob(f"*-{split}-step*/metrics.json"))
    if not found:
        raise FileNotFoundError(f"no {split} evaluation in {run_dir / 'eval'}")
    return found[-1].parent


def prediction_rows(eval_dir: Path) -> list[dict[str, Any]]:
    """The rows of an evaluation's val prediction file."""
    (path,) = sorted((eval_dir / "predictions" / "val" / "prediction").glob("step_*.jsonl"))
    return [json.loads(line) for line in path.read_text().splitlines()]


def mdlm_samples(args: argparse.Namespace, run: Runner, steps: int, cache: bool) -> dict[str, Any]:
    """One MDLM sample set at ``steps`` sampler steps: its eval metrics, rows and command."""
    spec = text_runs(args)["mdlm"]
    entry = run(
        [
            *spec["base"],
            *sample_overrides(args),
            f"sample_length={args.sample_length}",
            f"predictor.num_steps={steps}",
            f"predictor.cache={str(cache).lower()}",
            "predictor.temperature=1.0",
            "predictor.top_p=null",
            "predictor.top_k=null",
            "predictor.seed=0",
        ],
        args.out,
    )
    if args.dry_run:
        return {"command": entry}
    eval_dir = newest_eval_dir(args.out / "outputs" / spec["job_name"], "val")
    return {
        "command": entry,
        "metrics": json.loads((eval_dir / "metrics.json").read_text()),
        "rows": prediction_rows(eval_dir),
    }


def samples_of_seed(args: argparse.Namespace, run: Runner) -> list[dict[str, Any]]:
    """The first seed's sample sets: the ARLM's, then the MDLM's at each of ``--sample-steps``, each scored by
    that seed's ARLM."""
    sets: list[dict[str, Any]] = []
    spec = text_runs(args)["arlm"]
    evaluator = (
        "post_hoc_evaluator={_target_:xlm_core.tasks.sample_quality.SampleQuality,_recursive_:false,"
        "scorer_checkpoint:${eval.scorer_checkpoint},tokenizer_config:${tokenizer}}"
    )
    arlm = run(
        [
            *spec["base"],
            *sample_overrides(args),
            f"predictor.max_steps={args.sample_length}",
            "predictor.sampling_method=sample",
            "predictor.temperature=1.0",
            "predictor.seed=0",
            evaluator,
        ],
        args.out,
    )
    if not args.dry_run:
        metrics = newest_eval(args.out / "outputs" / spec["job_name"], "val")
        sets.append(
            {
                "family": "arlm",
                "sampler": "ancestral (left to right)",
                "steps": args.sample_length,
                "gen_ppl": metrics["val/prediction/gen_ppl"],
                "unigram_entropy": metrics["val/prediction/unigram_entropy"],
                "command": arlm,
            }
        )
    for steps in args.sample_steps:
        out = mdlm_samples(args, run, steps, cache=True)
        if args.dry_run:
            continue
        sets.append(
            {
                "family": "mdlm",
                "sampler": "ancestral, cached",
                "steps": steps,
                "gen_ppl": out["metrics"]["val/prediction/gen_ppl"],
                "unigram_entropy": out["metrics"]["val/prediction/unigram_entropy"],
                "network_calls": out["rows"][0]["network_calls"],
                "command": out["command"],
                "first_sample": out["rows"][0]["text"][:300],
            }
        )
    for entry in sets:
        entry["seed"] = args.seeds[0]
    return sets


def stage_samples(args: argparse.Namespace, run: Runner) -> None:
    """Sample sets of every seed's trained pair (``--seeds``), with mean and spread over the seeds per set."""
    at, sets = commit(), []
    for seed in args.seeds:
        sets += samples_of_seed(argparse.Namespace(**{**vars(args), "seeds": [seed]}), run)
    if args.dry_run:
        return
    groups: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for entry in sets:
        groups.setdefault((entry["family"], entry["steps"]), []).append(entry)
    summaries = [
        {
            "family": family,
            "steps": steps,
            "gen_ppl": summary([e["gen_ppl"] for e in group]),
            "unigram_entropy": summary([e["unigram_entropy"] for e in group]),
        }
        for (family, steps), group in groups.items()
    ]
    write(
        args.results,
        "pystdlib_samples.json",
        {
            "commit": at,
            "seeds": args.seeds,
            "scorer": "each seed's pystdlib_arlm_cpu best.ckpt (outputs/pystdlib_arlm_cpu_<steps>steps_seed<seed>)",
            "text_steps": args.text_steps,
            "num_samples": args.num_samples,
            "sample_length": args.sample_length,
            "options": {
                "temperature": 1.0,
                "top_k": None,
                "top_p": None,
                "prompt": "[BOS]",
                "seed": 0,
                "scored": "each sample's tokens up to and including its first EOS, given [BOS]",
            },
            "reference": {"held_out_arlm_perplexity_note": "see pystdlib_nelbo_vs_arlm.json"},
            "summary": summaries,
            "sets": sets,
        },
    )


# ---------------------------------------------------------------------------------------------------- cost
def stage_cost(args: argparse.Namespace, run: Runner) -> None:
    at, rows = commit(), []
    for steps in args.sample_steps:
        pair = {cache: mdlm_samples(args, run, steps, cache) for cache in (True, False)}
        if args.dry_run:
            continue
        for cache, out in pair.items():
            first = out["rows"][0]
            seconds = sum(r["time_taken"] for r in out["rows"])
            rows.append(
                {
                    "steps": steps,
                    "cache": cache,
                    "network_calls": first["network_calls"],
                    "steps_run": first["steps_run"],
                    "seconds": seconds,
                    "tokens_per_second": args.num_samples * args.sample_length / seconds,
                    "command": out["command"],
                }
            )
        rows[-1]["same_tokens_as_cached"] = [r["ids"] for r in pair[True]["rows"]] == [
            r["ids"] for r in pair[False]["rows"]
        ]
    if args.dry_run:
        return
    write(
        args.results,
        "pystdlib_sampler_cost.json",
        {
            "commit": at,
            "num_samples": args.num_samples,
            "sample_length": args.sample_length,
            "batch": args.num_samples,
            "torch_num_threads": 1,
            "note": "seconds: the predictor's own clock over the whole batch (network + sampling)",
            "rows": rows,
        },
    )


# ---------------------------------------------------------------------------------------------------- bytime
def stage_bytime(args: argparse.Namespace, run: Runner) -> None:
    """Where the bound comes from: the first seed's trained MDLM evaluated with every held-out row at one
    time ``t`` (``collator.val.fixed_time``), for each ``t`` of ``--times``. The NELBO is the integral of
    these values over ``t``; for the log-linear schedule each is about the model's mean cross-entropy on the
    masked tokens when a fraction ``t`` of the row is masked."""
    at, spec, rows = commit(), text_runs(args)["mdlm"], []
    for t in args.times:
        entry = run(
            [
                *spec["base"],
                "job_type=eval",
                "eval.split=test",
                f"collator.val.fixed_time={t}",
                "collator.val.time_samples=1",
            ],
            args.out,
        )
        if args.dry_run:
            continue
        metrics = newest_eval(args.out / "outputs" / spec["job_name"], "test")
        rows.append({"t": t, "nats_per_token": metrics["test/lm/nelbo"], "command": entry})
    if args.dry_run:
        return
    ts, values = [r["t"] for r in rows], [r["nats_per_token"] for r in rows]
    trapezoid = sum((ts[i + 1] - ts[i]) * (values[i] + values[i + 1]) / 2 for i in range(len(ts) - 1))
    name = (
        "pystdlib_nelbo_by_time.json"
        if args.text_steps == 800
        else f"pystdlib_nelbo_by_time_{args.text_steps}steps.json"
    )
    write(
        args.results,
        name,
        {
            "commit": at,
            "run": spec["job_name"],
            "steps": args.text_steps,
            "seed": args.seeds[0],
            "schedule": "loglinear",
            "note": "nats_per_token at t: (1/t) * (NLL summed over the masked tokens) / (tokens), every row at t",
            "rows": rows,
            "trapezoid_integral_over_grid": trapezoid,
            "grid": [ts[0], ts[-1]],
        },
    )


# ---------------------------------------------------------------------------------------------------- unigram
def stage_unigram(args: argparse.Namespace, run: Runner) -> None:
    """The held-out perplexity of a unigram model of the training rows (add-one smoothed): what a model that
    ignores context reaches, the reference for the text stage's rows."""
    import math
    from collections import Counter

    import datasets

    (train_dir,) = sorted((args.out / ".xlm_cache" / "pystdlib_train").glob("*/"))
    (val_dir,) = sorted((args.out / ".xlm_cache" / "pystdlib_val").glob("*/"))
    counts: Counter[int] = Counter()
    for row in datasets.load_from_disk(str(train_dir))["input_ids"]:
        counts.update(row)
    vocab = 4096
    total = sum(counts.values()) + vocab
    held_out = [t for row in datasets.load_from_disk(str(val_dir))["input_ids"] for t in row]
    nll = -sum(math.log((counts[t] + 1) / total) for t in held_out) / len(held_out)
    write(
        args.results,
        "pystdlib_unigram_baseline.json",
        {
            "commit": commit(),
            "train_tokens": sum(counts.values()),
            "held_out_tokens": len(held_out),
            "smoothing": "add-one over the 4,096-token vocabulary",
            "nats_per_token": nll,
            "perplexity": math.exp(nll),
            "note": "the packed training rows and held-out rows of the text stage's cache (the same tokenizer)",
        },
    )


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="where the runs go (paths.root_dir)")
    parser.add_argument("--results", type=Path, default=REPO / "docs" / "mdlm", help="where the JSON results go")
    parser.add_argument(
        "--stage", choices=["star", "text", "samples", "cost", "unigram", "bytime", "mixing", "all"], default="all"
    )
    parser.add_argument("--seeds", type=lambda s: [int(x) for x in s.split(",")], default=[1, 2, 3])
    parser.add_argument("--text-steps", type=int, default=800, help="training steps of both pystdlib rows")
    parser.add_argument("--time-samples", type=int, default=4, help="times per held-out row for the MDLM bound")
    parser.add_argument("--num-samples", type=int, default=8)
    parser.add_argument("--sample-length", type=int, default=128)
    parser.add_argument("--sample-steps", type=lambda s: [int(x) for x in s.split(",")], default=[32, 128, 1024])
    parser.add_argument(
        "--times",
        type=lambda s: [float(x) for x in s.split(",")],
        default=[0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9, 1.0],
        help="the bytime stage's fixed times",
    )
    parser.add_argument("--dry-run", action="store_true", help="print the commands only")
    args = parser.parse_args(argv)
    args.out = args.out.resolve()
    args.out.mkdir(parents=True, exist_ok=True)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    run = Runner(args.dry_run)
    stages = {
        "star": stage_star,
        "text": stage_text,
        "samples": stage_samples,
        "cost": stage_cost,
        "unigram": stage_unigram,
        "bytime": stage_bytime,
        "mixing": stage_mixing,
    }
    for name, stage in stages.items():
        if args.stage in (name, "all"):
            stage(args, run)
    return 0


if __name__ == "__main__":
    sys.exit(main())
