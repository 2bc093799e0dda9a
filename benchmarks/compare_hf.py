"""Our ARLM vs Hugging Face ``GPTNeoXForCausalLM`` of the same shape: training, generation, memory.

Both models are built in this process with identical weights (ours copied into HF; the logits are
checked to agree), then timed side by side with alternating order (median of ``--repeats``):
  - training step (forward + backward + AdamW), vocab 1000, d_model 256, 4 layers, 4 heads,
    ffn 1024, batch 8, seq 256: ours with a plain causal call + cross-entropy, ours through
    ARLMLoss (default path and the literal reference 3-D mask), HF with ``labels=``;
  - greedy generation, 32-token prompts + 224 new tokens, batch 8 and 1: ARLMPredictor
    (sample_top_k, top_k=1), eager and with its compiled / CUDA-graph decoding step
    (``compile_decode=True``), against three Hugging Face baselines: the default
    ``model.generate(do_sample=False, use_cache=True)``, the same with a static cache and a
    torch.compile'd forward (HF's fastest documented path), both under the same precision as ours,
    and (in a bf16 run) the default generate in fp32;
  - the reference small model (d_model 768, 12 layers, 12 heads, ffn 3072) training at batch 2;
  - peak memory of each, each measured in a fresh subprocess (see ``--help`` of --no-memory).

    python benchmarks/compare_hf.py                 # CPU, fp32, 2 threads (docs/performance.md)
    python benchmarks/compare_hf.py --quick         # a fast smoke run
    python benchmarks/compare_hf.py --dtype bf16    # CPU, bf16 autocast for both (trainer.precision=bf16-mixed)
    python benchmarks/compare_hf.py --device cuda --dtype bf16   # GPU: adds MFU + SDPA kernels
"""

from __future__ import annotations

import argparse
import contextlib
import json
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
    NoEosTokenizer,
    Shape,
    build_hf,
    build_ours,
    copy_ours_to_hf,
    count_params,
    mfu,
    peak_rss_mib,
    reset_peak_rss,
    sdpa_kernels_used,
    sync,
    time_alternating,
    train_flops_per_token,
)

from xlm_arlm.loss_arlm import ARLMLoss  # noqa: E402
from xlm_arlm.predictor_arlm import ARLMPredictor  # noqa: E402

BASE = Shape(vocab=1000, d_model=256, layers=4, heads=4, ffn=1024, rotary_dim=64)
SMALL = Shape(vocab=1000, d_model=768, layers=12, heads=12, ffn=3072, rotary_dim=64)
TRAIN_KINDS = ("ours", "ours_loss_default", "ours_loss_3d", "hf")
GEN_KINDS = ("ours", "hf")  # the memory rows
GEN_LABELS = {
    "ours": "ARLMPredictor (eager)",
    "ours_compiled": "ARLMPredictor compile_decode",
    "hf": "HF generate",
    "hf_static": "HF static cache+compile",
    "hf_fp32": "HF generate, fp32",
}


# ----------------------------------------------------------------------------- workloads
def make_train_batch(shape: Shape, batch: int, seq: int, device: torch.device, seed: int = 0) -> dict[str, Any]:
    """Unpadded LM batch: target_ids = input_ids shifted left, last position -100 (docs/arlm.md)."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, shape.vocab, (batch, seq), generator=g)
    targets = torch.cat([ids[:, 1:], torch.full((batch, 1), -100)], dim=1)
    return {
        "input_ids": ids.to(device),
        "attention_mask": torch.ones(batch, seq, dtype=torch.bool, device=device),
        "target_ids": targets.to(device),
    }


def make_optimizer(model: torch.nn.Module, impl: str) -> torch.optim.Optimizer:
    """AdamW with the chosen implementation (same one for ours and HF in a run)."""
    kwargs = {"fused": True} if impl == "fused" else {"foreach": impl == "foreach"}
    return torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01, **kwargs)


def train_step_fn(
    kind: str,
    model: torch.nn.Module,
    batch: dict[str, Any],
    opt: torch.optim.Optimizer,
    amp: contextlib.AbstractContextManager | Callable,
) -> Callable[[], None]:
    """One forward + backward + AdamW step of ``kind`` on ``batch``."""
    ids, mask, targets = batch["input_ids"], batch["attention_mask"], batch["target_ids"]
    loss_fn = None
    if kind.startswith("ours_loss"):
        loss_fn = ARLMLoss(model=model, use_3d_mask=kind == "ours_loss_3d")

    def step() -> None:
        with amp():
            if kind == "hf":
                loss = model(input_ids=ids, attention_mask=mask, labels=ids).loss
            elif loss_fn is not None:
                loss = loss_fn(batch)["loss"]
            else:
                logits = model(ids)
                loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=-100)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def make_prompts(shape: Shape, batch: int, prompt_len: int, device: torch.device) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(1, shape.vocab, (batch, prompt_len), generator=g).to(device)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids, dtype=torch.bool)}


def prepare_hf_static(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """HF's fastest documented generation path: a static KV cache and a compiled forward.

    On CUDA ``generate`` compiles the decoding forward itself when the cache is static (its default
    ``CompileConfig``: mode "reduce-overhead", i.e. CUDA graphs); elsewhere the forward is compiled
    here, as the HF docs show for static caches.
    """
    model.generation_config.cache_implementation = "static"
    if device.type != "cuda":
        model.forward = torch.compile(model.forward, fullgraph=True, dynamic=False)
    return model


def gen_fn(
    kind: str,
    model: torch.nn.Module,
    prompts: dict[str, torch.Tensor],
    new_tokens: int,
    amp: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
) -> Callable[[], torch.Tensor]:
    """Greedy generation of exactly ``new_tokens`` tokens per prompt under ``amp``; returns all ids."""
    if kind.startswith("hf"):
        mask = prompts["attention_mask"].long()

        def run_hf() -> torch.Tensor:
            with amp():
                return model.generate(
                    input_ids=prompts["input_ids"],
                    attention_mask=mask,
                    do_sample=False,
                    use_cache=True,
                    max_new_tokens=new_tokens,
                    min_new_tokens=new_tokens,
                    pad_token_id=0,
                    eos_token_id=None,
                )

        return run_hf
    predictor = ARLMPredictor(
        max_steps=new_tokens,
        max_length=None,
        tokenizer=NoEosTokenizer(),
        sampling_method="sample_top_k",
        top_k=1,
        model=model,
        compile_decode=kind == "ours_compiled",
    )

    def run_ours() -> torch.Tensor:
        with amp():
            return predictor.predict(prompts)["ids"]

    return run_ours


def gen_pairs(device: torch.device, batch: int, mixed: bool) -> list[tuple[str, str, float | None]]:
    """(ours path, baseline, target ratio) rows of one generation batch size.

    Targets: >= 2x (CPU, batch 8) or 3x (GPU) HF's default generate as users run it (fp32), and
    >= 1x HF's static cache + compile under the same precision as ours.
    """
    default = "hf_fp32" if mixed else "hf"
    default_target = 3.0 if device.type == "cuda" else (2.0 if batch == 8 else None)
    pairs = [("ours_compiled", default, default_target), ("ours_compiled", "hf_static", 1.0)]
    if mixed:
        pairs.append(("ours_compiled", "hf", None))
    return pairs + [("ours", default, None), ("ours", "hf_static", None)] + ([("ours", "hf", None)] if mixed else [])


def agreement(a: torch.Tensor, b: torch.Tensor, start: int) -> float:
    """Fraction of generated positions (after ``start``) where two greedy outputs hold the same id."""
    return (a[:, start:] == b[:, start:]).float().mean().item()


# ----------------------------------------------------------------------------- memory (child)
def memory_child(args: argparse.Namespace) -> None:
    """Build one model, run one workload and print its peak memory growth as JSON."""
    workload, kind = args.memory_child.split(":")
    device = torch.device(args.device)
    shape = BASE
    if workload == "train":
        data = make_train_batch(shape, args.batch, args.seq, device)
    else:
        data = make_prompts(shape, int(workload[len("gen") :]), args.prompt_len, device)
    import transformers  # noqa: F401  (both children pay the same import cost before the baseline)

    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
    else:
        reset_ok = reset_peak_rss()
        before, _ = peak_rss_mib()
    torch.manual_seed(0)
    model = (build_hf(shape) if kind == "hf" else build_ours(shape)).to(device)
    if workload == "train":
        model.train()
        step = train_step_fn(kind, model, data, make_optimizer(model, args.adamw), amp_context(args))
        for _ in range(3):
            step()
    else:
        gen_fn(kind, model.eval(), data, args.new_tokens, amp_context(args))()
    sync(device)
    if device.type == "cuda":
        peak = (torch.cuda.max_memory_allocated() - before) / 2**20
        what = "torch.cuda.max_memory_allocated growth"
    else:
        _, hwm = peak_rss_mib()
        peak = hwm - before
        what = "peak RSS (VmHWM) growth" + ("" if reset_ok else " (HWM not resettable: upper bound)")
    print(json.dumps({"peak_mib": peak, "what": what}))


def measure_memory(args: argparse.Namespace, workload: str, kind: str) -> dict[str, Any]:
    """Run :func:`memory_child` in a fresh interpreter so allocations of other runs do not count."""
    cmd = [
        sys.executable,
        os.path.abspath(__file__),
        "--memory-child",
        f"{workload}:{kind}",
        "--device",
        args.device,
        "--dtype",
        args.dtype,
        "--threads",
        str(args.threads),
        "--batch",
        str(args.batch),
        "--seq",
        str(args.seq),
        "--prompt-len",
        str(args.prompt_len),
        "--new-tokens",
        str(args.new_tokens),
        "--adamw",
        args.adamw,
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"memory child {workload}:{kind} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------- main
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def amp_context(args: argparse.Namespace) -> Callable[[], contextlib.AbstractContextManager]:
    """Precision of every workload: fp32, or bf16 autocast (what ``trainer.precision=bf16-mixed`` does)."""
    if args.dtype == "bf16":
        return lambda: torch.autocast(args.device.split(":")[0], dtype=torch.bfloat16)
    return contextlib.nullcontext


def top_ops(fn: Callable[[], Any], n: int = 12) -> str:
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
    with profile(activities=acts) as prof:
        fn()
    sort = "self_cuda_time_total" if torch.cuda.is_available() else "self_cpu_time_total"
    return prof.key_averages().table(sort_by=sort, row_limit=n)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument(
        "--dtype",
        choices=sorted(DTYPES),
        default="fp32",
        help="bf16: bf16 autocast (trainer.precision=bf16-mixed) for training and generation",
    )
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (CPU)")
    p.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="cpu: time by process CPU time (a CPU shared with other jobs; use with --threads 1)",
    )
    p.add_argument("--quick", action="store_true", help="fewer repeats, shorter generation, no small model")
    p.add_argument("--warmup", type=int, default=None)
    p.add_argument("--repeats", type=int, default=None)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq", type=int, default=256)
    p.add_argument("--prompt-len", type=int, default=32)
    p.add_argument("--new-tokens", type=int, default=224)
    p.add_argument(
        "--adamw",
        choices=("foreach", "fused", "for-loop"),
        default="fused",
        help="AdamW implementation, the same for both models (fused is HF Trainer's default on torch>=2.8)",
    )
    p.add_argument("--compile", action="store_true", help="also time torch.compile'd training of both")
    p.add_argument(
        "--no-memory",
        action="store_true",
        help="skip the peak-memory subprocesses "
        "(CPU: growth of the peak RSS of a fresh process; CUDA: max_memory_allocated growth)",
    )
    p.add_argument("--no-small", action="store_true", help="skip the d_model 768 / 12-layer model")
    p.add_argument("--no-gen", action="store_true", help="skip the generation rows (training only)")
    p.add_argument("--small-batch", type=int, default=2, help="batch size of the small-model training rows")
    p.add_argument("--profile", action="store_true", help="print torch.profiler top ops per workload")
    p.add_argument("--peak-tflops", type=float, default=989.0, help="device peak for MFU (H100 SXM bf16 dense)")
    p.add_argument("--json", default=None, help="also write the results to this JSON file")
    p.add_argument("--memory-child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.warmup is None:
        args.warmup = 1 if args.quick else 2
    if args.repeats is None:
        args.repeats = 2 if args.quick else 5
    if args.quick:
        args.new_tokens = min(args.new_tokens, 32)
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.memory_child:
        memory_child(args)
        return
    device = torch.device(args.device)
    amp = amp_context(args)
    args.load_at_start = os.getloadavg()
    rows: list[dict[str, Any]] = []
    gen_info: list[dict[str, Any]] = []

    # --- build and check equivalence ------------------------------------------------------
    torch.manual_seed(0)
    ours = build_ours(BASE).to(device)
    hf = build_hf(BASE).to(device)
    copy_ours_to_hf(ours, hf)
    n_ours, n_hf = count_params(ours), count_params(hf)
    print(f"parameters: ours {n_ours:,}  HF GPTNeoX {n_hf:,}  ({'match' if n_ours == n_hf else 'MISMATCH'})")
    if n_ours != n_hf:
        raise SystemExit("parameter counts differ: the HF config does not mirror our model")
    batch = make_train_batch(BASE, args.batch, args.seq, device)
    with torch.no_grad():
        diff = (ours.eval()(batch["input_ids"]) - hf.eval()(input_ids=batch["input_ids"]).logits).abs().max()
    print(f"max |logits_ours - logits_hf| with copied weights: {diff.item():.2e}")

    # --- training, base shape -------------------------------------------------------------
    ours.train(), hf.train()
    opt_ours, opt_hf = make_optimizer(ours, args.adamw), make_optimizer(hf, args.adamw)
    steps = {
        k: train_step_fn(k, hf if k == "hf" else ours, batch, opt_hf if k == "hf" else opt_ours, amp)
        for k in TRAIN_KINDS
    }
    if args.dtype != "fp32":  # what switching precision gains over HF as most users run it
        steps["hf_fp32"] = train_step_fn("hf", hf, batch, opt_hf, contextlib.nullcontext)
    if args.compile:
        ours_c, hf_c = torch.compile(ours), torch.compile(hf)
        steps["ours_compiled"] = train_step_fn("ours", ours_c, batch, opt_ours, amp)
        steps["hf_compiled"] = train_step_fn("hf", hf_c, batch, opt_hf, amp)
    secs = time_alternating(steps, args.warmup, args.repeats, device, args.clock)
    tokens = args.batch * args.seq
    flops = train_flops_per_token(BASE, args.seq)
    hf_tps = tokens / secs["hf"]
    label = f"train d256 L4 b{args.batch} s{args.seq}"
    for kind, target in (("ours", 1.2), ("ours_loss_default", None), ("ours_loss_3d", None)):
        rows.append(
            {
                "workload": label,
                "ours": kind,
                "baseline": "HF",
                "ours_tok_s": tokens / secs[kind],
                "hf_tok_s": hf_tps,
                "target": target,
                "mfu_ours": mfu(tokens / secs[kind], flops, args.peak_tflops),
                "mfu_hf": mfu(hf_tps, flops, args.peak_tflops),
            }
        )
    if "hf_fp32" in secs:
        rows.append(
            {
                "workload": label,
                "ours": "ours",
                "baseline": "HF fp32",
                "ours_tok_s": tokens / secs["ours"],
                "hf_tok_s": tokens / secs["hf_fp32"],
                "target": None,
            }
        )
    if args.compile:
        rows.append(
            {
                "workload": label + " compiled",
                "ours": "ours (torch.compile)",
                "baseline": "HF (torch.compile)",
                "ours_tok_s": tokens / secs["ours_compiled"],
                "hf_tok_s": tokens / secs["hf_compiled"],
                "target": None,
            }
        )
    if args.profile:
        for kind in ("ours", "ours_loss_3d", "hf"):
            print(f"\n### profile: training step, {kind}\n{top_ops(steps[kind])}")
    kernels = {k: sdpa_kernels_used(steps[k]) for k in ("ours", "ours_loss_default", "ours_loss_3d", "hf")}
    del steps, opt_ours, opt_hf

    # --- generation -----------------------------------------------------------------------
    copy_ours_to_hf(ours, hf)  # training moved them apart; generate from identical weights
    hf_static = prepare_hf_static(build_hf(BASE).to(device), device)
    copy_ours_to_hf(ours, hf_static)
    gen_ours, gen_hf = ours.eval(), hf.eval()
    models = {
        "ours": gen_ours,
        "ours_compiled": gen_ours,
        "hf": gen_hf,
        "hf_static": hf_static.eval(),
        "hf_fp32": gen_hf,
    }
    mixed = args.dtype != "fp32"
    for gen_batch in () if args.no_gen else (8, 1):
        prompts = make_prompts(BASE, gen_batch, args.prompt_len, device)
        kinds = ["ours", "ours_compiled", "hf", "hf_static"] + (["hf_fp32"] if mixed else [])
        fns = {
            k: gen_fn(k, models[k], prompts, args.new_tokens, contextlib.nullcontext if k == "hf_fp32" else amp)
            for k in kinds
        }
        started = {}
        outs = {}
        for k in kinds:  # first calls: compilation, and the ids each path generates
            t0 = time.perf_counter()
            outs[k] = fns[k]()
            sync(device)
            started[k] = time.perf_counter() - t0
        shapes = {k: tuple(v.shape) for k, v in outs.items()}
        if len(set(shapes.values())) != 1:
            raise SystemExit(f"generation shapes differ: {shapes}")
        p = args.prompt_len
        notes = [
            f"compiled vs eager ids: {agreement(outs['ours_compiled'], outs['ours'], p):.1%}",
            f"ours vs HF ids: {agreement(outs['ours'], outs['hf'], p):.1%}",
        ]
        if mixed:
            fp32_ids = gen_fn("ours", gen_ours, prompts, args.new_tokens)()
            notes.append(
                f"{args.dtype} vs fp32 ids: eager {agreement(outs['ours'], fp32_ids, p):.1%}, "
                f"compiled {agreement(outs['ours_compiled'], fp32_ids, p):.1%}"
            )
        secs = time_alternating(fns, max(args.warmup - 1, 0), args.repeats, device, args.clock)
        new = gen_batch * args.new_tokens
        workload = f"greedy gen b{gen_batch} p{args.prompt_len}+{args.new_tokens}"
        for ours_kind, base, target in gen_pairs(device, gen_batch, mixed):
            label = GEN_LABELS[base] + (f", {args.dtype}" if base in ("hf", "hf_static") and mixed else "")
            rows.append(
                {
                    "workload": workload,
                    "ours": GEN_LABELS[ours_kind],
                    "baseline": label,
                    "ours_tok_s": new / secs[ours_kind],
                    "hf_tok_s": new / secs[base],
                    "target": target,
                }
            )
        rows[-1]["note"] = "; ".join(notes)
        first_call = {k: round(v, 2) for k, v in started.items()}
        print(f"{workload}: first-call seconds (compile/capture included) {first_call}; " + "; ".join(notes))
        gen_info.append(
            {"workload": workload, "first_call_s": first_call, "agreement_notes": notes, "seconds_per_call": secs}
        )
        if args.profile:
            for kind in kinds:
                print(f"\n### profile: generation b{gen_batch}, {kind}\n{top_ops(fns[kind])}")

    # --- the reference small model -----------------------------------------------------------
    if not (args.quick or args.no_small):
        del ours, hf, gen_ours, gen_hf, hf_static, models
        torch.manual_seed(0)
        s_ours, s_hf = build_ours(SMALL).to(device), build_hf(SMALL).to(device)
        copy_ours_to_hf(s_ours, s_hf)
        print(f"small model parameters: ours {count_params(s_ours):,}  HF {count_params(s_hf):,}")
        sb, ss = args.small_batch, args.seq
        sbatch = make_train_batch(SMALL, sb, ss, device)
        o1, o2 = make_optimizer(s_ours, args.adamw), make_optimizer(s_hf, args.adamw)
        fns = {"ours": train_step_fn("ours", s_ours, sbatch, o1, amp), "hf": train_step_fn("hf", s_hf, sbatch, o2, amp)}
        secs = time_alternating(fns, 1, max(3, args.repeats // 2 + 1), device, args.clock)
        sflops = train_flops_per_token(SMALL, ss)
        rows.append(
            {
                "workload": f"train d768 L12 b{sb} s{ss}",
                "ours": "ours",
                "baseline": "HF",
                "ours_tok_s": sb * ss / secs["ours"],
                "hf_tok_s": sb * ss / secs["hf"],
                "target": None,
                "mfu_ours": mfu(sb * ss / secs["ours"], sflops, args.peak_tflops),
                "mfu_hf": mfu(sb * ss / secs["hf"], sflops, args.peak_tflops),
            }
        )

    # --- memory ---------------------------------------------------------------------------
    mem_rows: list[dict[str, Any]] = []
    if not args.no_memory:
        for workload, kinds in (("train", ("ours", "ours_loss_default", "ours_loss_3d", "hf")),) + (
            () if args.no_gen else (("gen8", GEN_KINDS),)
        ):
            for kind in kinds:
                m = measure_memory(args, workload, kind)
                mem_rows.append({"workload": workload, "kind": kind, **m})

    report(args, rows, mem_rows, kernels, diff.item(), gen_info)


def report(
    args: argparse.Namespace,
    rows: list[dict[str, Any]],
    mem_rows: list[dict[str, Any]],
    kernels: dict[str, list[str]],
    diff: float,
    gen_info: list[dict[str, Any]],
) -> None:
    """Print the comparison table (ratios ours / baseline), memory, SDPA kernels; optionally write JSON."""
    print(
        f"\ndevice {args.device}, dtype {args.dtype}, threads {args.threads}, torch {torch.__version__}, "
        f"AdamW {args.adamw}, warmup {args.warmup}, median of {args.repeats}, {args.clock} clock"
    )
    args.load_at_end = os.getloadavg()
    print(
        "load average (1, 5, 15 min) at start {:.1f} {:.1f} {:.1f}, at end {:.1f} {:.1f} {:.1f} ({} CPUs)".format(
            *args.load_at_start, *args.load_at_end, os.cpu_count()
        )
    )
    head = (
        f"| {'workload':<26} | {'ours path':<28} | {'baseline':<30} | {'ours tok/s':>10} | {'base tok/s':>10} "
        f"| {'ratio':>7} | target   |"
    )
    print(head)
    print("|" + "|".join("-" * (len(c)) for c in head.split("|")[1:-1]) + "|")
    for r in rows:
        ratio = r["ours_tok_s"] / r["hf_tok_s"]
        r["ratio"] = ratio
        tgt = f">={r['target']:.1f} {'ok' if ratio >= r['target'] else 'MISS'}" if r["target"] else ""
        print(
            f"| {r['workload']:<26} | {r['ours']:<28} | {r['baseline']:<30} | {r['ours_tok_s']:>10,.0f} "
            f"| {r['hf_tok_s']:>10,.0f} | {ratio:>6.2f}x | {tgt:<8} |" + (f" {r['note']}" if r.get("note") else "")
        )
    if args.device.startswith("cuda"):
        print(f"\nMFU (model FLOPs / peak {args.peak_tflops:.0f} TFLOP/s):")
        for r in rows:
            if "mfu_ours" in r:
                print(f"  {r['workload']:<30} {r['ours']:<20} ours {r['mfu_ours']:.1%}  HF {r['mfu_hf']:.1%}")
    if mem_rows:
        print(f"\npeak memory, MiB ({mem_rows[0]['what']}, fresh process per row):")
        by = {(m["workload"], m["kind"]): m["peak_mib"] for m in mem_rows}
        for m in mem_rows:
            hf_m = by[(m["workload"], "hf")]
            print(f"  {m['workload']:<6} {m['kind']:<14} {m['peak_mib']:8.1f}   ours/HF {m['peak_mib'] / hf_m:.2f}")
    print("\nSDPA kernels in one training step:")
    for k, names in kernels.items():
        print(f"  {k:<18} {', '.join(names) or '(none)'}")
    print(f"max |logits diff| ours vs HF (copied weights): {diff:.2e}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {"args": vars(args), "rows": rows, "generation": gen_info, "memory": mem_rows, "kernels": kernels},
                f,
                indent=1,
            )


if __name__ == "__main__":
    main()
