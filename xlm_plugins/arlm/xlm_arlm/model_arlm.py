"""RotaryTransformerARLMModel: a causal (left-to-right) rotary transformer language model (docs/arlm.md)."""

from __future__ import annotations

import warnings
from typing import Literal

import torch
from jaxtyping import Bool, Float, Integer
from torch import Tensor as TT

from xlm_core.modules import (
    KVCache,
    RotaryNetwork,
    build_attention_mask,
    check_ids_and_positions,
    neighbour_mixing_mode,
    validate_model_config,
)

__all__ = ["RotaryTransformerARLMModel"]


class RotaryTransformerARLMModel(RotaryNetwork):
    """Token embedding -> ``num_layers`` pre-LN rotary layers -> final layer -> next-token logits.

    Causal: a (B, L) ``attention_mask`` is key padding on top of the causal mask, so no position sees
    a later one; only an explicit (B, L, L) mask is used as given. With a KV cache set
    (:meth:`set_kv_cache`) each call takes only the new tokens (see docs/architecture.md).
    Two optional position aids (``xlm_core.modules.position_aids``, off by default):
    ``absolute_positions`` adds a learned embedding of each token's position, and
    ``neighbour_mixing="causal"`` adds ``W_prev h[i-1]`` to each token's embedding (the previous token
    only, so the model stays causal; the KV cache keeps the previous token's state for decoding).
    """

    def __init__(
        self,
        num_embeddings: int,
        d_model: int,
        num_layers: int,
        nhead: int,
        padding_idx: int | None = 0,
        dim_feedforward: int | None = None,
        dropout: float = 0.1,
        activation: Literal["relu", "gelu"] = "relu",
        layer_norm_eps: float = 1e-5,
        rotary_emb_dim: int = 64,
        max_length: int = 1024,
        force_flash_attn: bool = False,
        final_layer_without_normalization: bool = False,
        absolute_positions: bool = False,
        neighbour_mixing: bool | str | None = False,
    ) -> None:
        validate_model_config(num_embeddings, d_model, num_layers, nhead, rotary_emb_dim, max_length, padding_idx)
        super().__init__(
            num_embeddings,
            d_model,
            num_layers,
            nhead,
            padding_idx,
            dim_feedforward,
            dropout,
            activation,
            layer_norm_eps,
            rotary_emb_dim,
            max_length,
            final_layer_without_normalization,
            absolute_positions,
            mixing=neighbour_mixing_mode(neighbour_mixing, allowed=("none", "causal"), family="an ARLM"),
            force_flash_attn=force_flash_attn,
        )
        self.head_dim = d_model // nhead
        self.force_flash_attn = force_flash_attn
        self._warned_flash_on_cpu = False

    def forward(
        self,
        x_t: Integer[TT, " batch seq_len"],
        attention_mask: Bool[TT, " batch seq_len key_len"] | Bool[TT, " batch key_len"] | None = None,
        positions: Integer[TT, " batch seq_len"] | None = None,
        token_type_ids: Integer[TT, " batch seq_len"] | None = None,
        logits_to_keep: int = 0,
    ) -> Float[TT, " batch out_len vocab_size"]:
        """Next-token logits for every position of ``x_t`` (only the last ``logits_to_keep`` if > 0).

        attention_mask: None (causal), (B, L) bool key padding (still causal) or (B, L, L) used as
        given; with a KV cache, key_len = kv_cache_length + L: (B, key_len) key padding over all slots
        or (B, L, key_len). The logits cover out_len = L positions (``logits_to_keep`` if > 0).
        positions: RoPE positions; default ``kv_cache_length + 0..L-1``.
        token_type_ids: accepted for interface symmetry, unused.
        logits_to_keep: project only the last N positions to the vocabulary (generation needs one;
            with a large vocabulary the full projection of a prompt dominates its cost).
        """
        x = self.forward_hidden(x_t, attention_mask, positions)  # (B, L, D)
        if logits_to_keep > 0:
            x = x[:, -logits_to_keep:]  # (B, N, D)
        return self.lm_head(x)  # (B, L | N, V)

    def forward_hidden(
        self,
        x_t: Integer[TT, " batch seq_len"],
        attention_mask: Bool[TT, " batch seq_len key_len"] | Bool[TT, " batch key_len"] | None = None,
        positions: Integer[TT, " batch seq_len"] | None = None,
    ) -> Float[TT, " batch seq_len d_model"]:
        """The final-normed hidden states that ``forward`` projects onto the vocabulary (same arguments).

        ``forward(...) == lm_head(forward_hidden(...))``; the loss feeds them to the fused
        head + cross-entropy (``xlm_core.modules.linear_cross_entropy``) instead of the logits.
        """
        if x_t.ndim != 2:
            raise ValueError(f"x_t must have shape (batch, seq_len), got {tuple(x_t.shape)}.")
        B, L = x_t.shape
        past = self.kv_cache_length
        if positions is None:
            positions = torch.arange(past, past + L, device=x_t.device).unsqueeze(0).expand(B, L)
        elif positions.shape != x_t.shape:
            raise ValueError(f"positions must have the shape of x_t {tuple(x_t.shape)}, got {tuple(positions.shape)}.")
        self._check_inputs(x_t, positions)
        if self._mask_is_causal_default(attention_mask, B, L, past):
            attention_mask = None  # same attention as no mask: lets SDPA take its fast paths
        mask, is_causal = build_attention_mask(
            attention_mask, L, past_len=past, causal=True, device=x_t.device
        )  # (B | 1, 1, L, past + L) or None
        if attention_mask is None and L == 1:
            mask = None  # the one new query sits at the newest slot and may see every filled slot
        cos, sin = self.rotary_emb.cos_sin(positions)  # (B, 1, L, rotary_dim) float32

        x = self.embed_inputs(x_t, positions, attention_mask)  # (B, L, D); causal mixing: the previous token only
        for layer in self.layers:
            x = layer(x, cos, sin, attn_mask=mask, is_causal=is_causal)  # (B, L, D)
        return self.final_layer.normalize(x)  # (B, L, D)

    def decode_step(
        self,
        token: Integer[TT, "batch 1"],
        position: Integer[TT, "batch 1"],
        slot: Integer[TT, ""],
        key_mask: Bool[TT, "batch slots"],
    ) -> Float[TT, "batch vocab_size"]:
        """Next-token logits for one new token per row, written to cache slot ``slot``.

        The static-shape decoding step (for torch.compile / CUDA graphs): every tensor has the same
        shape each step, nothing synchronises with the host and no input is checked (the caller,
        ``ARLMPredictor``, produces them). ``key_mask`` covers all cache slots (True = real token);
        slots after ``slot`` are hidden here, so the caller may pass one mask for the whole call.
        Same result as ``forward`` of the token with a cache, up to floating-point reduction order.
        """
        if any(layer.kv_cache is None for layer in self.layers):
            raise ValueError("decode_step writes into the KV cache: call set_kv_cache (and fill it) first.")
        slots = torch.arange(key_mask.shape[1], device=key_mask.device)
        mask = (key_mask & (slots <= slot))[:, None, None, :]  # (B, 1, 1, S)
        cos, sin = self.rotary_emb.cos_sin(position)  # (B, 1, 1, rotary_dim)
        x = self.embed_tokens(token)  # (B, 1, D)
        if self.embed_positions is not None:
            x = x + self.embed_positions(position)
        if self.neighbour_mixing is not None:  # the previous token's state comes from the cache
            x = self.neighbour_mixing.step(x, slot, key_mask)
        for layer in self.layers:
            x = layer(x, cos, sin, attn_mask=mask, cache_slot=slot)
        return self.final_layer(x)[:, -1]  # (B, V)

    def _check_inputs(self, x_t: Integer[TT, "B L"], positions: Integer[TT, "B L"]) -> None:
        """Fail with a readable message on out-of-range ids/positions (``check_ids_and_positions``).

        Decoding steps on an accelerator (KV cache already filled) use an asynchronous device assert,
        so generation does not synchronise with the host every token.
        """
        if self.force_flash_attn and not x_t.is_cuda and not self._warned_flash_on_cpu:
            warnings.warn("force_flash_attn=True has no effect on CPU; using the default SDPA backend.", stacklevel=2)
            self._warned_flash_on_cpu = True
        sync = x_t.device.type == "cpu" or self.kv_cache_length == 0
        check_ids_and_positions(x_t, positions, self.num_embeddings, self.max_length, sync=sync)

    @staticmethod
    def _mask_is_causal_default(attention_mask: TT | None, batch: int, query_len: int, past: int) -> bool:
        """True when ``attention_mask`` allows exactly what no mask allows (plain causal attention).

        That holds for an all-True (B, S) key-padding mask and for a (B, L, L) mask equal to
        ``tril`` (the reference 3-D mask of an unpadded batch). Checking costs one host sync, so it is
        skipped for accelerator decoding steps, where the mask is used as given.
        """
        if attention_mask is None or (past > 0 and attention_mask.device.type != "cpu"):
            return False
        key_len = past + query_len
        if attention_mask.ndim == 2 and attention_mask.shape == (batch, key_len):
            return bool(attention_mask.all())
        if attention_mask.ndim == 3 and past == 0 and attention_mask.shape == (batch, query_len, query_len):
            mask = attention_mask if attention_mask.dtype == torch.bool else attention_mask != 0
            tril = torch.ones(query_len, query_len, dtype=torch.bool, device=mask.device).tril()
            return torch.equal(mask, tril.expand_as(mask))
        return False

    # --- KV cache (contract in docs/architecture.md) -------------------------------------------
    def set_kv_cache(
        self,
        batch_size: int,
        max_seq_length: int,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        """Allocate an empty cache of ``max_seq_length`` slots in every layer (replacing any old one)."""
        param = self.embed_tokens.weight
        for layer in self.layers:
            layer.kv_cache = KVCache(
                batch_size,
                self.nhead,
                max_seq_length,
                self.head_dim,
                device=device if device is not None else param.device,
                dtype=dtype if dtype is not None else param.dtype,
            )
        if self.neighbour_mixing is not None:  # the previous token's embedding, in the model's dtype
            self.neighbour_mixing.set_cache(
                batch_size, max_seq_length, device=device if device is not None else param.device
            )

    def clear_kv_cache(self) -> None:
        """Drop every layer's cache; the model goes back to full-sequence forward passes."""
        for layer in self.layers:
            layer.kv_cache = None
        if self.neighbour_mixing is not None:
            self.neighbour_mixing.clear_cache()

    @property
    def kv_cache_length(self) -> int:
        """Number of cache slots filled so far (0 when no cache is set)."""
        cache = self.layers[0].kv_cache if len(self.layers) else None
        return cache.length if cache is not None else 0
