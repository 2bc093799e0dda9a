"""Token sampling from logits: full distribution, top-k and nucleus (top-p), and seeded generators.

The one sampling module shared by every family's predictor. All functions take logits of any
leading shape ``(*batch, vocab)`` and return token ids of shape ``(*batch,)``. They never
synchronise with the host, so a generation loop can call them every step on an accelerator.
:class:`SeededGenerators` gives a predictor with a ``seed`` one generator per device, so its draws repeat.
"""

from __future__ import annotations

import torch
from jaxtyping import Float, Integer
from torch import Tensor as TT

__all__ = ["sample_from_logits", "sample_from_top_k", "sample_from_top_p", "SeededGenerators"]


class SeededGenerators:
    """A ``torch.Generator`` per device, seeded with ``seed`` when first asked for and advanced by every draw
    after that (so a predictor's successive batches differ but a rerun repeats them); no seed: None (torch's
    global generator)."""

    def __init__(self, seed: int | None) -> None:
        self.seed = seed
        self._generators: dict[str, torch.Generator] = {}

    def on(self, device: torch.device) -> torch.Generator | None:
        """The generator of ``device``, or None without a seed."""
        if self.seed is None:
            return None
        key = str(device)
        if key not in self._generators:
            self._generators[key] = torch.Generator(device=device).manual_seed(self.seed)
        return self._generators[key]


def _check_temperature(temperature: float) -> None:
    if not temperature > 0:
        raise ValueError(
            f"temperature must be > 0, got {temperature}; use sample_from_top_k(1, logits) for greedy decoding"
        )


def _scaled(logits: TT, temperature: float) -> TT:
    """``logits / temperature`` in fp32, shifted so each row's largest value is exactly 0.

    The shift keeps any positive temperature finite: as it goes to 0 the other entries go to -inf and the
    distribution to the argmax (ties shared), instead of inf - inf = NaN (``temperature=1e-40``). A
    temperature below fp32's smallest number rounds to 0, and 0 / 0 at the largest entries is put back to 0.
    """
    x = logits.float()
    shifted = x - x.amax(dim=-1, keepdim=True)
    return torch.where(shifted == 0, torch.zeros_like(shifted), shifted / temperature)


def _check_logits(logits: TT) -> None:
    if logits.dim() < 1 or logits.shape[-1] < 1:
        raise ValueError(f"logits must have shape (*batch, vocab) with vocab >= 1, got {tuple(logits.shape)}")


def sample_from_logits(
    logits: Float[TT, "*batch vocab"],
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
) -> Integer[TT, "*batch"]:
    """Draw one token per row from ``softmax(logits / temperature)``.

    Uses the exponential race (argmax of p_i / E_i with E_i ~ Exp(1)), which is exact and works for
    any number of leading dimensions; tokens with probability 0 (logit -inf) are never drawn.
    """
    _check_logits(logits)
    _check_temperature(temperature)
    probs = torch.softmax(_scaled(logits, temperature), dim=-1)
    race = torch.empty_like(probs).exponential_(generator=generator)
    # A zero draw would give 0/0 = NaN for zero-probability tokens; keep it strictly positive.
    race.clamp_(min=torch.finfo(race.dtype).tiny)
    return (probs / race).argmax(dim=-1)


def sample_from_top_k(
    k: int,
    logits: Float[TT, "*batch vocab"],
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
) -> Integer[TT, "*batch"]:
    """Draw one token per row among the ``k`` most likely ones (renormalised).

    ``k == 1`` is greedy decoding: exactly ``logits.argmax(-1)``, consuming no randomness.
    ``k`` larger than the vocabulary means the whole vocabulary.
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"top-k needs an integer k >= 1, got {k!r}")
    _check_logits(logits)
    _check_temperature(temperature)
    if k == 1:
        return logits.argmax(dim=-1)
    k = min(k, logits.shape[-1])
    top_logits, top_indices = torch.topk(logits, k, dim=-1)
    choice = sample_from_logits(top_logits, temperature, generator)
    return top_indices.gather(-1, choice.unsqueeze(-1)).squeeze(-1)


def sample_from_top_p(
    p: float,
    logits: Float[TT, "*batch vocab"],
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
) -> Integer[TT, "*batch"]:
    """Nucleus sampling: draw among the smallest most-likely set whose mass reaches ``p``.

    Tokens are sorted by probability (after temperature); a token is kept when the mass of the tokens
    before it is below ``p``, so the token that crosses ``p`` is kept and the top token always is.
    """
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 < p <= 1.0:
        raise ValueError(f"top-p needs 0 < p <= 1, got {p!r}")
    _check_logits(logits)
    _check_temperature(temperature)
    scaled = _scaled(logits, temperature)
    sorted_logits, sorted_indices = torch.sort(scaled, dim=-1, descending=True)
    sorted_probs = torch.softmax(sorted_logits, dim=-1)
    mass_before = sorted_probs.cumsum(dim=-1) - sorted_probs
    keep = mass_before < p
    keep[..., 0] = True
    masked = sorted_logits.masked_fill(~keep, float("-inf"))
    # Temperature is already applied to ``scaled``.
    choice = sample_from_logits(masked, 1.0, generator)
    return sorted_indices.gather(-1, choice.unsqueeze(-1)).squeeze(-1)
