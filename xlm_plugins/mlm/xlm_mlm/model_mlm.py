"""RotaryTransformerMLMModel: a bidirectional rotary transformer that predicts every position's token."""

from __future__ import annotations

import math
from typing import Iterator, Literal

import torch
from jaxtyping import Bool, Float, Integer
from torch import Tensor as TT
from torch import nn

from xlm_core.modules import (
    RotaryEmbedding,
    RotaryTransformerFinalLayer,
    RotaryTransformerLayer,
    build_attention_mask,
    linear_weights,
)

__all__ = ["RotaryTransformerMLMModel", "NeighbourMixing"]


class NeighbourMixing(nn.Module):
    """``h_i + W_prev h_{i-1} + W_next h_{i+1}``: each token sees its two neighbours before attention.

    Gives every position its neighbours' identities in the residual stream, so a look-up such as
    "the token just before the one equal to X" needs one attention layer instead of two. Padded
    neighbours (``attention_mask`` False) contribute nothing.
    """

    def __init__(self, d_model: int) -> None:
        super().__init__()
        self.prev = nn.Linear(d_model, d_model, bias=False)
        self.next = nn.Linear(d_model, d_model, bias=False)

    def forward(
        self, h: Float[TT, "batch seq_len d_model"], attention_mask: Bool[TT, "batch seq_len"] | None
    ) -> Float[TT, "batch seq_len d_model"]:
        real = h if attention_mask is None else h * attention_mask.unsqueeze(-1).to(h.dtype)
        zero = torch.zeros_like(real[:, :1])
        before = torch.cat([zero, real[:, :-1]], dim=1)  # token i-1 at position i
        after = torch.cat([real[:, 1:], zero], dim=1)  # token i+1 at position i
        return h + self.prev(before) + self.next(after)


class RotaryTransformerMLMModel(nn.Module):
    """Token embedding -> ``num_layers`` bidirectional rotary layers -> final layer -> logits.

    A (B, L) ``attention_mask`` is key padding only: real tokens attend to all real tokens in both
    directions. Two optional position aids: ``absolute_positions`` adds a learned embedding of each
    token's position (RoPE alone only tells a head relative offsets, not e.g. whether a token sits
    at an even or odd place of a pair list), and ``neighbour_mixing`` (see :class:`NeighbourMixing`).
    With ``mask_idx`` set, the mask token's logit is the dtype's lowest finite value: the model never
    predicts a mask (finite, so losses and logit comparisons stay finite).
    """

    def __init__(
        self,
        num_embeddings: int,
        d_model: int,
        num_layers: int,
        nhead: int,
        padding_idx: int | None = 0,
        mask_idx: int | None = None,
        dim_feedforward: int | None = None,
        dropout: float = 0.1,
        activation: Literal["relu", "gelu"] = "relu",
        layer_norm_eps: float = 1e-5,
        rotary_emb_dim: int = 64,
        max_length: int = 1024,
        final_layer_without_normalization: bool = False,
        absolute_positions: bool = False,
        neighbour_mixing: bool = False,
    ) -> None:
        super().__init__()
        _validate_config(num_embeddings, d_model, num_layers, nhead, padding_idx, mask_idx, rotary_emb_dim, max_length)
        self.num_embeddings = num_embeddings
        self.d_model = d_model
        self.num_layers = num_layers
        self.nhead = nhead
        self.padding_idx = padding_idx
        self.mask_idx = mask_idx
        self.max_length = max_length

        self.embed_tokens = nn.Embedding(num_embeddings, d_model, padding_idx=padding_idx)
        self.embed_positions = nn.Embedding(max_length, d_model) if absolute_positions else None
        self.neighbour_mixing = NeighbourMixing(d_model) if neighbour_mixing else None
        self.rotary_emb = RotaryEmbedding(rotary_emb_dim, max_length=max_length)
        self.layers = nn.ModuleList(
            RotaryTransformerLayer(
                d_model, nhead, dim_feedforward=dim_feedforward, dropout=dropout,
                activation=activation, layer_norm_eps=layer_norm_eps,
            )
            for _ in range(num_layers)
        )
        self.final_layer = RotaryTransformerFinalLayer(
            d_model, num_embeddings, layer_norm_eps=layer_norm_eps,
            use_final_layer_norm=not final_layer_without_normalization,
        )
        self._init_weights()

    def _init_weights(self) -> None:
        """N(0, 0.02) weights, zero biases, residual projections scaled down by depth."""
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, mean=0.0, std=0.02)
                if getattr(module, "bias", None) is not None:
                    nn.init.zeros_(module.bias)
        residual_std = 0.02 / math.sqrt(2 * self.num_layers)
        for layer in self.layers:
            nn.init.normal_(layer.o_proj.weight, mean=0.0, std=residual_std)
            nn.init.normal_(layer.mlp[2].weight, mean=0.0, std=residual_std)
        if self.padding_idx is not None:
            with torch.no_grad():
                self.embed_tokens.weight[self.padding_idx].zero_()

    @property
    def lm_head(self) -> nn.Linear:
        """The output projection onto the vocabulary (the fused loss head reads its weight)."""
        return self.final_layer.linear

    def forward(
        self,
        x_t: Integer[TT, " *batch seq_len"],
        attention_mask: Bool[TT, " *batch seq_len"] | Bool[TT, " *batch seq_len seq_len"] | None = None,
        positions: Integer[TT, " *batch seq_len"] | None = None,
        token_type_ids: Integer[TT, " *batch seq_len"] | None = None,
    ) -> Float[TT, " *batch seq_len vocab_size"]:
        """Logits for every position of ``x_t``.

        attention_mask: None (all real), (B, L) bool key padding, or (B, L, L) used as given.
        positions: RoPE (and absolute-embedding) positions; default 0..L-1.
        token_type_ids: accepted for interface symmetry, unused.
        """
        logits = self.lm_head(self.forward_hidden(x_t, attention_mask, positions))  # (B, L, V)
        if self.mask_idx is not None:
            lowest = torch.finfo(logits.dtype).min
            logits = logits.index_fill(-1, torch.tensor([self.mask_idx], device=logits.device), lowest)
        return logits

    def forward_hidden(
        self,
        x_t: Integer[TT, " *batch seq_len"],
        attention_mask: Bool[TT, " *batch seq_len"] | Bool[TT, " *batch seq_len seq_len"] | None = None,
        positions: Integer[TT, " *batch seq_len"] | None = None,
    ) -> Float[TT, " *batch seq_len d_model"]:
        """The final-normed hidden states that ``forward`` projects onto the vocabulary (same arguments).

        ``forward(...)`` is ``lm_head(forward_hidden(...))`` with the mask token's logit (``mask_idx``)
        set to the lowest finite value; the loss passes that class as ``excluded_class`` to the fused
        head + cross-entropy (``xlm_core.modules.linear_cross_entropy``).
        """
        if x_t.ndim != 2:
            raise ValueError(f"x_t must have shape (batch, seq_len), got {tuple(x_t.shape)}.")
        B, L = x_t.shape
        if positions is None:
            positions = torch.arange(L, device=x_t.device).unsqueeze(0).expand(B, L)
        elif positions.shape != x_t.shape:
            raise ValueError(f"positions must have the shape of x_t {tuple(x_t.shape)}, got {tuple(positions.shape)}.")
        self._check_inputs(x_t, positions)
        key_padding = attention_mask if attention_mask is not None and attention_mask.ndim == 2 else None
        if key_padding is not None:
            key_padding = key_padding.bool()
            if bool(key_padding.all()):
                attention_mask = None  # nothing to mask: let SDPA run without a mask tensor
        mask, _ = build_attention_mask(attention_mask, L, causal=False, device=x_t.device)  # (B, 1, L, L) | None
        cos, sin = self.rotary_emb.cos_sin(positions)  # (B, 1, L, rotary_dim)

        x = self.embed_tokens(x_t)  # (B, L, D)
        if self.embed_positions is not None:
            x = x + self.embed_positions(positions)
        if self.neighbour_mixing is not None:
            x = self.neighbour_mixing(x, key_padding)
        for layer in self.layers:
            x = layer(x, cos, sin, attn_mask=mask, is_causal=False)  # (B, L, D)
        return self.final_layer.normalize(x)  # (B, L, D)

    def _check_inputs(self, x_t: Integer[TT, "B L"], positions: Integer[TT, "B L"]) -> None:
        """Fail with a readable message on out-of-range ids or positions."""
        if x_t.numel() == 0 or torch.compiler.is_compiling():
            return
        lo, hi, pos_lo, pos_hi = torch.stack((*torch.aminmax(x_t), *torch.aminmax(positions))).tolist()
        if lo < 0 or hi >= self.num_embeddings:
            raise ValueError(
                f"Token ids must lie in [0, {self.num_embeddings}) but the batch holds ids in [{lo}, {hi}]; "
                "set model.num_embeddings to len(tokenizer) and never feed -100 labels as input ids."
            )
        if pos_lo < 0 or pos_hi >= self.max_length:
            raise ValueError(
                f"Positions must lie in [0, max_length={self.max_length}) but got [{pos_lo}, {pos_hi}]; "
                "raise model.max_length or shorten the input."
            )

    # --- optimiser parameter groups -------------------------------------------------------------
    def get_named_params_for_weight_decay(self) -> Iterator[tuple[str, nn.Parameter]]:
        """Weight matrices of the Linear layers."""
        decay = {id(p) for _, p in linear_weights(self)}
        for name, param in self.named_parameters():
            if id(param) in decay:
                yield name, param

    def get_named_params_for_no_weight_decay(self) -> Iterator[tuple[str, nn.Parameter]]:
        """Everything else: biases, LayerNorm parameters, embeddings."""
        decay = {id(p) for _, p in linear_weights(self)}
        for name, param in self.named_parameters():
            if id(param) not in decay:
                yield name, param


def _validate_config(
    num_embeddings: int, d_model: int, num_layers: int, nhead: int, padding_idx: int | None,
    mask_idx: int | None, rotary_emb_dim: int, max_length: int,
) -> None:
    """Reject inconsistent constructor arguments with a message that says what to change."""
    for name, value in (("num_embeddings", num_embeddings), ("d_model", d_model),
                        ("num_layers", num_layers), ("nhead", nhead), ("max_length", max_length)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}.")
    if d_model % nhead != 0:
        raise ValueError(f"d_model ({d_model}) must be divisible by nhead ({nhead}); pick nhead dividing d_model.")
    head_dim = d_model // nhead
    if rotary_emb_dim < 0 or rotary_emb_dim > head_dim or rotary_emb_dim % 2 != 0:
        raise ValueError(
            f"rotary_emb_dim ({rotary_emb_dim}) must be even and at most the head dimension d_model / nhead = {head_dim}."
        )
    for name, value in (("padding_idx", padding_idx), ("mask_idx", mask_idx)):
        if value is not None and not 0 <= value < num_embeddings:
            raise ValueError(f"{name} ({value}) must lie in [0, num_embeddings={num_embeddings}) or be None.")
    if mask_idx is not None and mask_idx == padding_idx:
        raise ValueError(f"mask_idx and padding_idx are both {mask_idx}; the mask token needs its own id.")
