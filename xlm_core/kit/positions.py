"""The one positions rule of xlm: where each token sits among the real tokens of its row.

Every family that derives positions from a key-padding mask (the losses, the predictors, the scaffold's
model and ``xlm check``'s default forward) calls :func:`positions_from_attention_mask`, so a batch gets the
same positions in training, in generation and in the conformance checks.
"""

from __future__ import annotations

from jaxtyping import Bool, Integer
from torch import Tensor as TT

__all__ = ["positions_from_attention_mask"]


def positions_from_attention_mask(
    attention_mask: Bool[TT, " batch seq_len"] | Integer[TT, " batch seq_len"],
) -> Integer[TT, " batch seq_len"]:
    """Real tokens count ``0, 1, 2, ...`` from the first real token of the row; every padding position is 0.

    ``(cumsum(mask) - 1) * mask`` of a bool or 0/1 mask (True / 1 = real token). Left padding, right padding
    and padding in between all get 0, a position that exists in every model's range. With key padding a real
    token never attends to a padded one, so what a padded position holds never changes a real token's output.
    """
    mask = attention_mask.long()
    return (mask.cumsum(dim=1) - 1) * mask
