"""MDLMModel: the network of the masked diffusion LM, and its SUBS output distribution.

The network is the core's bidirectional rotary Transformer (``xlm_core.modules.BidirectionalRotaryTransformer``,
with the same architecture options as every family). It takes no time input: for absorbing (masking) diffusion
the number of mask tokens in the input already tells how far the noise has gone, and a network that does not
depend on ``t`` is what lets the cached sampler reuse an output when nothing changed (docs/mdlm.md).

SUBS parameterisation: the output distribution gives the mask token probability zero, and at every position
that is not masked it is the one-hot of the input token (an unmasked token is carried over, so it costs
nothing in the loss and a sampler never changes it). :func:`subs_log_probs` applies both to the logits; the
loss and the sampler apply the same rules without forming the full distribution (the loss scores masked
positions only, with the mask token as the fused head's excluded class; the sampler writes masked positions
only).
"""

from __future__ import annotations

import torch
from jaxtyping import Float, Integer
from torch import Tensor as TT

from xlm_core.api import BidirectionalRotaryTransformer

__all__ = ["MDLMModel", "subs_log_probs"]


class MDLMModel(BidirectionalRotaryTransformer):
    """The MDLM's denoising network: logits over the vocabulary for every position of a partly masked row.

    With ``mask_idx`` (the harness passes the tokenizer's mask token) the mask token's logit is the lowest
    finite value, the first half of SUBS; :func:`subs_log_probs` adds the carry-over of unmasked tokens.
    ``forward_hidden`` and ``lm_head`` let ``MDLMLoss`` use the fused head + cross-entropy.
    """

    family_label = "the MDLM"


def subs_log_probs(
    logits: Float[TT, "batch seq_len vocab"], x_t: Integer[TT, "batch seq_len"], mask_token_id: int
) -> Float[TT, "batch seq_len vocab"]:
    """Log-probabilities of the SUBS parameterisation (fp32).

    Masked positions (``x_t == mask_token_id``): ``log_softmax`` of the logits with the mask token at
    probability 0 (log-probability ``-inf``). Other positions: the one-hot of ``x_t`` (0 at ``x_t``, ``-inf``
    elsewhere), so an unmasked token is kept with probability 1.
    """
    masked = (x_t == mask_token_id).unsqueeze(-1)  # (B, L, 1)
    scores = logits.float().index_fill(-1, torch.tensor([mask_token_id], device=logits.device), float("-inf"))
    predicted = scores.log_softmax(dim=-1)
    carried = torch.full_like(predicted, float("-inf")).scatter_(-1, x_t.unsqueeze(-1), 0.0)
    return torch.where(masked, predicted, carried)
