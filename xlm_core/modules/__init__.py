"""Shared nn building blocks: rotary embedding, rotary transformer layer, final layer, KV cache, fused LM head loss."""

from xlm_core.modules.kv_cache import KVCache
from xlm_core.modules.linear_cross_entropy import (
    HiddenStateModel,
    hidden_state_head,
    linear_cross_entropy,
    scored_linear_cross_entropy,
)
from xlm_core.modules.rotary import RotaryEmbedding, apply_rotary_emb, rotate_half
from xlm_core.modules.transformer import (
    RotaryTransformerFinalLayer,
    RotaryTransformerLayer,
    build_attention_mask,
    causal_mask,
    linear_weights,
)

__all__ = [
    "HiddenStateModel",
    "KVCache",
    "RotaryEmbedding",
    "RotaryTransformerFinalLayer",
    "RotaryTransformerLayer",
    "apply_rotary_emb",
    "build_attention_mask",
    "causal_mask",
    "hidden_state_head",
    "linear_cross_entropy",
    "linear_weights",
    "rotate_half",
    "scored_linear_cross_entropy",
]
