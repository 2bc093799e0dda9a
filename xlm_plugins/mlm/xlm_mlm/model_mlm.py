"""RotaryTransformerMLMModel: a bidirectional rotary transformer that predicts every position's token."""

from __future__ import annotations

from xlm_core.modules import BidirectionalRotaryTransformer, NeighbourMixing

__all__ = ["RotaryTransformerMLMModel", "NeighbourMixing"]  # NeighbourMixing: now xlm_core.modules's


class RotaryTransformerMLMModel(BidirectionalRotaryTransformer):
    """The core's bidirectional rotary Transformer (``xlm_core.modules.BidirectionalRotaryTransformer``) as the
    MLM's network: logits for every position, the mask token's logit removed when ``mask_idx`` is set.

    Optional position aids (``absolute_positions``, ``neighbour_mixing``: ``bidirectional`` or ``true``, or
    ``causal``) as in ``xlm_core.modules.position_aids``; the parameter names and initialisation are the core
    class's, so checkpoints of earlier versions load.
    """

    family_label = "the MLM"
