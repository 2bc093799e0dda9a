"""Shared pieces of the benchmarks: model builders (ours and the matching GPT-NeoX), weight copy,
timing, peak-memory probes and FLOP counts.

The Hugging Face side is ``GPTNeoXForCausalLM`` configured to be the same network as
``RotaryTransformerARLMModel`` by the package's exporter (``xlm_arlm/export_hf.py``, mapping in
docs/export.md): pre-LN LayerNorm with bias, rotate-half RoPE on the first ``rotary_emb_dim``
channels of each head, sequential residual, untied head, MLP with biases, bias-free attention
projections, SDPA attention.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from xlm_arlm.export_hf import copy_weights_to_neox, neox_config
from xlm_arlm.model_arlm import RotaryTransformerARLMModel

__all__ = [
    "Shape",
    "build_ours",
    "build_hf",
    "copy_ours_to_hf",
    "count_params",
    "sync",
    "time_alternating",
    "peak_rss_mib",
    "reset_peak_rss",
    "train_flops_per_token",
    "sdpa_kernels_used",
    "NoEosTokenizer",
]


@dataclass(frozen=True)
class Shape:
    """Architecture of one benchmark model (identical for ours and HF)."""

    vocab: int = 1000
    d_model: int = 256
    layers: int = 4
    heads: int = 4
    ffn: int = 1024
    rotary_dim: int = 64
    max_length: int = 1024
    activation: str = "relu"

    @property
    def head_dim(self) -> int:
        return self.d_model // self.heads


def build_ours(shape: Shape, dropout: float = 0.0) -> RotaryTransformerARLMModel:
    """Our ARLM with the given shape (dropout 0 for timing)."""
    return RotaryTransformerARLMModel(
        num_embeddings=shape.vocab,
        d_model=shape.d_model,
        num_layers=shape.layers,
        nhead=shape.heads,
        padding_idx=0,
        dim_feedforward=shape.ffn,
        dropout=dropout,
        activation=shape.activation,
        rotary_emb_dim=shape.rotary_dim,
        max_length=shape.max_length,
    )


def build_hf(shape: Shape, attn_implementation: str = "sdpa") -> nn.Module:
    """``GPTNeoXForCausalLM`` with exactly our architecture: the config of the package's exporter
    (``xlm_arlm.export_hf.neox_config``), read off our model built on the meta device (no memory)."""
    from transformers import GPTNeoXForCausalLM

    with torch.device("meta"):
        config = neox_config(build_ours(shape))
    config.pad_token_id = 0
    config._attn_implementation = attn_implementation
    return GPTNeoXForCausalLM(config)


def copy_ours_to_hf(ours: RotaryTransformerARLMModel, hf: nn.Module) -> None:
    """Load our weights into the HF model so both compute the same function (the exporter's mapping)."""
    copy_weights_to_neox(ours, hf)


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_alternating(
    fns: dict[str, Callable[[], Any]], warmup: int, repeats: int, device: torch.device, clock: str = "wall"
) -> dict[str, float]:
    """Median seconds per call of each function; the call order rotates every repeat.

    ``clock="cpu"`` counts this process's CPU time instead of wall time: on a CPU shared with other
    jobs it excludes the time the process waits for a core (meaningful with one thread).
    """
    now = time.process_time if clock == "cpu" else time.perf_counter
    names = list(fns)
    for _ in range(warmup):
        for name in names:
            fns[name]()
    sync(device)
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            sync(device)
            start = now()
            fns[name]()
            sync(device)
            times[name].append(now() - start)
    return {name: statistics.median(ts) for name, ts in times.items()}


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark of this process (VmHWM); False when not permitted."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss_mib() -> tuple[float, float]:
    """(current RSS, peak RSS since the last reset) of this process, in MiB, from /proc."""
    fields = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                fields[key] = int(value.split()[0]) / 1024
    return fields["VmRSS"], fields["VmHWM"]


def train_flops_per_token(shape: Shape, seq_len: int) -> float:
    """Model FLOPs per trained token: 6 x (matmul params, head included) + causal-free attention term.

    The attention term 12 * layers * seq_len * d_model counts QK^T and AV (forward + backward)
    over the full L x L square, as in the PaLM MFU definition.
    """
    D, F_, V, n = shape.d_model, shape.ffn, shape.vocab, shape.layers
    matmul_params = n * (4 * D * D + 2 * D * F_) + D * V
    return 6 * matmul_params + 12 * n * seq_len * D


def sdpa_kernels_used(fn: Callable[[], Any]) -> list[str]:
    """Names of the scaled-dot-product-attention kernels that ``fn`` runs (torch.profiler)."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU]
    if torch.cuda.is_available():
        activities.append(ProfilerActivity.CUDA)
    with profile(activities=activities) as prof:
        fn()
    names = {evt.key for evt in prof.key_averages()}
    keep = ("scaled_dot_product", "flash", "efficient_attention", "cudnn_attention", "attention_math")
    return sorted(n for n in names if any(k in n.lower() for k in keep))


class NoEosTokenizer:
    """Tokenizer stand-in with PAD=0 and no EOS, so every generation runs its full length."""

    eos_token_id = None
    pad_token_id = 0
    bos_token_id = None

    def decode(self, ids: list[int], skip_special_tokens: bool = False) -> str:
        return " ".join(str(i) for i in ids)

    def batch_decode(self, rows: list[list[int]], skip_special_tokens: bool = False) -> list[str]:
        return [self.decode(r, skip_special_tokens) for r in rows]


def mfu(tokens_per_s: float, flops_per_token: float, peak_tflops: float) -> float:
    """Model FLOPs utilisation: achieved model FLOP/s over the device's peak."""
    return tokens_per_s * flops_per_token / (peak_tflops * 1e12) if peak_tflops > 0 else math.nan
