"""Tiny one-layer causal attention LM following the ARLM model and KV-cache contracts."""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float, Integer
from torch import Tensor as TT
from torch import nn


class TinyCausalLM(nn.Module):
    """Token + position embedding, one single-head causal attention block, LayerNorm, vocab head."""

    def __init__(self, vocab_size: int, d_model: int = 16, max_length: int = 64) -> None:
        super().__init__()
        self.tok = nn.Embedding(vocab_size, d_model)
        self.pos = nn.Embedding(max_length, d_model)
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab_size)
        self.kv_cache_length = 0
        self._cache: tuple[TT, TT] | None = None

    def set_kv_cache(self, batch_size: int, max_seq_length: int, device=None, dtype=None) -> None:
        d = self.proj.in_features
        shape = (batch_size, max_seq_length, d)
        self._cache = (torch.zeros(shape, device=device, dtype=dtype), torch.zeros(shape, device=device, dtype=dtype))
        self.kv_cache_length = 0

    def clear_kv_cache(self) -> None:
        self._cache = None
        self.kv_cache_length = 0

    def allowed(self, attention_mask: TT | None, batch: int, new: int, start: int) -> Bool[TT, "batch new slots"]:
        """(B, T, S) attention pattern: causal over slots, key padding from a (B, S) mask."""
        slots = start + new
        if attention_mask is not None and attention_mask.dim() == 3:
            return attention_mask.bool()
        query_slot = start + torch.arange(new).unsqueeze(1)
        causal = torch.arange(slots).unsqueeze(0) <= query_slot
        keys = torch.ones(batch, slots, dtype=torch.bool) if attention_mask is None else attention_mask.bool()
        return causal.unsqueeze(0) & keys.unsqueeze(1)

    def attend(self, q: TT, k: TT, v: TT, allowed: TT, start: int) -> TT:
        new = q.shape[1]
        self_slot = torch.arange(k.shape[1]).unsqueeze(0) == (start + torch.arange(new)).unsqueeze(1)
        allowed = allowed | self_slot  # a query always sees itself: no all-masked rows
        scores = (q @ k.transpose(1, 2)) / q.shape[-1] ** 0.5
        return F.softmax(scores.masked_fill(~allowed, float("-inf")), dim=-1) @ v

    def forward(
        self,
        x_t: Integer[TT, "batch seq_len"],
        attention_mask: Bool[TT, "batch seq_len"] | Bool[TT, "batch seq_len seq_len"] | None = None,
        positions: Integer[TT, "batch seq_len"] | None = None,
    ) -> Float[TT, "batch seq_len vocab_size"]:
        batch, new = x_t.shape
        start = self.kv_cache_length if self._cache is not None else 0
        if positions is None:
            positions = (start + torch.arange(new)).unsqueeze(0).expand(batch, -1)
        h = self.tok(x_t) + self.pos(positions)
        q, k, v = self.qkv(h).chunk(3, dim=-1)
        if self._cache is not None:
            k_cache, v_cache = self._cache
            k_cache[:, start : start + new] = k
            v_cache[:, start : start + new] = v
            k, v = k_cache[:, : start + new], v_cache[:, : start + new]
            self.kv_cache_length = start + new
        h = h + self.proj(self.attend(q, k, v, self.allowed(attention_mask, batch, new, start), start))
        return self.head(self.norm(h))

    def get_named_params_for_weight_decay(self) -> Iterator[tuple[str, nn.Parameter]]:
        for name, p in self.named_parameters():
            if name.endswith("weight") and name.split(".")[0] in {"qkv", "proj", "head"}:
                yield name, p

    def get_named_params_for_no_weight_decay(self) -> Iterator[tuple[str, nn.Parameter]]:
        decay = {n for n, _ in self.get_named_params_for_weight_decay()}
        for name, p in self.named_parameters():
            if name not in decay:
                yield name, p
