"""Cost and pay-off of the compiled / graph-captured decoding step (``ARLMPredictor(compile_decode=...)``).

For the benchmark model (d_model 256, 4 layers, 4 heads, ffn 1024, vocab 1000) and greedy decoding
of 32-token prompts, in one process per measurement:
  - the one-time cost: the first compiled ``predict`` minus a later one of the same shape
    (torch.compile on the CPU; on CUDA the graph is captured in every call, see below);
  - the cost of a call as ``fixed + per_step * new_tokens`` for the eager and the compiled path,
    fitted from calls of ``--short`` and ``--long`` new tokens (alternating, median of ``--repeats``);
  - break-even numbers of decoded steps: one-time cost / per-step saving, and the per-call fixed
    extra (e.g. CUDA graph capture) / per-step saving.
The one-time cost is measured twice in fresh processes sharing a new inductor cache directory:
"cold" (empty cache, as on a fresh machine) and "warm" (the on-disk cache of the first run).

    python benchmarks/decode_step.py                     # CPU, fp32 and bf16 autocast, batch 1 and 8
    python benchmarks/decode_step.py --device cuda       # GPU: CUDA graphs
    python benchmarks/decode_step.py --json docs/benchmarks/cpu_decode_step.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402
from _common import NoEosTokenizer, Shape, build_ours, sync  # noqa: E402

from xlm_arlm.predictor_arlm import ARLMPredictor  # noqa: E402

BASE = Shape(vocab=1000, d_model=256, layers=4, heads=4, ffn=1024, rotary_dim=64)


def autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    """bf16 autocast (what trainer.precision=bf16-mixed runs generation under) or nothing."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def timed_call(
    predictor: ARLMPredictor,
    prompts: dict[str, torch.Tensor],
    new: int,
    precision: str,
    device: torch.device,
    clock: str = "wall",
) -> tuple[float, torch.Tensor]:
    """Seconds of one ``predict`` of ``new`` tokens (wall, or this process's CPU time) and its ids."""
    now = time.process_time if clock == "cpu" else time.perf_counter
    sync(device)
    start = now()
    with autocast(precision, device):
        ids = predictor.predict(prompts, max_new_tokens=new)["ids"]
    sync(device)
    return now() - start, ids


def child(args: argparse.Namespace) -> dict[str, Any]:
    """Every measurement of one (precision, batch) in this process; returns them as a dict."""
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    model = build_ours(BASE).to(device).eval()
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(1, BASE.vocab, (args.batch, args.prompt_len), generator=g).to(device)
    prompts = {"input_ids": ids, "attention_mask": torch.ones_like(ids, dtype=torch.bool)}
    common = dict(
        max_steps=args.long,
        max_length=None,
        tokenizer=NoEosTokenizer(),
        sampling_method="sample_top_k",
        top_k=1,
        model=model,
    )
    paths = {
        "eager": ARLMPredictor(**common, compile_decode=False),
        "compiled": ARLMPredictor(**common, compile_decode=True),
    }
    eager_first, _ = timed_call(paths["eager"], prompts, args.long, args.precision, device)
    first, _ = timed_call(paths["compiled"], prompts, args.long, args.precision, device)  # wall: compile included
    times: dict[tuple[str, int], list[float]] = {(k, n): [] for k in paths for n in (args.short, args.long)}
    for kind, new in times:  # the short calls have another cache shape: compile it outside the timing
        timed_call(paths[kind], prompts, new, args.precision, device)
    outputs: dict[str, torch.Tensor] = {}
    for r in range(args.repeats):
        order = list(times) if r % 2 == 0 else list(reversed(times))
        for kind, new in order:
            seconds, out = timed_call(paths[kind], prompts, new, args.precision, device, args.clock)
            times[(kind, new)].append(seconds)
            if new == args.long:
                outputs[kind] = out
    med = {key: statistics.median(v) for key, v in times.items()}
    fit = {}
    for kind in paths:
        per_step = (med[(kind, args.long)] - med[(kind, args.short)]) / (args.long - args.short)
        fit[kind] = {"per_step_ms": 1e3 * per_step, "fixed_ms": 1e3 * (med[(kind, args.long)] - per_step * args.long)}
    saving = (fit["eager"]["per_step_ms"] - fit["compiled"]["per_step_ms"]) / 1e3
    one_time = max(first - med[("compiled", args.long)], 0.0)
    extra_fixed = (fit["compiled"]["fixed_ms"] - fit["eager"]["fixed_ms"]) / 1e3
    return {
        "precision": args.precision,
        "batch": args.batch,
        "device": args.device,
        "threads": args.threads,
        "first_eager_call_s": eager_first,
        "first_compiled_call_s": first,
        "one_time_cost_s": one_time,
        "eager": fit["eager"],
        "compiled": fit["compiled"],
        "speedup_per_step": fit["eager"]["per_step_ms"] / fit["compiled"]["per_step_ms"],
        "break_even_steps_one_time": one_time / saving if saving > 0 else float("inf"),
        "break_even_steps_per_call": max(extra_fixed, 0.0) / saving if saving > 0 else float("inf"),
        "same_greedy_ids": bool(torch.equal(outputs["eager"], outputs["compiled"])),
        "greedy_agreement": (outputs["eager"] == outputs["compiled"]).float().mean().item(),
    }


def run_child(args: argparse.Namespace, precision: str, batch: int, cache_dir: str) -> dict[str, Any]:
    """:func:`child` in a fresh interpreter whose inductor cache is ``cache_dir``."""
    cmd = [
        sys.executable,
        os.path.abspath(__file__),
        "--child",
        "--precision",
        precision,
        "--batch",
        str(batch),
        "--device",
        args.device,
        "--threads",
        str(args.threads),
        "--prompt-len",
        str(args.prompt_len),
        "--short",
        str(args.short),
        "--long",
        str(args.long),
        "--repeats",
        str(args.repeats),
        "--clock",
        args.clock,
    ]
    env = dict(os.environ, TORCHINDUCTOR_CACHE_DIR=cache_dir)
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"child {precision} b{batch} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--precisions", default="fp32,bf16", help="comma-separated: fp32, bf16 (autocast)")
    p.add_argument("--batches", default="8,1")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--prompt-len", type=int, default=32)
    p.add_argument("--short", type=int, default=16, help="new tokens of the short calls of the fit")
    p.add_argument("--long", type=int, default=224, help="new tokens of the long calls of the fit")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="cpu: time the steady calls by process CPU time (a shared CPU; use with --threads 1)",
    )
    p.add_argument("--json", default=None, help="also write the results to this JSON file")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--precision", default="fp32", help=argparse.SUPPRESS)
    p.add_argument("--batch", type=int, default=8, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.child:
        print(json.dumps(child(args)))
        return
    rows = []
    load_start = os.getloadavg()
    for precision in args.precisions.split(","):
        for batch in (int(b) for b in args.batches.split(",")):
            with tempfile.TemporaryDirectory(prefix="xlm_inductor_") as cache_dir:
                cold = run_child(args, precision, batch, cache_dir)
                warm = run_child(args, precision, batch, cache_dir)
            warm["cold_one_time_cost_s"] = cold["one_time_cost_s"]
            warm["cold_break_even_steps"] = cold["break_even_steps_one_time"]
            rows.append(warm)
            print(
                f"{precision} b{batch}: eager {warm['eager']['per_step_ms']:.2f} ms/step, compiled "
                f"{warm['compiled']['per_step_ms']:.2f} ({warm['speedup_per_step']:.2f}x); one-time cost cold "
                f"{cold['one_time_cost_s']:.1f} s / warm {warm['one_time_cost_s']:.1f} s; break-even steps cold "
                f"{cold['break_even_steps_one_time']:.0f} / warm {warm['break_even_steps_one_time']:.0f}, "
                f"per call {warm['break_even_steps_per_call']:.1f}; same greedy ids: {warm['same_greedy_ids']}",
                flush=True,
            )
    load_end = os.getloadavg()
    print(
        f"\ndevice {args.device}, threads {args.threads}, torch {torch.__version__}, prompts {args.prompt_len}, "
        f"fit over {args.short} and {args.long} new tokens, median of {args.repeats}, {args.clock} clock; load "
        f"average at start {load_start[0]:.1f}, at end {load_end[0]:.1f} ({os.cpu_count()} CPUs)"
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "load_start": load_start, "load_end": load_end, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
