"""Architecture options every family can switch on (off by default): learned absolute positions and
neighbour mixing, in a bidirectional form and a causal form that keeps an auto-regressive model causal.

Both act on the token embeddings before the first layer; families expose them with the same config
keys, ``absolute_positions: bool`` and ``neighbour_mixing: none | bidirectional | causal``
(docs/families.md, "Architecture options"). Why they exist: docs/mlm.md ("Star graphs").
"""

from __future__ import annotations

from typing import Literal

import torch
from jaxtyping import Bool, Float, Integer
from torch import Tensor as TT
from torch import nn

__all__ = [
    "NEIGHBOUR_MIXING_MODES",
    "MixingMode",
    "neighbour_mixing_mode",
    "AbsolutePositionEmbedding",
    "NeighbourMixing",
    "StateCache",
    "neighbour_visibility",
]

MixingMode = Literal["bidirectional", "causal"]
NEIGHBOUR_MIXING_MODES = ("none", "bidirectional", "causal")


def neighbour_mixing_mode(
    value: bool | str | None, allowed: tuple[str, ...] = NEIGHBOUR_MIXING_MODES, family: str = "this model"
) -> MixingMode | None:
    """The mixing mode of a config value: ``none`` / false / null -> None, ``true`` -> ``bidirectional``
    (the MLM's meaning before the causal form existed), or the mode named.

    ``allowed`` lists the modes the family accepts; a causal model leaves out ``bidirectional``.
    """
    if value is None or value is False or value == "none":
        mode: str | None = None
    elif value is True:
        mode = "bidirectional"
    else:
        mode = value
    if mode is not None and (mode not in NEIGHBOUR_MIXING_MODES or mode not in allowed):
        causal_hint = (
            " (bidirectional mixing lets each token see the next one, which a causal model must not)"
            if mode == "bidirectional"
            else ""
        )
        raise ValueError(
            f"neighbour_mixing={value!r} is not supported by {family}{causal_hint}; use one of {', '.join(allowed)}."
        )
    return mode  # type: ignore[return-value]


class AbsolutePositionEmbedding(nn.Embedding):
    """A learned vector per position, added to the token embedding (``absolute_positions: true``).

    Rotary embeddings only tell a head the offset between two tokens; an absolute embedding also tells
    it where a token sits, e.g. whether it is the first or the second node of an edge pair of a
    flattened edge list (docs/mlm.md). Looked up with the same positions the rotary embedding uses.
    """

    def __init__(self, max_length: int, d_model: int) -> None:
        super().__init__(max_length, d_model)


class StateCache(nn.Module):
    """Per-slot hidden states of the tokens fed so far, beside the KV cache, filled left to right.

    Causal neighbour mixing needs the previous token's (pre-mixing) embedding when a decoding step
    feeds one new token; this holds it. Non-persistent buffers: never in a checkpoint.
    """

    h: TT

    def __init__(
        self,
        batch_size: int,
        max_seq_length: int,
        dim: int,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.register_buffer(
            "h", torch.zeros(batch_size, max_seq_length, dim, device=device, dtype=dtype), persistent=False
        )
        self.length = 0

    def update(self, h_new: Float[TT, "batch t_new dim"]) -> Float[TT, "batch total dim"]:
        """Write ``h_new`` at slots ``[length, length + t_new)``; return every filled slot."""
        start, end = self.length, self.length + h_new.shape[1]
        if h_new.shape[0] != self.h.shape[0] or end > self.h.shape[1]:
            raise ValueError(
                f"StateCache holds {self.h.shape[0]} rows x {self.h.shape[1]} slots but got {tuple(h_new.shape[:2])} "
                f"new states after {start}; call set_kv_cache with the batch size and length in use."
            )
        self.h[:, start:end] = h_new.to(self.h.dtype)
        self.length = end
        return self.h[:, :end]

    def write(self, h_new: Float[TT, "batch 1 dim"], slot: Integer[TT, ""]) -> Float[TT, "batch slots dim"]:
        """Static-shape write of one step's state at ``slot`` (a tensor); returns every slot (``length`` unchanged)."""
        self.h.index_copy_(1, slot.reshape(1), h_new.to(self.h.dtype))
        return self.h


class NeighbourMixing(nn.Module):
    """``h_i + W_prev h_{i-1} + W_next h_{i+1}`` (bidirectional) or ``h_i + W_prev h_{i-1}`` (causal).

    Gives every position its neighbours' identities in the residual stream before attention, so a
    look-up such as "the token just before the one equal to X" needs one attention layer instead of
    two (docs/mlm.md). A neighbour contributes only where the model's attention mask allows it (see
    :meth:`forward`): padding and tokens a position may not attend to contribute nothing.
    The causal form never reads a later token, so an auto-regressive model stays causal; with a
    :class:`StateCache` set (:meth:`set_cache`) a call may feed only the new tokens, and the first one
    mixes in the previous call's last token.
    """

    def __init__(self, d_model: int, mode: MixingMode = "bidirectional") -> None:
        super().__init__()
        if mode not in ("bidirectional", "causal"):
            raise ValueError(f"NeighbourMixing mode must be 'bidirectional' or 'causal', got {mode!r}.")
        self.mode = mode
        self.prev = nn.Linear(d_model, d_model, bias=False)
        self.next = nn.Linear(d_model, d_model, bias=False) if mode == "bidirectional" else None
        self.cache: StateCache | None = None

    def forward(
        self,
        h: Float[TT, "batch seq_len d_model"],
        attention_mask: Bool[TT, "batch key_len"] | Bool[TT, "batch seq_len key_len"] | None = None,
    ) -> Float[TT, "batch seq_len d_model"]:
        """Mix each position's neighbours into it.

        ``attention_mask`` is the model's: None (every token real), (B, S) key padding (a padded
        neighbour contributes nothing) or (B, L, S) (query i mixes in a neighbour only where it may
        attend to it). With a cache, ``S`` = cached + new slots and the cached states come first.
        """
        L = h.shape[1]
        past = self.cache.length if self.cache is not None else 0
        states = self.cache.update(h) if self.cache is not None else h  # (B, past + L, D)
        prev_ok = next_ok = None
        if attention_mask is not None and attention_mask.ndim == 2:
            states = states * attention_mask.unsqueeze(-1).to(h.dtype)  # padding contributes nothing
        elif attention_mask is not None:
            prev_ok, next_ok = neighbour_visibility(attention_mask, L, past)
        zero = torch.zeros_like(states[:, :1])
        if past == 0:
            before = torch.cat([zero, states[:, :-1]], dim=1)  # token i-1 at position i
        else:
            before = states[:, past - 1 : past + L - 1]  # the first new token's predecessor is cached
        if prev_ok is not None:
            before = before * prev_ok.unsqueeze(-1).to(h.dtype)
        out = h + self.prev(before)
        if self.next is not None:
            after = torch.cat([states[:, 1:], zero], dim=1)  # token i+1 at position i (no cache: past is 0)
            if next_ok is not None:
                after = after * next_ok.unsqueeze(-1).to(h.dtype)
            out = out + self.next(after)
        return out

    def step(
        self, h: Float[TT, "batch 1 d_model"], slot: Integer[TT, ""], key_mask: Bool[TT, "batch slots"]
    ) -> Float[TT, "batch 1 d_model"]:
        """One static-shape decoding step (causal form): store ``h`` at cache slot ``slot`` and mix in
        slot ``slot - 1`` where ``key_mask`` marks it real. No host sync, same shapes every step."""
        assert self.cache is not None, "NeighbourMixing.step needs a cache: call set_cache first."
        states = self.cache.write(h, slot)  # (B, S, D)
        prev_slot = (slot - 1).clamp(min=0).reshape(1)
        before = states.index_select(1, prev_slot)  # (B, 1, D)
        ok = key_mask.index_select(1, prev_slot) & (slot > 0)  # (B, 1)
        return h + self.prev(before * ok.unsqueeze(-1).to(h.dtype))

    def set_cache(
        self,
        batch_size: int,
        max_seq_length: int,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        """Allocate the previous-token state cache (causal form only; replaces any old one)."""
        if self.mode != "causal":
            raise ValueError(
                "only causal neighbour mixing can decode incrementally; bidirectional mixing reads "
                "the next token, which a KV-cache step has not seen yet."
            )
        self.cache = StateCache(
            batch_size,
            max_seq_length,
            self.prev.in_features,
            device=device if device is not None else self.prev.weight.device,
            dtype=dtype if dtype is not None else self.prev.weight.dtype,
        )

    def clear_cache(self) -> None:
        """Drop the state cache; calls go back to whole sequences."""
        self.cache = None

    def extra_repr(self) -> str:
        return f"mode={self.mode}"


def neighbour_visibility(
    attention_mask: Bool[TT, "batch key_len"] | Bool[TT, "batch query_len key_len"] | None,
    query_len: int,
    past_len: int = 0,
) -> tuple[Bool[TT, "batch query_len"] | None, Bool[TT, "batch query_len"] | None]:
    """``(prev_ok, next_ok)``: may query i mix in the token just before / after it?

    A position mixes in a neighbour only when its attention may see that neighbour: with a (B, S)
    key-padding mask, when the neighbour is a real token; with a (B, Lq, S) mask, when
    ``mask[b, i, neighbour]`` is True (so packed documents do not mix across their boundaries).
    Key slots ``[0, past_len)`` are cached tokens; query i sits at slot ``past_len + i``. None: all.
    """
    if attention_mask is None:
        return None, None
    mask = attention_mask if attention_mask.dtype == torch.bool else attention_mask != 0
    if mask.ndim == 2:
        none = torch.zeros_like(mask[:, :1])
        prev_ok = torch.cat([none, mask], dim=1)[:, past_len : past_len + query_len]  # key slot past + i - 1
        next_ok = torch.cat([mask, none], dim=1)[:, past_len + 1 : past_len + query_len + 1]  # slot past + i + 1
        return prev_ok, next_ok
    key_len = mask.shape[-1]
    rows = torch.arange(query_len, device=mask.device)
    prev_cols, next_cols = rows + past_len - 1, rows + past_len + 1
    prev_ok = mask[:, rows, prev_cols.clamp(min=0)] & (prev_cols >= 0)
    next_ok = mask[:, rows, next_cols.clamp(max=key_len - 1)] & (next_cols < key_len)
    return prev_ok, next_ok
