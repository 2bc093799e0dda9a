"""One static-shape decoding step, compiled (torch.compile, CPU) or replayed as a CUDA graph (GPU).

The step is a model's ``decode_step(token, position, slot, key_mask) -> logits`` over a preallocated
KV cache (``KVCache.write`` + attention over every slot with a mask), so every tensor keeps its shape
from step to step and one compiled graph or one captured CUDA graph serves every token of a call.
"""

from __future__ import annotations

import contextlib
from typing import Any, Literal

import torch
from jaxtyping import Bool, Float, Integer
from torch import Tensor as TT
from torch import nn

from xlm_core.training.precision import autocast_dtype

__all__ = ["StaticDecoder", "decode_backend", "cache_slots"]

Backend = Literal["compile", "cuda_graph"]
SLOT_MULTIPLE = 64  # cache slots are rounded up to this, so calls with nearby lengths share a compiled graph
# One graph per (batch, slots, dtype): a shape seen again reuses its graph, none is made dynamic.
COMPILE_OPTIONS: dict[str, Any] = {"fullgraph": True, "dynamic": False}


def decode_backend(device: torch.device) -> Backend | None:
    """The static-step backend for ``device``: CUDA graphs on CUDA, torch.compile on the CPU, else None."""
    if device.type == "cuda":
        return "cuda_graph"
    if device.type == "cpu":
        return "compile"
    return None


def cache_slots(needed: int) -> int:
    """KV-cache slots for a call that needs ``needed``: rounded up to a multiple of SLOT_MULTIPLE."""
    return -(-needed // SLOT_MULTIPLE) * SLOT_MULTIPLE


def _skip_guard_eval() -> contextlib.AbstractContextManager:
    """Skip Dynamo's guard evaluation (up to ~10 % of a CPU step) for the second and later steps of a call.

    Safe here by construction: within one call every step passes tensors of the same shapes, dtypes
    and strides, the same weights and modules, under the same grad/autocast state as the first step,
    whose guards were checked; only the differentiating guards between compiled graphs still run.
    """
    set_stance = getattr(torch.compiler, "set_stance", None)
    if set_stance is None:
        return contextlib.nullcontext()
    try:
        return set_stance("default", skip_guard_eval_unsafe=True)
    except TypeError:  # torch without skip_guard_eval_unsafe
        return contextlib.nullcontext()


class _Step(nn.Module):
    """The model's ``decode_step`` as a module ``forward``, so ``functional_call`` can swap its weights."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, token: TT, position: TT, slot: TT, key_mask: TT) -> TT:
        return self.model.decode_step(token, position, slot, key_mask)


class StaticDecoder:
    """Runs ``model.decode_step`` with little per-token overhead; one instance serves many calls.

    ``begin`` prepares a call (under autocast: one low-precision copy of every Linear's weights, as
    eager autocast would make; on CUDA: capture of the step), ``step`` runs one token, ``end``
    releases the call's graph and copies. The compiled CPU graph persists across calls (weights are
    its inputs, so training between calls needs no recompile); a CUDA graph is captured per call,
    because it records the addresses of that call's KV cache.
    """

    def __init__(self, model: nn.Module, backend: Backend) -> None:
        if not hasattr(model, "decode_step"):
            raise ValueError(
                f"{type(model).__name__} has no decode_step(token, position, slot, key_mask); "
                "use the eager decoding path (compile_decode=false)."
            )
        self.model = model
        self.backend = backend
        self._module = _Step(model)
        self._compiled = torch.compile(self._call, **COMPILE_OPTIONS) if backend == "compile" else None
        self._params: dict[str, TT] = {}
        self._graph: Any = None
        self._static_in: tuple[TT, ...] = ()
        self._static_out: TT | None = None
        self._guards_checked = False

    def _call(self, params: dict[str, TT], token: TT, position: TT, slot: TT, key_mask: TT) -> TT:
        return torch.func.functional_call(self._module, params, (token, position, slot, key_mask), strict=False)

    def _low_precision_linears(self, device_type: str) -> dict[str, TT]:
        """Linear weights/biases in the autocast dtype (empty outside autocast)."""
        dtype = autocast_dtype(device_type)
        if dtype is None:
            return {}
        out = {}
        for name, mod in self._module.named_modules():
            if isinstance(mod, nn.Linear):
                for pname, p in mod.named_parameters(recurse=False):
                    out[f"{name}.{pname}"] = p.detach().to(dtype)
        return out

    def begin(
        self,
        token: Integer[TT, "batch 1"],
        position: Integer[TT, "batch 1"],
        slot: Integer[TT, ""],
        key_mask: Bool[TT, "batch slots"],
    ) -> None:
        """Prepare a generation call whose first step has these inputs (the KV cache must be set)."""
        self._params = self._low_precision_linears(token.device.type)
        self._guards_checked = False
        if self.backend != "cuda_graph":
            return
        self._static_in = tuple(t.clone() for t in (token, position, slot, key_mask))
        side = torch.cuda.Stream(token.device)
        side.wait_stream(torch.cuda.current_stream(token.device))
        with torch.cuda.stream(side):  # warm-up outside the graph (allocator, kernel selection)
            for _ in range(2):
                self._call(self._params, *self._static_in)
        torch.cuda.current_stream(token.device).wait_stream(side)
        self._graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self._graph):
            self._static_out = self._call(self._params, *self._static_in)

    def step(
        self,
        token: Integer[TT, "batch 1"],
        position: Integer[TT, "batch 1"],
        slot: Integer[TT, ""],
        key_mask: Bool[TT, "batch slots"],
    ) -> Float[TT, "batch vocab"]:
        """Logits of one decoding step (on CUDA a buffer that the next step overwrites)."""
        if self._graph is not None:
            for buf, value in zip(self._static_in, (token, position, slot, key_mask)):
                buf.copy_(value)
            self._graph.replay()
            assert self._static_out is not None
            return self._static_out
        if self._compiled is None:
            return self._call(self._params, token, position, slot, key_mask)
        if not self._guards_checked:  # the call's first step: Dynamo checks its guards (and compiles)
            self._guards_checked = True
            return self._compiled(self._params, token, position, slot, key_mask)
        with _skip_guard_eval():
            return self._compiled(self._params, token, position, slot, key_mask)

    def end(self) -> None:
        """Release the call's CUDA graph and low-precision weight copies."""
        self._graph, self._static_in, self._static_out, self._params = None, (), None, {}
