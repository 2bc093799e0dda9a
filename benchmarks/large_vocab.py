"""Training and generation at the Qwen2 vocabulary (151,936 ids): ours vs Hugging Face GPT-NeoX.

Workloads (one process, side by side, alternating order, median of ``--repeats``; see
docs/performance.md, "The real vocabulary"):
  - training step (forward + backward + fused AdamW) of the tinygsm shapes: the CPU-sized model
    (d_model 256, 4 layers, batch 4 x 512) and GPT-2-small (``rotary_transformer_small_arlm``,
    d_model 768, 12 layers, batch ``--small-batch`` x 512):
      ARLM: ``ARLMLoss`` (fused head + cross-entropy), ``ARLMLoss(fused=False)`` (the plain logits
      path) and HF ``GPTNeoXForCausalLM(labels=...)`` with identical weights;
      MLM: ``MLMLoss`` on our bidirectional model (fused: head on the masked positions only; and
      plain) and HF's masked-LM recipe on the same-size GPT-NeoX (full logits, cross-entropy with
      -100 labels at the unmasked positions), half of the positions masked;
  - greedy generation, 32-token prompts + ``--new-tokens``, batch 8 and 1: ``ARLMPredictor`` vs
    ``model.generate`` (the decode step's head is a d_model x 151,936 product per row);
  - peak memory growth of each training row in a fresh process (CPU: peak RSS, CUDA:
    max_memory_allocated), and at batch 1, 2 (4) to fit memory = a + b x batch and the largest
    batch within ``--budget-gib``;
  - ``--compile``: ``torch.compile``'d training as the harness runs it (``compile=true``: the loss
    gets the compiled model): first-step cost, steady speed, loss equal to eager;
  - ``--profile``: torch.profiler top ops of one training step of each path;
  - ``--bf16-kernels`` (with ``--dtype bf16``): one more ARLM row whose fused head uses the CPU's own
    bf16 product kernels also where they are emulated (by default it then computes fp32 products
    of bf16-rounded operands, see ``xlm_core.modules.linear_cross_entropy``).

    python benchmarks/large_vocab.py --threads 1 --clock cpu --json docs/benchmarks/cpu_large_vocab_fp32.json
    python benchmarks/large_vocab.py --dtype bf16 --threads 1 --clock cpu --json docs/benchmarks/cpu_large_vocab_bf16.json
    python benchmarks/large_vocab.py --tables docs/benchmarks/cpu_large_vocab_fp32.json docs/benchmarks/cpu_large_vocab_bf16.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from _common import (  # noqa: E402
    Shape,
    build_hf,
    build_ours,
    copy_ours_to_hf,
    count_params,
    peak_rss_mib,
    reset_peak_rss,
    sync,
    time_alternating,
)
from compare_hf import DTYPES, amp_context, gen_fn, make_optimizer, make_prompts, make_train_batch, top_ops  # noqa: E402

from xlm_arlm.loss_arlm import ARLMLoss  # noqa: E402
from xlm_mlm.loss_mlm import MLMLoss  # noqa: E402
from xlm_mlm.model_mlm import RotaryTransformerMLMModel  # noqa: E402

QWEN2_VOCAB = 151_936
TINYGSM_CPU = Shape(vocab=QWEN2_VOCAB, d_model=256, layers=4, heads=4, ffn=1024, rotary_dim=64)
GPT2_SMALL = Shape(vocab=QWEN2_VOCAB, d_model=768, layers=12, heads=12, ffn=3072, rotary_dim=64)
SHAPES = {"tinygsm_cpu": TINYGSM_CPU, "gpt2_small": GPT2_SMALL}
MASK_ID = QWEN2_VOCAB - 1  # stands for <|mask|>
ARLM_KINDS = ("ours", "ours_plain", "hf")
MLM_KINDS = ("ours_mlm", "ours_mlm_plain", "hf_mlm")
LABELS = {
    "ours": "ARLMLoss (fused)",
    "ours_plain": "ARLMLoss(fused=False)",
    "hf": "HF GPTNeoX labels=",
    "ours_mlm": "MLMLoss (fused)",
    "ours_mlm_plain": "MLMLoss(fused=False)",
    "hf_mlm": "HF GPTNeoX, MLM loss",
    "ours_bf16_kernels": "ARLMLoss (fused), bf16 kernels",
}


@contextlib.contextmanager
def bf16_kernels() -> Any:
    """The fused head with the CPU's own bf16 product kernels, never fp32 products of bf16-rounded operands."""
    module = sys.modules["xlm_core.modules.linear_cross_entropy"]
    saved = module._emulates_bf16
    module._emulates_bf16 = lambda device_type, dtype: False
    try:
        yield
    finally:
        module._emulates_bf16 = saved


# ----------------------------------------------------------------------------- workloads
def build_mlm(shape: Shape) -> RotaryTransformerMLMModel:
    """Our bidirectional model of ``shape`` (dropout 0), the mask id excluded from its predictions."""
    return RotaryTransformerMLMModel(
        num_embeddings=shape.vocab,
        d_model=shape.d_model,
        num_layers=shape.layers,
        nhead=shape.heads,
        padding_idx=0,
        mask_idx=MASK_ID,
        dim_feedforward=shape.ffn,
        dropout=0.0,
        activation=shape.activation,
        rotary_emb_dim=shape.rotary_dim,
        max_length=shape.max_length,
    )


def make_mlm_batch(shape: Shape, batch: int, seq: int, device: torch.device, rate: float = 0.5) -> dict[str, Any]:
    """Unpadded MLM batch: a ``rate`` share of positions replaced by the mask id; targets are the originals."""
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1, shape.vocab - 1, (batch, seq), generator=g)
    masked = torch.rand(batch, seq, generator=g) < rate
    return {
        "input_ids": ids.masked_fill(masked, MASK_ID).to(device),
        "attention_mask": torch.ones(batch, seq, dtype=torch.bool, device=device),
        "target_ids": ids.to(device),
        "labels": ids.masked_fill(~masked, -100).to(device),  # the HF masked-LM convention
    }


class _NoTokenizer:
    mask_token_id = MASK_ID


def build_kind(kind: str, shape: Shape, device: torch.device) -> torch.nn.Module:
    """The model a training row of ``kind`` trains (seeded)."""
    torch.manual_seed(0)
    if kind.startswith("hf"):
        return build_hf(shape).to(device)
    return (build_mlm(shape) if "mlm" in kind else build_ours(shape)).to(device)


def loss_fn_of(kind: str, model: torch.nn.Module) -> Callable[[dict[str, Any]], torch.Tensor]:
    """The loss call of a training row."""
    if kind == "hf":
        return lambda b: model(input_ids=b["input_ids"], attention_mask=b["attention_mask"], labels=b["input_ids"]).loss
    if kind == "hf_mlm":

        def hf_mlm(b: dict[str, Any]) -> torch.Tensor:
            logits = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits
            return F.cross_entropy(logits.float().view(-1, logits.shape[-1]), b["labels"].view(-1), ignore_index=-100)

        return hf_mlm
    fused = not kind.endswith("_plain")
    if kind == "ours_bf16_kernels":
        arlm_native = ARLMLoss(model)

        def native(b: dict[str, Any]) -> torch.Tensor:
            with bf16_kernels():
                return arlm_native(b)["loss"]

        return native
    if "mlm" in kind:
        mlm = MLMLoss(model, tokenizer=_NoTokenizer(), fused=fused)
        return lambda b: mlm(b)["loss"]
    arlm = ARLMLoss(model, fused=fused)
    return lambda b: arlm(b)["loss"]


def train_step(
    loss_fn: Callable, batch: dict[str, Any], opt: torch.optim.Optimizer, amp: Callable
) -> Callable[[], float]:
    """One forward + backward + AdamW step; returns the loss."""

    def step() -> float:
        with amp():
            loss = loss_fn(batch)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return float(loss.detach())

    return step


def batch_for(kind: str, shape: Shape, batch: int, seq: int, device: torch.device) -> dict[str, Any]:
    return make_mlm_batch(shape, batch, seq, device) if "mlm" in kind else make_train_batch(shape, batch, seq, device)


# ----------------------------------------------------------------------------- memory (child)
def memory_child(args: argparse.Namespace) -> None:
    """Build one model, run two training steps, print the peak memory growth as JSON."""
    shape_name, kind, batch = args.memory_child.split(":")
    shape, device = SHAPES[shape_name], torch.device(args.device)
    data = batch_for(kind, shape, int(batch), args.seq, device)
    import transformers  # noqa: F401  (every child pays the same import before the baseline)

    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated() / 2**20
    else:
        reset_peak_rss()
        before, _ = peak_rss_mib()
    model = build_kind(kind, shape, device).train()
    step = train_step(loss_fn_of(kind, model), data, make_optimizer(model, "fused"), amp_context(args))
    for _ in range(2):  # the second step runs with the optimizer state allocated
        step()
    sync(device)
    peak = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else peak_rss_mib()[1]
    print(json.dumps({"peak_mib": peak - before}))


def measure_memory(args: argparse.Namespace, shape: str, kind: str, batch: int) -> float:
    """Peak memory growth (MiB) of ``kind`` at ``batch`` in a fresh interpreter."""
    cmd = [
        sys.executable,
        os.path.abspath(__file__),
        "--memory-child",
        f"{shape}:{kind}:{batch}",
        "--device",
        args.device,
        "--dtype",
        args.dtype,
        "--threads",
        str(args.threads),
        "--seq",
        str(args.seq),
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"memory child {shape}:{kind}:{batch} failed:\n{out.stderr[-2000:]}")
    value = json.loads(out.stdout.strip().splitlines()[-1])["peak_mib"]
    print(f"  memory {shape} {kind} b{batch}: {value:,.0f} MiB", flush=True)
    return value


def fit_line(points: dict[int, float]) -> tuple[float, float]:
    """Least-squares ``a + b * batch`` through (batch, MiB) points."""
    xs, ys = list(points), list(points.values())
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
    return my - b * mx, b


# ----------------------------------------------------------------------------- sections
def train_rows(args: argparse.Namespace, shape_name: str, batch: int, kinds: tuple[str, ...]) -> list[dict[str, Any]]:
    """Timed training rows of ``kinds`` on one shape (all in this process, alternating)."""
    shape, device = SHAPES[shape_name], torch.device(args.device)
    models = {k: build_kind(k, shape, device).train() for k in kinds}
    if "hf" in models and "ours" in models:
        copy_ours_to_hf(models["ours"], models["hf"])
    for same in ("ours_plain", "ours_bf16_kernels"):
        if same in models:
            models[same].load_state_dict(models["ours"].state_dict())
    if "ours_mlm_plain" in models and "ours_mlm" in models:
        models["ours_mlm_plain"].load_state_dict(models["ours_mlm"].state_dict())
    print(f"{shape_name}: parameters " + ", ".join(f"{k} {count_params(m):,}" for k, m in models.items()), flush=True)
    amp = amp_context(args)
    batches = {k: batch_for(k, shape, batch, args.seq, device) for k in kinds}
    losses = {}
    for k in kinds:  # same weights, same batch: the first losses agree
        with torch.no_grad(), amp():
            losses[k] = float(loss_fn_of(k, models[k])(batches[k]))
    steps = {
        k: train_step(loss_fn_of(k, models[k]), batches[k], make_optimizer(models[k], "fused"), amp) for k in kinds
    }
    secs = time_alternating(steps, args.warmup, args.repeats, device, args.clock)
    tokens = batch * args.seq
    rows = [
        {
            "shape": shape_name,
            "batch": batch,
            "seq": args.seq,
            "kind": k,
            "label": LABELS[k],
            "seconds": secs[k],
            "tok_s": tokens / secs[k],
            "first_loss": losses[k],
        }
        for k in kinds
    ]
    for r in rows:
        print(
            f"  {shape_name} b{batch} {r['label']:<24} {r['tok_s']:8.1f} tok/s  first loss {r['first_loss']:.5f}",
            flush=True,
        )
    if args.profile:
        for k in kinds:
            print(f"\n### profile: training step, {shape_name}, {k}\n{top_ops(steps[k], n=14)}", flush=True)
    return rows


def gen_rows(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Greedy generation, ours vs HF generate, at the tinygsm CPU shape (identical weights)."""
    device = torch.device(args.device)
    torch.manual_seed(0)
    ours, hf = build_ours(TINYGSM_CPU).to(device).eval(), build_hf(TINYGSM_CPU).to(device).eval()
    copy_ours_to_hf(ours, hf)
    amp, rows = amp_context(args), []
    for b in (8, 1):
        prompts = make_prompts(TINYGSM_CPU, b, args.prompt_len, device)
        fns = {
            "ours": gen_fn("ours", ours, prompts, args.new_tokens, amp),
            "hf": gen_fn("hf", hf, prompts, args.new_tokens, amp),
        }
        secs = time_alternating(fns, 1, args.repeats, device, args.clock)
        same = (fns["ours"]() == fns["hf"]()).float().mean().item()
        for k in fns:
            rows.append(
                {"batch": b, "kind": k, "tok_s": b * args.new_tokens / secs[k], "seconds": secs[k], "same_ids": same}
            )
        print(
            f"  gen b{b}: ours {rows[-2]['tok_s']:.1f} tok/s, HF {rows[-1]['tok_s']:.1f} tok/s, same ids {same:.1%}",
            flush=True,
        )
    return rows


def compile_rows(args: argparse.Namespace) -> list[dict[str, Any]]:
    """``compile=true`` as the harness runs it: the loss gets ``torch.compile(model)``."""
    device, amp, rows = torch.device(args.device), amp_context(args), []
    for kind in ("ours", "ours_mlm"):
        eager_model = build_kind(kind, TINYGSM_CPU, device).train()
        comp_model = build_kind(kind, TINYGSM_CPU, device).train()
        comp_model.load_state_dict(eager_model.state_dict())
        batch = batch_for(kind, TINYGSM_CPU, args.batch, args.seq, device)
        steps = {
            "eager": train_step(loss_fn_of(kind, eager_model), batch, make_optimizer(eager_model, "fused"), amp),
            "compiled": train_step(
                loss_fn_of(kind, torch.compile(comp_model)), batch, make_optimizer(comp_model, "fused"), amp
            ),
        }
        losses: dict[str, list[float]] = {"eager": [], "compiled": []}
        first_wall = {}
        for _ in range(2):  # identical weights and batch: the losses of the first two steps must agree
            for name, step in steps.items():
                t0 = time.perf_counter()
                losses[name].append(step())
                first_wall.setdefault(name, time.perf_counter() - t0)
        secs = time_alternating(steps, 0, args.repeats, device, args.clock)
        tokens = args.batch * args.seq
        row = {
            "kind": kind,
            "first_loss_eager": losses["eager"][0],
            "first_loss_compiled": losses["compiled"][0],
            "second_loss_eager": losses["eager"][1],
            "second_loss_compiled": losses["compiled"][1],
            "first_step_wall_s": first_wall["compiled"],
            "first_eager_step_wall_s": first_wall["eager"],
            "eager_tok_s": tokens / secs["eager"],
            "compiled_tok_s": tokens / secs["compiled"],
        }
        rows.append(row)
        print(
            f"  compile {kind}: first step {row['first_step_wall_s']:.1f} s wall (eager {row['first_eager_step_wall_s']:.1f}),"
            f" eager {row['eager_tok_s']:.1f} tok/s, compiled {row['compiled_tok_s']:.1f} tok/s; losses "
            f"{losses['eager']} / {losses['compiled']}",
            flush=True,
        )
    return rows


# ----------------------------------------------------------------------------- tables
def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b else "n/a"


def tables(paths: list[str]) -> str:
    """Markdown tables (docs/performance.md) from one or more JSON results of this script."""
    out: list[str] = []
    runs = [json.load(open(p)) for p in paths]
    out.append(
        "| precision | model, batch x seq | loss path | ours tok/s | baseline | baseline tok/s | ratio | "
        "peak memory growth ours / baseline (MiB) | memory ratio |"
    )
    out.append("|---|---|---|---:|---|---:|---:|---:|---:|")
    for run in runs:
        dtype = run["args"]["dtype"]
        mem = {(m["shape"], m["kind"], m["batch"]): m["peak_mib"] for m in run.get("memory", [])}
        by = {(r["shape"], r["kind"]): r for r in run["train"]}
        for (shape, kind), r in by.items():
            base_kind = "hf_mlm" if "mlm" in kind else "hf"
            if kind == base_kind or (shape, base_kind) not in by:
                continue
            base = by[(shape, base_kind)]
            m_o, m_b = mem.get((shape, kind, r["batch"])), mem.get((shape, base_kind, r["batch"]))
            mem_s = f"{m_o:,.0f} / {m_b:,.0f}" if m_o and m_b else ""
            out.append(
                f"| {dtype} | {shape} {r['batch']} x {r['seq']} | {r['label']} | {r['tok_s']:,.1f} | {base['label']} "
                f"| {base['tok_s']:,.1f} | **{_ratio(r['tok_s'], base['tok_s'])}** | {mem_s} | "
                f"{_ratio(m_o, m_b) if m_o and m_b else ''} |"
            )
    fits = [(run["args"]["dtype"], f) for run in runs for f in run.get("fits", [])]
    if fits:
        out += [
            "",
            "| precision | model | path | peak growth at batch 1 / 2 / 4 (MiB) | fit a + b x batch (MiB) | "
            "largest batch in the budget |",
            "|---|---|---|---:|---:|---:|",
        ]
        for dtype, f in fits:
            points = {int(k): v for k, v in f["points"].items()}
            pts = " / ".join(f"{points[b]:,.0f}" if b in points else "–" for b in (1, 2, 4))
            out.append(
                f"| {dtype} | {f['shape']} | {LABELS[f['kind']]} | {pts} | {f['a']:,.0f} + {f['b']:,.0f} x batch | "
                f"**{f['max_batch']}** ({f['budget_gib']:g} GiB) |"
            )
    gens = [
        (run["args"]["dtype"], run["args"]["new_tokens"], run["args"]["prompt_len"], run.get("generation", []))
        for run in runs
    ]
    if any(g for *_, g in gens):
        out += [
            "",
            "| precision | greedy generation | ours tok/s | HF generate tok/s | ratio | same ids |",
            "|---|---|---:|---:|---:|---:|",
        ]
        for dtype, new, prompt, rows in gens:
            for b in sorted({r["batch"] for r in rows}, reverse=True):
                o = next(r for r in rows if r["batch"] == b and r["kind"] == "ours")
                h = next(r for r in rows if r["batch"] == b and r["kind"] == "hf")
                out.append(
                    f"| {dtype} | b{b}, {prompt} + {new} | {o['tok_s']:,.1f} | {h['tok_s']:,.1f} | "
                    f"**{_ratio(o['tok_s'], h['tok_s'])}** | {o['same_ids']:.0%} |"
                )
    comps = [(run["args"]["dtype"], c) for run in runs for c in run.get("compile", [])]
    if comps:
        out += [
            "",
            "| precision | loss | first compiled step (wall s) | eager tok/s | compiled tok/s | speed-up | "
            "first loss eager / compiled | second loss eager / compiled |",
            "|---|---|---:|---:|---:|---:|---:|---:|",
        ]
        for dtype, c in comps:
            out.append(
                f"| {dtype} | {LABELS[c['kind']]} | {c['first_step_wall_s']:.0f} | {c['eager_tok_s']:,.1f} | "
                f"{c['compiled_tok_s']:,.1f} | **{_ratio(c['compiled_tok_s'], c['eager_tok_s'])}** | "
                f"{c['first_loss_eager']:.6f} / {c['first_loss_compiled']:.6f} | "
                f"{c['second_loss_eager']:.6f} / {c['second_loss_compiled']:.6f} |"
            )
    return "\n".join(out)


# ----------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", choices=sorted(DTYPES), default="fp32")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--clock", choices=("wall", "cpu"), default="wall")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--batch", type=int, default=4, help="batch of the tinygsm CPU shape")
    p.add_argument("--small-batch", type=int, default=1, help="batch of the GPT-2-small rows")
    p.add_argument("--seq", type=int, default=512)
    p.add_argument("--prompt-len", type=int, default=32)
    p.add_argument("--new-tokens", type=int, default=64)
    p.add_argument("--budget-gib", type=float, default=16.0)
    p.add_argument("--fit-batches", default="1,2", help="batches of the memory fit (GPT-2-small, ours and HF)")
    p.add_argument("--no-train", action="store_true")
    p.add_argument("--no-small", action="store_true", help="skip the GPT-2-small rows")
    p.add_argument("--no-mlm", action="store_true")
    p.add_argument(
        "--bf16-kernels",
        action="store_true",
        help="add an ARLM row whose fused head uses the CPU's bf16 "
        "product kernels even where they are emulated (what a CPU with bf16 units runs)",
    )
    p.add_argument("--no-gen", action="store_true")
    p.add_argument("--no-memory", action="store_true")
    p.add_argument("--no-fit", action="store_true")
    p.add_argument("--compile", action="store_true", help="also measure compile=true training")
    p.add_argument("--profile", action="store_true")
    p.add_argument("--json", default=None)
    p.add_argument("--tables", nargs="+", default=None, help="print the markdown tables of these JSON files")
    p.add_argument("--memory-child", default=None, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.tables:
        print(tables(args.tables))
        return
    torch.set_num_threads(args.threads)
    if args.memory_child:
        memory_child(args)
        return
    result: dict[str, Any] = {
        "args": vars(args),
        "load_at_start": os.getloadavg(),
        "torch": torch.__version__,
        "train": [],
        "memory": [],
        "fits": [],
    }
    if not args.no_train:
        arlm_kinds = ARLM_KINDS + (("ours_bf16_kernels",) if args.bf16_kernels else ())
        result["train"] += train_rows(args, "tinygsm_cpu", args.batch, arlm_kinds)
        if not args.no_mlm:
            result["train"] += train_rows(args, "tinygsm_cpu", args.batch, MLM_KINDS)
        if not args.no_small:
            result["train"] += train_rows(args, "gpt2_small", args.small_batch, ("ours", "hf"))
    if not args.no_gen:
        result["generation"] = gen_rows(args)
    if args.compile:
        result["compile"] = compile_rows(args)
    if not args.no_memory:
        kinds = ("ours", "hf") + (("ours_mlm", "hf_mlm") if not args.no_mlm else ())
        for kind in kinds:
            result["memory"].append(
                {
                    "shape": "tinygsm_cpu",
                    "kind": kind,
                    "batch": args.batch,
                    "peak_mib": measure_memory(args, "tinygsm_cpu", kind, args.batch),
                }
            )
    if not args.no_fit:
        batches = [int(b) for b in args.fit_batches.split(",")]
        for kind in ("ours", "hf"):
            points = {b: measure_memory(args, "gpt2_small", kind, b) for b in batches}
            a, b = fit_line(points) if len(points) > 1 else (0.0, points[batches[0]])
            budget = args.budget_gib * 1024
            max_batch = max(0, math.floor((budget - a) / b)) if b > 0 else None
            result["fits"].append(
                {
                    "shape": "gpt2_small",
                    "kind": kind,
                    "points": points,
                    "a": a,
                    "b": b,
                    "budget_gib": args.budget_gib,
                    "max_batch": max_batch,
                }
            )
            print(f"  fit gpt2_small {kind}: {a:,.0f} + {b:,.0f} x batch MiB -> max batch {max_batch}", flush=True)
    result["load_at_end"] = os.getloadavg()
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
        print(tables([args.json]))


if __name__ == "__main__":
    main()
