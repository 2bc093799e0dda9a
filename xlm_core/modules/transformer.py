"""Pre-LN rotary transformer layer, final (unembedding) layer and the attention-mask builder."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Literal

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float, Integer
from torch import Tensor as TT
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from xlm_core.modules.kv_cache import KVCache
from xlm_core.modules.rotary import apply_rotary_emb

__all__ = [
    "RotaryTransformerLayer",
    "RotaryTransformerFinalLayer",
    "build_attention_mask",
    "causal_mask",
    "linear_weights",
]

ACTIVATIONS = ("relu", "gelu")


def causal_mask(query_len: int, key_len: int, device: torch.device | None = None) -> Bool[TT, "query_len key_len"]:
    """Query ``i`` (at absolute slot ``key_len - query_len + i``) may see keys up to its own slot."""
    offset = key_len - query_len
    q_slots = torch.arange(query_len, device=device).unsqueeze(1) + offset  # (Lq, 1)
    return torch.arange(key_len, device=device).unsqueeze(0) <= q_slots  # (Lq, S)


def build_attention_mask(
    attention_mask: Bool[TT, "batch key_len"] | Bool[TT, "batch query_len key_len"] | None,
    query_len: int,
    past_len: int = 0,
    causal: bool = True,
    device: torch.device | None = None,
) -> tuple[Bool[TT, "#batch 1 #query_len key_len"] | None, bool]:
    """Turn a user mask into ``(attn_mask, is_causal)`` for ``scaled_dot_product_attention``.

    True = attend. ``key_len = past_len + query_len`` (keys already in a KV cache come first).
    The mask broadcasts: batch 1 when built without a user mask, query_len 1 for non-causal key padding.
    - None: no mask tensor; the causal case without a cache uses SDPA's ``is_causal`` fast path.
    - (B, S): key padding, intersected with the causal mask when ``causal``.
    - (B, Lq, S): used as given (``causal`` is not applied).
    ``device`` places a mask built without a user mask (defaults to the user mask's device).
    A query row that would be fully masked (e.g. a padding query of a left-padded row) is allowed
    to attend to its own slot so its output stays finite; rows with any allowed key are untouched.
    """
    key_len = past_len + query_len
    if attention_mask is None:
        if not causal:
            return None, False
        if past_len == 0:
            return None, True
        return causal_mask(query_len, key_len, device)[None, None], False  # (1, 1, Lq, S)

    device = attention_mask.device
    mask = attention_mask if attention_mask.dtype == torch.bool else attention_mask != 0
    if mask.ndim == 2:
        if mask.shape[1] != key_len:
            raise ValueError(
                f"A (batch, seq_len) attention_mask must cover all {key_len} key slots "
                f"({past_len} cached + {query_len} new), got shape {tuple(mask.shape)}."
            )
        mask = mask[:, None, None, :]  # (B, 1, 1, S)
        if not causal:
            # Only an all-padding row can be fully masked: let it see everything (finite, unused).
            return mask | ~mask.any(dim=-1, keepdim=True), False
        mask = mask & causal_mask(query_len, key_len, device)  # (B, 1, Lq, S)
    elif mask.ndim == 3:
        if mask.shape[1] != query_len or mask.shape[2] != key_len:
            raise ValueError(
                f"A (batch, query_len, key_len) attention_mask must have shape (B, {query_len}, "
                f"{key_len}), got {tuple(mask.shape)}."
            )
        mask = mask[:, None]  # (B, 1, Lq, S)
    else:
        raise ValueError(
            "attention_mask must have shape (batch, seq_len) or (batch, seq_len, seq_len), "
            f"got {tuple(attention_mask.shape)}."
        )
    own_slot = _own_slot(query_len, key_len, device)  # (Lq, S)
    return mask | (own_slot & ~mask.any(dim=-1, keepdim=True)), False


def _own_slot(query_len: int, key_len: int, device: torch.device) -> Bool[TT, "query_len key_len"]:
    """True at (i, key_len - query_len + i): each query's own key slot."""
    offset = key_len - query_len
    q_slots = torch.arange(query_len, device=device).unsqueeze(1) + offset
    return torch.arange(key_len, device=device).unsqueeze(0) == q_slots


class RotaryTransformerLayer(nn.Module):
    """Pre-LN transformer block: x + Drop(Attn(LN(x))) then x + Drop(MLP(LN(x))), with RoPE on q/k.

    Attention runs through ``scaled_dot_product_attention``; ``kv_cache`` (set by the model) makes
    it append the new keys/values and attend over every filled slot.
    """

    def __init__(
        self,
        d_model: int,
        nhead: int,
        dim_feedforward: int | None = None,
        dropout: float = 0.1,
        activation: Literal["relu", "gelu"] = "relu",
        layer_norm_eps: float = 1e-5,
        force_flash_attn: bool = False,
    ) -> None:
        super().__init__()
        if d_model % nhead != 0:
            raise ValueError(f"d_model ({d_model}) must be divisible by nhead ({nhead}).")
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}.")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}.")
        dim_feedforward = dim_feedforward or 4 * d_model
        self.d_model = d_model
        self.n_heads = nhead
        self.head_dim = d_model // nhead
        self.dropout = dropout
        self.force_flash_attn = force_flash_attn

        self.norm1 = nn.LayerNorm(d_model, eps=layer_norm_eps)
        self.attn_qkv = nn.Linear(d_model, 3 * d_model, bias=False)
        self.o_proj = nn.Linear(d_model, d_model, bias=False)
        self.dropout1 = nn.Dropout(dropout)

        self.norm2 = nn.LayerNorm(d_model, eps=layer_norm_eps)
        self.mlp = nn.Sequential(
            nn.Linear(d_model, dim_feedforward),
            nn.ReLU() if activation == "relu" else nn.GELU(),
            nn.Linear(dim_feedforward, d_model),
        )
        self.dropout2 = nn.Dropout(dropout)

        self.kv_cache: KVCache | None = None

    def forward(
        self,
        x: Float[TT, "batch seq_len d_model"],
        cos: Float[TT, "batch 1 seq_len rotary_dim"],
        sin: Float[TT, "batch 1 seq_len rotary_dim"],
        attn_mask: Bool[TT, "#batch 1 #seq_len key_len"] | None = None,
        is_causal: bool = False,
        cache_slot: Integer[TT, ""] | None = None,
    ) -> Float[TT, "batch seq_len d_model"]:
        """``attn_mask``/``is_causal`` come from :func:`build_attention_mask` (True = attend).

        ``cache_slot`` selects static-shape decoding: the one new token's keys/values are written at
        that cache slot and attention runs over every slot, with ``attn_mask`` hiding the unfilled ones.
        """
        drop = self.training and self.dropout > 0  # skip the no-op Dropout calls (cheaper decoding)
        h = self._attention(self.norm1(x), cos, sin, attn_mask, is_causal, cache_slot)
        x = x + (self.dropout1(h) if drop else h)
        h = self.mlp(self.norm2(x))
        return x + (self.dropout2(h) if drop else h)

    def _attention(
        self,
        x: Float[TT, "batch seq_len d_model"],
        cos: Float[TT, "batch 1 seq_len rotary_dim"],
        sin: Float[TT, "batch 1 seq_len rotary_dim"],
        attn_mask: Bool[TT, "#batch 1 #seq_len key_len"] | None,
        is_causal: bool,
        cache_slot: Integer[TT, ""] | None = None,
    ) -> Float[TT, "batch seq_len d_model"]:
        B, L, D = x.shape
        qkv = self.attn_qkv(x)  # (B, L, 3D)
        qkv = qkv.view(B, L, 3, self.n_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        # RoPE on q and k in one pass: (2, B, H, L, Dh) broadcasts against (B, 1, L, rotary_dim).
        q, k = apply_rotary_emb(qkv[:2], cos, sin).unbind(0)  # each (B, H, L, Dh)
        v = qkv[2]
        if self.kv_cache is not None:
            if cache_slot is None:
                k, v = self.kv_cache.update(k, v)  # (B, H, S, Dh), S = filled slots
            else:
                k, v = self.kv_cache.write(k, v, cache_slot)  # (B, H, S, Dh), S = all slots
            k, v = k.to(q.dtype), v.to(q.dtype)
        with self._sdpa_backends(q, static=cache_slot is not None):
            y = F.scaled_dot_product_attention(
                q,
                k,
                v,
                attn_mask=attn_mask,
                dropout_p=self.dropout if self.training else 0.0,
                is_causal=is_causal and attn_mask is None,
            )  # (B, H, L, Dh)
        y = y.transpose(1, 2).reshape(B, L, D)
        return self.o_proj(y)

    def _sdpa_backends(self, q: TT, static: bool = False) -> contextlib.AbstractContextManager:
        if self.force_flash_attn and q.is_cuda:
            return sdpa_kernel([SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION])
        if static and not q.is_cuda:
            # One query over every slot with a mask: torch.compile fuses the math form into one kernel,
            # while the CPU flash kernel with a mask costs ~1 ms a call (docs/performance.md).
            return sdpa_kernel([SDPBackend.MATH])
        return contextlib.nullcontext()


class RotaryTransformerFinalLayer(nn.Module):
    """Optional LayerNorm then a bias-free projection to ``out_dims`` (the vocabulary logits)."""

    def __init__(
        self,
        d_model: int,
        out_dims: int,
        layer_norm_eps: float = 1e-5,
        use_final_layer_norm: bool = True,
    ) -> None:
        super().__init__()
        self.norm_final = nn.LayerNorm(d_model, eps=layer_norm_eps) if use_final_layer_norm else None
        self.linear = nn.Linear(d_model, out_dims, bias=False)

    def forward(self, x: Float[TT, "batch seq_len d_model"]) -> Float[TT, "batch seq_len out_dims"]:
        return self.linear(self.normalize(x))

    def normalize(self, x: Float[TT, "batch seq_len d_model"]) -> Float[TT, "batch seq_len d_model"]:
        """The input of the projection: ``x`` after the final LayerNorm (``x`` itself without one)."""
        return self.norm_final(x) if self.norm_final is not None else x


def rotary_layer_stack(
    num_layers: int,
    d_model: int,
    nhead: int,
    dim_feedforward: int | None = None,
    dropout: float = 0.1,
    activation: Literal["relu", "gelu"] = "relu",
    layer_norm_eps: float = 1e-5,
    force_flash_attn: bool = False,
) -> nn.ModuleList:
    """``num_layers`` independently constructed (and so independently initialised) ``RotaryTransformerLayer``
    blocks, not copies of one layer: the body every rotary model of the toolkit stacks."""
    return nn.ModuleList(
        RotaryTransformerLayer(
            d_model,
            nhead,
            dim_feedforward=dim_feedforward,
            dropout=dropout,
            activation=activation,
            layer_norm_eps=layer_norm_eps,
            force_flash_attn=force_flash_attn,
        )
        for _ in range(num_layers)
    )


def linear_weights(module: nn.Module) -> Iterator[tuple[str, nn.Parameter]]:
    """Named weight matrices of every ``nn.Linear`` inside ``module`` (the ones to weight-decay)."""
    for mod_name, mod in module.named_modules():
        if isinstance(mod, nn.Linear):
            yield (f"{mod_name}.weight" if mod_name else "weight"), mod.weight
