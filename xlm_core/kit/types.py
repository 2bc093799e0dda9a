"""Types every family's components pass around: the ignored-target value and the loss's output."""

# No ``from __future__ import annotations`` here: TypedDict reads its fields from evaluated annotations.
from typing import TypedDict

from jaxtyping import Float
from torch import Tensor as TT

__all__ = ["IGNORE_INDEX", "LossDict"]

IGNORE_INDEX = -100
"""Target value that the losses and the metrics skip (prompt, padding, the positions nothing is scored at)."""


class LossDict(TypedDict):
    """What a family's loss returns: the scalar it minimises and what the metric update functions read.

    ``loss`` is the mean NLL over the scored tokens and carries the graph; ``batch_loss`` (each row's mean
    over its scored tokens, 0 for a row with none) and ``nlls`` (one NLL per scored token, row-major) are
    detached. ``xlm_core.kit.metrics`` reads ``loss`` (mean) and ``nlls`` (token NLL, perplexity).
    """

    loss: Float[TT, ""]
    batch_loss: Float[TT, " batch"]
    nlls: Float[TT, " num_scored"]
