"""Fused, chunked LM head + cross-entropy that never holds the (tokens x vocab) logits.

A language model's last step projects each hidden state onto the vocabulary and scores the target
with a log-softmax. With a large vocabulary (151,936 ids for Qwen2's tokenizer) the logits of a
batch are the largest tensors of a training step (4 x 512 tokens: 1.2 GB in fp32), and the passes
over them (log-softmax forward and backward, their gradient, the allocations) cost about as much
as the head's matrix products. :func:`linear_cross_entropy` instead walks over blocks of tokens:
for each block it computes the block's logits, their log-softmax, the NLL of the targets and, when
a gradient is wanted, the gradient with respect to the hidden states, the head weight and bias, all
in the same pass. Only one block of logits exists at a time; the backward pass scales the stored
gradients by the incoming gradient of the loss (the loss is a sum over tokens, so its gradient is a
scalar).

Numerics follow the unfused ``F.cross_entropy(F.linear(hidden, weight, bias).float(), target)``:
the matrix products run in the autocast dtype when autocast is on (else the weight's dtype), the
log-softmax, the NLLs and the accumulation of gradients run in fp32. On a CPU without native bf16
instructions a bf16 product is computed as an fp32 product of the bf16-rounded operands (products
of bf16 numbers are exact in fp32, so this is the bf16 product up to summation order; the
emulated bf16 kernels are several times slower), and the logits are rounded to bf16 as a bf16
product's would be.

Families opt in through a model contract (see :func:`hidden_state_head`): a model exposing
``forward_hidden(x_t, attention_mask, positions)`` (the final-normed hidden states) and
``lm_head`` (the output ``nn.Linear``) lets its loss call the fused head; other models keep the
plain logits path.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import torch
from jaxtyping import Bool, Float, Integer
from torch import Tensor as TT
from torch import nn
from torch.autograd.function import once_differentiable

__all__ = [
    "DEFAULT_CHUNK_BYTES",
    "HiddenStateModel",
    "chunk_size_for",
    "hidden_state_head",
    "linear_cross_entropy",
    "scored_linear_cross_entropy",
]

DEFAULT_CHUNK_BYTES = 128 * 2**20
"""fp32 logits of one block of tokens when no ``chunk_size`` is given (128 MiB: 220 tokens of a
151,936-id vocabulary). Large enough for the head's matrix products to run at full speed (on one
CPU thread a 110-token block was 8 % slower, a 512-token one 1 % faster), small enough that the
block stays far below the full logits (1.2 GB for 4 x 512 tokens)."""


def chunk_size_for(vocab_size: int, chunk_bytes: int = DEFAULT_CHUNK_BYTES) -> int:
    """Tokens per block so that one block of fp32 logits takes about ``chunk_bytes`` (at least 16)."""
    return max(16, chunk_bytes // (4 * max(vocab_size, 1)))


# ----------------------------------------------------------------------------- precision
def _matmul_dtype(device_type: str, weight_dtype: torch.dtype) -> torch.dtype:
    """The dtype the head's product runs in: the autocast dtype when autocast is on, else the weight's."""
    if torch.is_autocast_enabled(device_type):
        return torch.get_autocast_dtype(device_type)
    return weight_dtype


def _emulates_bf16(device_type: str, matmul_dtype: torch.dtype) -> bool:
    """Whether a bf16 product is faster as an fp32 product of bf16-rounded operands (CPU without bf16 units)."""
    if matmul_dtype != torch.bfloat16 or device_type != "cpu":
        return False
    from xlm_core.training.precision import cpu_has_native_bf16

    return not cpu_has_native_bf16()


def _to_matmul(x: TT, matmul_dtype: torch.dtype, emulate_bf16: bool) -> TT:
    """``x`` as an operand of the head's product: cast to ``matmul_dtype``, or rounded to bf16 and kept fp32."""
    if emulate_bf16:
        return x.to(torch.bfloat16).float()
    return x.to(matmul_dtype)


# ----------------------------------------------------------------------------- one block
def _block_nll_and_grads(
    hidden: Float[TT, "chunk d_model"],
    targets: Integer[TT, " chunk"],
    token_weights: Float[TT, " chunk"],
    weight_mm: Float[TT, "vocab d_model"],
    bias_mm: Float[TT, " vocab"] | None,
    logits: Float[TT, "chunk vocab"],
    grad_weight: Float[TT, "vocab d_model"] | None,
    grad_bias: Float[TT, " vocab"] | None,
    emulate_bf16: bool,
    excluded_class: int | None,
    first: bool,
) -> tuple[Float[TT, " chunk"], Float[TT, "chunk d_model"] | None]:
    """NLL of one block of tokens and, if ``grad_weight`` is given, its gradients (loss = sum w_i * nll_i).

    ``logits`` is a scratch fp32 buffer of the block's shape (overwritten). ``grad_weight`` and
    ``grad_bias`` are fp32 accumulators, updated in place (overwritten by the ``first`` block, so
    they need no zero-filling: at the GPT-2-small shape the head's gradient is 467 MB); the
    returned hidden-state gradient is fp32. The softmax gradient ``w_i * (p_i - onehot(t_i))`` is never formed: the token weights are
    folded into the (small) hidden states and the one-hot part is a gather / index_add of rows.
    """
    h_mm = _to_matmul(hidden, weight_mm.dtype, emulate_bf16)
    if weight_mm.dtype == torch.float32:
        torch.mm(h_mm, weight_mm.t(), out=logits)
        if bias_mm is not None:
            logits.add_(bias_mm)
        if emulate_bf16:
            logits.copy_(logits.to(torch.bfloat16))
    else:
        out = torch.mm(h_mm, weight_mm.t()) if bias_mm is None else torch.addmm(bias_mm, h_mm, weight_mm.t())
        logits.copy_(out)
        del out
    if excluded_class is not None:
        lowest = torch.finfo(torch.bfloat16 if emulate_bf16 else weight_mm.dtype).min
        logits[:, excluded_class] = lowest  # the class never predicted: softmax weight exactly 0
    torch.log_softmax(logits, dim=-1, out=logits)
    nll = logits.gather(1, targets[:, None]).squeeze(1).neg()  # (c,)
    if grad_weight is None:
        return nll, None
    probs = logits.exp_()  # softmax, in place of the log-softmax
    w = token_weights[:, None]
    h_weighted = h_mm.float() * w  # (c, D): w_i h_i
    if weight_mm.dtype == torch.float32:
        grad_weight.addmm_(probs.t(), h_weighted, beta=0.0 if first else 1.0)  # sum_i p_i w_i h_i
        grad_hidden = torch.mm(probs, weight_mm)  # (c, D)
    else:
        probs_mm = probs.to(weight_mm.dtype)
        block_grad = torch.mm(probs_mm.t(), h_weighted.to(weight_mm.dtype))
        if first:
            grad_weight.copy_(block_grad)
        else:
            grad_weight.add_(block_grad)
        grad_hidden = torch.mm(probs_mm, weight_mm).float()
        del probs_mm, block_grad
    grad_weight.index_add_(0, targets, h_weighted, alpha=-1.0)  # minus the one-hot part
    grad_hidden.sub_(weight_mm.index_select(0, targets).float()).mul_(w)
    if grad_bias is not None:
        block_bias = torch.mv(probs.t(), token_weights)
        if first:
            grad_bias.copy_(block_bias)
        else:
            grad_bias.add_(block_bias)
        grad_bias.index_add_(0, targets, token_weights, alpha=-1.0)
    return nll, grad_hidden


_COMPILED_BLOCK: Callable[..., Any] | None = None


def _compiled_block() -> Callable[..., Any]:
    """:func:`_block_nll_and_grads` through ``torch.compile`` (one compiled function, shared)."""
    global _COMPILED_BLOCK
    if _COMPILED_BLOCK is None:
        _COMPILED_BLOCK = torch.compile(_block_nll_and_grads, dynamic=False)
    return _COMPILED_BLOCK


# ----------------------------------------------------------------------------- all blocks
def _run_blocks(
    hidden: Float[TT, "n d_model"],
    weight: Float[TT, "vocab d_model"],
    bias: Float[TT, " vocab"] | None,
    targets: Integer[TT, " n"],
    token_weights: Float[TT, " n"] | None,
    ignore_index: int,
    excluded_class: int | None,
    chunk_size: int,
    matmul_dtype: torch.dtype,
    with_grads: bool,
    compile_block: bool,
) -> tuple[TT, TT, TT | None, TT | None, TT | None]:
    """Loss (sum of w_i * nll_i), per-token NLLs (0 where ignored) and, if asked, the three gradients."""
    n, vocab = hidden.shape[0], weight.shape[0]
    device_type = hidden.device.type
    emulate = _emulates_bf16(device_type, matmul_dtype)
    weight_mm = _to_matmul(weight.detach(), matmul_dtype, emulate)
    bias_mm = _to_matmul(bias.detach(), matmul_dtype, emulate) if bias is not None else None
    valid = targets != ignore_index
    safe_targets = targets.masked_fill(~valid, 0)
    w = valid.float() if token_weights is None else token_weights.detach().float() * valid
    new = torch.empty if n else torch.zeros  # the first block overwrites; without tokens the gradients are 0
    grad_weight = new(vocab, weight.shape[1], device=weight.device) if with_grads else None
    grad_bias = new(vocab, device=weight.device) if with_grads and bias is not None else None
    grad_hidden = torch.empty(n, hidden.shape[1], device=hidden.device) if with_grads else None
    nll = torch.empty(n, device=hidden.device)
    block = _compiled_block() if compile_block else _block_nll_and_grads
    c = max(1, min(chunk_size, n))
    scratch = torch.empty(c, vocab, device=hidden.device) if n else None
    for start in range(0, n, c):
        end = min(start + c, n)
        nll_c, grad_c = block(
            hidden[start:end].detach(),
            safe_targets[start:end],
            w[start:end],
            weight_mm,
            bias_mm,
            scratch[: end - start],
            grad_weight,
            grad_bias,
            emulate,
            excluded_class,
            start == 0,
        )
        nll[start:end] = nll_c
        if grad_hidden is not None:
            grad_hidden[start:end] = grad_c
    nll = nll.masked_fill_(~valid, 0.0)
    loss = (nll * w).sum()
    return loss, nll, grad_hidden, grad_weight, grad_bias


class _LinearCrossEntropy(torch.autograd.Function):
    """Autograd wrapper: the forward computes the gradients, the backward scales them."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        hidden: TT,
        weight: TT,
        bias: TT | None,
        targets: TT,
        token_weights: TT | None,
        options: dict[str, Any],
    ) -> tuple[TT, TT]:
        loss, nll, grad_hidden, grad_weight, grad_bias = _run_blocks(
            hidden, weight, bias, targets, token_weights, with_grads=True, **options
        )
        ctx.save_for_backward(grad_hidden, grad_weight, grad_bias)
        ctx.dtypes = (hidden.dtype, weight.dtype, None if bias is None else bias.dtype)
        ctx.mark_non_differentiable(nll)
        return loss, nll

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_loss: TT, grad_nll: TT | None) -> tuple[TT | None, ...]:  # type: ignore[override]
        grad_hidden, grad_weight, grad_bias = ctx.saved_tensors
        hidden_dtype, weight_dtype, bias_dtype = ctx.dtypes
        grads = [None, None, None]
        for i, (g, dtype) in enumerate(
            ((grad_hidden, hidden_dtype), (grad_weight, weight_dtype), (grad_bias, bias_dtype))
        ):
            if g is not None and ctx.needs_input_grad[i]:
                grads[i] = g.mul_(grad_loss).to(dtype)
        return grads[0], grads[1], grads[2], None, None, None


@torch.compiler.disable
def linear_cross_entropy(
    hidden: Float[TT, "*tokens d_model"],
    weight: Float[TT, "vocab d_model"],
    targets: Integer[TT, " *tokens"],
    bias: Float[TT, " vocab"] | None = None,
    token_weights: Float[TT, " *tokens"] | None = None,
    ignore_index: int = -100,
    excluded_class: int | None = None,
    chunk_size: int | None = None,
    compile_block: bool = False,
) -> tuple[Float[TT, ""], Float[TT, " *tokens"]]:
    """Sum of the (optionally weighted) NLLs of ``targets`` under ``softmax(hidden @ weight.T + bias)``.

    Equal to ``(F.cross_entropy(F.linear(hidden, weight, bias).float(), targets, reduction="none",
    ignore_index=ignore_index) * token_weights).sum()`` without materialising the logits (module
    docstring). Returns ``(loss, nll)``: ``loss`` is the scalar sum over non-ignored targets and
    carries the graph to ``hidden``, ``weight`` and ``bias``; ``nll`` (the shape of ``targets``,
    fp32, 0 at ignored targets) is detached, for metrics. An all-ignored input gives ``loss = 0``
    that is still connected to the inputs (zero gradients).

    Args:
        hidden: final hidden states (any leading shape).
        weight: the head's weight (vocab x d_model), as in ``nn.Linear``.
        targets: class ids, ``ignore_index`` where not scored.
        bias: the head's bias, if it has one.
        token_weights: a weight per token (e.g. 1/t of a masked-diffusion loss); no gradient.
        ignore_index: target value that is not scored.
        excluded_class: a class the model never predicts (its logit is set to the lowest finite
            value, as the MLM model does for the mask token).
        chunk_size: tokens per block (default :func:`chunk_size_for` the vocabulary).
        compile_block: run each block through ``torch.compile`` (one graph per block shape).
    """
    if hidden.shape[:-1] != targets.shape:
        raise ValueError(f"hidden {tuple(hidden.shape)} must be targets' shape {tuple(targets.shape)} plus d_model.")
    if hidden.shape[-1] != weight.shape[1]:
        raise ValueError(f"hidden has d_model {hidden.shape[-1]} but the head weight is {tuple(weight.shape)}.")
    if token_weights is not None and token_weights.shape != targets.shape:
        raise ValueError(f"token_weights {tuple(token_weights.shape)} must have targets' shape {tuple(targets.shape)}.")
    if chunk_size is not None and chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive number of tokens, got {chunk_size}.")
    shape = targets.shape
    flat_hidden = hidden.reshape(-1, hidden.shape[-1])
    flat_targets = targets.reshape(-1)
    flat_weights = token_weights.reshape(-1) if token_weights is not None else None
    options = {
        "ignore_index": ignore_index,
        "excluded_class": excluded_class,
        "chunk_size": chunk_size or chunk_size_for(weight.shape[0]),
        "matmul_dtype": _matmul_dtype(hidden.device.type, weight.dtype),
        "compile_block": compile_block,
    }
    wants_grad = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (hidden, weight, bias))
    with torch.autocast(hidden.device.type, enabled=False):
        if wants_grad:
            loss, nll = _LinearCrossEntropy.apply(flat_hidden, weight, bias, flat_targets, flat_weights, options)
        else:
            loss, nll, *_ = _run_blocks(
                flat_hidden, weight, bias, flat_targets, flat_weights, with_grads=False, **options
            )
    return loss, nll.reshape(shape)


def scored_linear_cross_entropy(
    hidden: Float[TT, "batch seq_len d_model"],
    head: nn.Linear,
    targets: Integer[TT, "batch seq_len"],
    scored: Bool[TT, "batch seq_len"],
    token_weights: Float[TT, "batch seq_len"] | None = None,
    excluded_class: int | None = None,
    chunk_size: int | None = None,
    compile_block: bool = False,
) -> tuple[Float[TT, ""], Float[TT, "batch seq_len"]]:
    """:func:`linear_cross_entropy` of ``head`` on the ``scored`` positions only (the others never reach the head).

    Returns the loss (sum over scored positions) and the per-position NLLs (fp32, detached, 0 where
    not scored) in the batch's shape.
    """
    flat = scored.reshape(-1)
    loss, nll_scored = linear_cross_entropy(
        hidden.reshape(-1, hidden.shape[-1])[flat],
        head.weight,
        targets.reshape(-1)[flat],
        bias=head.bias,
        token_weights=None if token_weights is None else token_weights.reshape(-1)[flat],
        excluded_class=excluded_class,
        chunk_size=chunk_size,
        compile_block=compile_block,
    )
    nll = torch.zeros(scored.shape, dtype=nll_scored.dtype, device=nll_scored.device)
    return loss, nll.masked_scatter_(scored, nll_scored)


# ----------------------------------------------------------------------------- model contract
@runtime_checkable
class HiddenStateModel(Protocol):
    """A model whose loss may use the fused head: final-normed hidden states plus the output Linear.

    ``forward(x_t, attention_mask, positions)`` must equal ``lm_head(forward_hidden(x_t,
    attention_mask, positions))`` (a model may adjust its logits further, e.g. the MLM model's
    excluded mask logit, which its loss then passes as ``excluded_class``).
    """

    lm_head: nn.Linear

    def forward_hidden(self, x_t: TT, attention_mask: TT | None = None, positions: TT | None = None) -> TT: ...


def hidden_state_head(model: Any) -> tuple[Callable[..., TT], nn.Linear] | None:
    """``(forward_hidden, lm_head)`` of a model that follows :class:`HiddenStateModel`, else None.

    For a ``torch.compile``'d model (``OptimizedModule``) the attribute lookup would reach the
    uncompiled module, so its ``forward_hidden`` is compiled instead, once per compiled model.
    """
    inner = getattr(model, "_orig_mod", model)
    if not isinstance(inner, HiddenStateModel) or not isinstance(getattr(inner, "lm_head", None), nn.Linear):
        return None
    if inner is model:
        return inner.forward_hidden, inner.lm_head
    compiled = _COMPILED_HIDDEN.get(model)
    if compiled is None:
        compiled = _COMPILED_HIDDEN[model] = torch.compile(inner.forward_hidden)
    return compiled, inner.lm_head


_COMPILED_HIDDEN: weakref.WeakKeyDictionary[Any, Callable[..., TT]] = weakref.WeakKeyDictionary()
"""Compiled ``forward_hidden`` of each compiled model seen by :func:`hidden_state_head`."""
