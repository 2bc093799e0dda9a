"""A bidirectional rotary Transformer: the network of every masked family (MLM, MDLM).

Token embedding (optionally plus learned absolute positions and neighbour mixing, the architecture
options of ``xlm_core.modules.position_aids``) -> bidirectional rotary layers -> final layer norm ->
output projection. Masked families subclass it and add what is theirs (e.g. the MDLM's SUBS output).
Its layers come from ``xlm_core.modules.network.RotaryNetwork``, which fixes the parameter names and the
initialisation order, so checkpoints of every subclass keep loading and the same seed gives the same weights.
"""

from __future__ import annotations

from typing import Literal

import torch
from jaxtyping import Bool, Float, Integer
from torch import Tensor as TT

from xlm_core.modules.model_kit import check_ids_and_positions, validate_model_config
from xlm_core.modules.network import RotaryNetwork
from xlm_core.modules.position_aids import neighbour_mixing_mode
from xlm_core.modules.transformer import build_attention_mask

__all__ = ["BidirectionalRotaryTransformer"]


class BidirectionalRotaryTransformer(RotaryNetwork):
    """Token embedding -> ``num_layers`` bidirectional rotary layers -> final layer -> logits.

    A (B, L) ``attention_mask`` is key padding only: real tokens attend to all real tokens in both
    directions; a (B, L, L) mask (e.g. packed documents) is used as given. Two optional position aids:
    ``absolute_positions`` adds a learned embedding of each token's position (RoPE alone only tells a
    head relative offsets, not e.g. whether a token sits at an even or odd place of a pair list), and
    ``neighbour_mixing`` (``bidirectional``, or ``true``: ``h_i + W_prev h_{i-1} + W_next h_{i+1}``;
    ``causal``: the previous token only; see ``xlm_core.modules.NeighbourMixing``).
    With ``mask_idx`` set, the mask token's logit is the dtype's lowest finite value: the model never
    predicts a mask (finite, so losses and logit comparisons stay finite).
    """

    family_label = "this model"
    """How configuration errors name the model (a subclass sets e.g. ``"the MLM"``)."""

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
        neighbour_mixing: bool | str | None = False,
    ) -> None:
        validate_model_config(
            num_embeddings, d_model, num_layers, nhead, rotary_emb_dim, max_length, padding_idx, mask_idx
        )
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
            mixing=neighbour_mixing_mode(neighbour_mixing, family=self.family_label),
        )
        self.mask_idx = mask_idx

    def forward(
        self,
        x_t: Integer[TT, " *batch seq_len"],
        attention_mask: Bool[TT, " *batch seq_len"] | Bool[TT, " *batch seq_len seq_len"] | None = None,
        positions: Integer[TT, " *batch seq_len"] | None = None,
        token_type_ids: Integer[TT, " *batch seq_len"] | None = None,
    ) -> Float[TT, " *batch seq_len vocab_size"]:
        """Logits for every position of ``x_t``.

        attention_mask: None (all real), (B, L) bool key padding, or (B, L, L) used as given (also by
            neighbour mixing: query i mixes in i - 1 / i + 1 only where the mask lets it attend to them).
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
        set to the lowest finite value; a loss passes that class as ``excluded_class`` to the fused
        head + cross-entropy (``xlm_core.modules.linear_cross_entropy``).
        """
        if x_t.ndim != 2:
            raise ValueError(f"x_t must have shape (batch, seq_len), got {tuple(x_t.shape)}.")
        B, L = x_t.shape
        if positions is None:
            positions = torch.arange(L, device=x_t.device).unsqueeze(0).expand(B, L)
        elif positions.shape != x_t.shape:
            raise ValueError(f"positions must have the shape of x_t {tuple(x_t.shape)}, got {tuple(positions.shape)}.")
        check_ids_and_positions(x_t, positions, self.num_embeddings, self.max_length)
        mixing_mask = attention_mask  # neighbour mixing skips padding even when attention needs no mask
        if attention_mask is not None and attention_mask.ndim == 2 and bool(attention_mask.bool().all()):
            attention_mask = None  # nothing to mask: let SDPA run without a mask tensor
        mask, _ = build_attention_mask(attention_mask, L, causal=False, device=x_t.device)  # (B, 1, L, L) | None
        cos, sin = self.rotary_emb.cos_sin(positions)  # (B, 1, L, rotary_dim)

        x = self.embed_inputs(x_t, positions, mixing_mask)  # (B, L, D)
        for layer in self.layers:
            x = layer(x, cos, sin, attn_mask=mask, is_causal=False)  # (B, L, D)
        return self.final_layer.normalize(x)  # (B, L, D)
