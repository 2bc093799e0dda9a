"""RotaryNetwork: the layers every rotary family model is made of, built and initialised in one place.

Token embedding, the optional position aids (``xlm_core.modules.position_aids``), RoPE, the stack of
rotary layers and the final layer. A family's model subclasses it and writes the forward pass that is
its own (causal or bidirectional attention, KV cache, output adjustments). The attribute names and the
order the modules are built in are fixed here: they are the checkpoint keys, and ``gpt2_init_`` draws
the initial weights in that order, so the same seed gives the same weights in every subclass.
"""

from __future__ import annotations

from typing import Literal

from jaxtyping import Bool, Float, Integer
from torch import Tensor as TT
from torch import nn

from xlm_core.modules.model_kit import WeightDecayGroups, gpt2_init_
from xlm_core.modules.position_aids import AbsolutePositionEmbedding, NeighbourMixing
from xlm_core.modules.rotary import RotaryEmbedding
from xlm_core.modules.transformer import RotaryTransformerFinalLayer, rotary_layer_stack

__all__ = ["RotaryNetwork"]


class RotaryNetwork(WeightDecayGroups, nn.Module):
    """Embedding (+ absolute positions, + neighbour mixing) -> rotary layers -> final layer, GPT-2 initialised.

    ``mixing`` is a neighbour-mixing mode already checked by the subclass (``neighbour_mixing_mode``:
    ``"bidirectional"``, ``"causal"`` or None for none); ``rotary_emb_dim`` None rotates every channel of a
    head. Validate the sizes (``validate_model_config``) before calling this constructor.
    """

    def __init__(
        self,
        num_embeddings: int,
        d_model: int,
        num_layers: int,
        nhead: int,
        padding_idx: int | None = None,
        dim_feedforward: int | None = None,
        dropout: float = 0.0,
        activation: Literal["relu", "gelu"] = "relu",
        layer_norm_eps: float = 1e-5,
        rotary_emb_dim: int | None = None,
        max_length: int = 1024,
        final_layer_without_normalization: bool = False,
        absolute_positions: bool = False,
        mixing: str | None = None,
        force_flash_attn: bool = False,
    ) -> None:
        super().__init__()
        self.num_embeddings = num_embeddings
        self.d_model = d_model
        self.num_layers = num_layers
        self.nhead = nhead
        self.padding_idx = padding_idx
        self.max_length = max_length

        self.embed_tokens = nn.Embedding(num_embeddings, d_model, padding_idx=padding_idx)
        self.embed_positions = AbsolutePositionEmbedding(max_length, d_model) if absolute_positions else None
        self.neighbour_mixing = NeighbourMixing(d_model, mixing) if mixing is not None else None
        self.rotary_emb = RotaryEmbedding(
            d_model // nhead if rotary_emb_dim is None else rotary_emb_dim, max_length=max_length
        )
        self.layers = rotary_layer_stack(
            num_layers, d_model, nhead, dim_feedforward, dropout, activation, layer_norm_eps, force_flash_attn
        )
        self.final_layer = RotaryTransformerFinalLayer(
            d_model,
            num_embeddings,
            layer_norm_eps=layer_norm_eps,
            use_final_layer_norm=not final_layer_without_normalization,
        )
        gpt2_init_(self, self.layers, self.embed_tokens, padding_idx)

    @property
    def lm_head(self) -> nn.Linear:
        """The output projection onto the vocabulary (the fused loss head reads its weight)."""
        return self.final_layer.linear

    def embed_inputs(
        self,
        x_t: Integer[TT, "batch seq_len"],
        positions: Integer[TT, "batch seq_len"],
        mixing_mask: Bool[TT, "batch key_len"] | Bool[TT, "batch seq_len key_len"] | None,
    ) -> Float[TT, "batch seq_len d_model"]:
        """The input of the first layer: token embeddings plus the position aids that are on.

        ``mixing_mask`` is what neighbour mixing may see (key padding or an attention mask; with a KV cache
        its keys cover the cached slots too): a neighbour the token may not attend to contributes nothing.
        """
        x = self.embed_tokens(x_t)  # (B, L, D)
        if self.embed_positions is not None:
            x = x + self.embed_positions(positions)
        if self.neighbour_mixing is not None:
            x = self.neighbour_mixing(x, mixing_mask)
        return x
