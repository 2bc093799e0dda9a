"""Shared nn building blocks: rotary embedding, rotary transformer layer, final layer, KV cache, fused LM head
loss, the model kit (config checks, GPT-2 init, input checks, weight-decay groups) and the position aids
(absolute positions, neighbour mixing), the network every rotary model subclasses, and the bidirectional rotary Transformer of the masked families."""

from xlm_core.modules.bidirectional import BidirectionalRotaryTransformer
from xlm_core.modules.kv_cache import KVCache
from xlm_core.modules.linear_cross_entropy import (
    HiddenStateModel,
    hidden_state_head,
    linear_cross_entropy,
    scored_linear_cross_entropy,
)
from xlm_core.modules.model_kit import WeightDecayGroups, check_ids_and_positions, gpt2_init_, validate_model_config
from xlm_core.modules.network import RotaryNetwork
from xlm_core.modules.position_aids import (
    NEIGHBOUR_MIXING_MODES,
    AbsolutePositionEmbedding,
    NeighbourMixing,
    StateCache,
    neighbour_mixing_mode,
    neighbour_visibility,
)
from xlm_core.modules.rotary import RotaryEmbedding, apply_rotary_emb, rotate_half
from xlm_core.modules.transformer import (
    RotaryTransformerFinalLayer,
    RotaryTransformerLayer,
    build_attention_mask,
    causal_mask,
    linear_weights,
    rotary_layer_stack,
)

__all__ = [
    "AbsolutePositionEmbedding",
    "BidirectionalRotaryTransformer",
    "HiddenStateModel",
    "KVCache",
    "NEIGHBOUR_MIXING_MODES",
    "NeighbourMixing",
    "RotaryEmbedding",
    "RotaryNetwork",
    "RotaryTransformerFinalLayer",
    "RotaryTransformerLayer",
    "StateCache",
    "WeightDecayGroups",
    "apply_rotary_emb",
    "build_attention_mask",
    "causal_mask",
    "check_ids_and_positions",
    "gpt2_init_",
    "hidden_state_head",
    "linear_cross_entropy",
    "linear_weights",
    "rotary_layer_stack",
    "neighbour_mixing_mode",
    "neighbour_visibility",
    "rotate_half",
    "scored_linear_cross_entropy",
    "validate_model_config",
]
