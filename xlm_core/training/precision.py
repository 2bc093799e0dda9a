"""Numeric precision of a run: ``trainer.precision=auto`` resolves to bf16-mixed on hardware with native bf16.

Native bf16 means matrix units that compute in bf16: CPUs with AVX512-BF16 or AMX-BF16 (x86) or the
BF16 extension (Arm), CUDA GPUs of compute capability >= 8.0. Elsewhere bf16 is emulated and slower
than fp32, and fp16 needs loss scaling, so ``auto`` then means full fp32 (never fp16).
"""

from __future__ import annotations

import contextlib
import functools
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "AUTO",
    "BF16_MIXED",
    "FP32",
    "cpu_has_native_bf16",
    "cuda_has_native_bf16",
    "accelerator_type",
    "resolve_precision",
    "precision_note",
    "autocast_dtype",
    "inference_autocast",
    "inference_grad_mode",
]

AUTO = "auto"
BF16_MIXED = "bf16-mixed"
FP32 = "32-true"
_CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16", "bf16")  # x86 AVX512-BF16 / AMX, Arm FEAT_BF16


@functools.cache
def cpu_has_native_bf16() -> bool:
    """Whether this CPU has bf16 matrix instructions (torch's cpuinfo, else /proc/cpuinfo flags)."""
    if not torch.backends.mkldnn.is_available():
        return False  # without oneDNN, torch's CPU bf16 matmuls are emulated
    get_capabilities = getattr(torch.cpu, "get_capabilities", None)  # torch >= 2.10
    if get_capabilities is not None:
        caps = get_capabilities()
        return any(bool(caps.get(flag, False)) for flag in _CPU_BF16_FLAGS)
    return bool(_proc_cpuinfo_flags() & set(_CPU_BF16_FLAGS))


def _proc_cpuinfo_flags() -> set[str]:
    """CPU feature flags from /proc/cpuinfo (x86 ``flags``, Arm ``Features``); empty elsewhere."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return set(value.split())
    return set()


def cuda_has_native_bf16() -> bool:
    """Whether the current CUDA device computes bf16 natively (compute capability >= 8.0)."""
    if not torch.cuda.is_available():
        return False
    try:
        return bool(torch.cuda.is_bf16_supported(including_emulation=False))
    except TypeError:  # torch < 2.4 has no including_emulation (and reports native support only)
        return bool(torch.cuda.is_bf16_supported())


def accelerator_type(accelerator: Any) -> str:
    """``trainer.accelerator`` as the device type Lightning will use: ``cuda``, ``mps``, ``cpu`` or as given."""
    name = str(accelerator or "auto").lower()
    if name == "gpu":
        return "cuda" if torch.cuda.is_available() or not _mps_available() else "mps"
    if name == "auto":
        if torch.cuda.is_available():
            return "cuda"
        return "mps" if _mps_available() else "cpu"
    return name


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def resolve_precision(requested: Any, accelerator: Any) -> Any:
    """``auto`` -> ``bf16-mixed`` where ``accelerator`` has native bf16, else ``32-true``; anything else unchanged."""
    if requested is None or str(requested).lower() != AUTO:
        return requested
    device = accelerator_type(accelerator)
    if device == "cuda":
        return BF16_MIXED if cuda_has_native_bf16() else FP32
    if device == "cpu":
        return BF16_MIXED if cpu_has_native_bf16() else FP32
    return FP32


def precision_note(requested: Any, resolved: Any, accelerator: Any) -> str:
    """One line for the run summary: the precision in use and, for ``auto``, why it was chosen."""
    if requested is None or str(requested).lower() != AUTO:
        return f"{resolved} (trainer.precision={requested})"
    device = accelerator_type(accelerator)
    native = resolved == BF16_MIXED
    return f"{resolved} (auto: {'native' if native else 'no native'} bf16 on this {device.upper()})"


def autocast_dtype(device_type: str) -> torch.dtype | None:
    """The dtype autocast computes matmuls in on ``device_type`` right now, or None outside autocast."""
    return torch.get_autocast_dtype(device_type) if torch.is_autocast_enabled(device_type) else None


def inference_autocast(device_type: str) -> contextlib.AbstractContextManager:
    """Inside an enabled autocast region, the same autocast with its weight-cast cache on.

    Lightning disables the cache (weights change every training step); a generation loop reuses the
    same weights for every token, so caching their low-precision copies saves one cast per matmul
    per step. Outside autocast this does nothing.
    """
    dtype = autocast_dtype(device_type)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type, dtype=dtype, cache_enabled=True)


def inference_grad_mode(device_type: str) -> contextlib.AbstractContextManager:
    """``torch.inference_mode()``, or ``torch.no_grad()`` inside an enabled autocast region.

    Autocast's weight-cast cache is bypassed in inference mode (measured: every call recasts the
    weight), so a generation loop under autocast would cast every weight once per token; at
    151,936 ids the head alone is a 78 MB bf16 copy per step. ``no_grad`` keeps the cache.
    """
    return torch.no_grad() if autocast_dtype(device_type) is not None else torch.inference_mode()
