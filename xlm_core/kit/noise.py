"""Noise schedules of absorbing (masking) diffusion and the sampling of training times.

A schedule gives ``alpha(t)``, the probability that a token is still clean (unmasked) at time
``t in [0, 1]``: ``alpha(0) = 1`` (nothing masked), ``alpha(1) = 0`` (everything masked), decreasing.
The continuous-time NELBO of masked diffusion weights the masked cross-entropy at time ``t`` by
``weight(t) = -alpha'(t) / (1 - alpha(t))``, which grows like ``1/t`` near ``t = 0``; training times are
therefore drawn from ``[eps, 1]`` (``eps = 1e-3`` by default), never from exactly 0. A sampler going
from time ``t`` to an earlier ``s`` reveals each masked token with probability
``(alpha(s) - alpha(t)) / (1 - alpha(t))`` (:meth:`NoiseScheduleBase.reveal_probability`).

Two schedules:
- log-linear: ``alpha(t) = 1 - t`` (``weight = 1/t``), the one most masked-diffusion LMs train with;
- cosine: ``alpha(t) = cos(pi t / 2)`` (masks slowly at first, fast near the end).
"""

from __future__ import annotations

import math

import torch
from jaxtyping import Float
from torch import Tensor as TT

__all__ = ["NoiseScheduleBase", "LogLinearSchedule", "CosineSchedule", "sample_times", "DEFAULT_EPS"]

DEFAULT_EPS = 1e-3


class NoiseScheduleBase:
    """Shared parts of the schedules; a subclass defines ``alpha``, ``alpha_prime`` and ``t_of_alpha``.

    ``eps`` is the smallest training time (see the module docstring); every method accepts any ``t``
    in ``[0, 1]`` and clamps where a formula would divide by zero.
    """

    name = "base"

    def __init__(self, eps: float = DEFAULT_EPS) -> None:
        if not 0.0 < float(eps) < 1.0:
            raise ValueError(f"eps={eps!r} must lie in (0, 1) (the smallest training time, e.g. 1e-3)")
        self.eps = float(eps)

    def alpha(self, t: Float[TT, " *batch"]) -> Float[TT, " *batch"]:
        """Probability that a token is still clean at time ``t``."""
        raise NotImplementedError

    def alpha_prime(self, t: Float[TT, " *batch"]) -> Float[TT, " *batch"]:
        """``d alpha / d t`` (negative)."""
        raise NotImplementedError

    def t_of_alpha(self, alpha: Float[TT, " *batch"]) -> Float[TT, " *batch"]:
        """The time at which the clean probability is ``alpha`` (the inverse of :meth:`alpha`)."""
        raise NotImplementedError

    def mask_probability(self, t: Float[TT, " *batch"]) -> Float[TT, " *batch"]:
        """``1 - alpha(t)``: the probability that a token is masked at time ``t``."""
        return 1.0 - self.alpha(t)

    def weight(self, t: Float[TT, " *batch"]) -> Float[TT, " *batch"]:
        """The NELBO weight ``-alpha'(t) / (1 - alpha(t))`` (``t`` clamped to at least ``eps``)."""
        t = t.clamp(min=self.eps, max=1.0)
        return -self.alpha_prime(t) / self.mask_probability(t)

    def reveal_probability(self, t: Float[TT, " *batch"], s: Float[TT, " *batch"]) -> Float[TT, " *batch"]:
        """Probability that a token masked at time ``t`` is clean at the earlier time ``s <= t``."""
        masked_t = self.mask_probability(t).clamp(min=torch.finfo(t.dtype).tiny)
        return ((self.alpha(s) - self.alpha(t)) / masked_t).clamp(0.0, 1.0)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(eps={self.eps})"


class LogLinearSchedule(NoiseScheduleBase):
    """``alpha(t) = 1 - t``: ``alpha' = -1``, NELBO weight ``1/t``."""

    name = "loglinear"

    def alpha(self, t: Float[TT, " *batch"]) -> Float[TT, " *batch"]:
        return 1.0 - t

    def alpha_prime(self, t: Float[TT, " *batch"]) -> Float[TT, " *batch"]:
        return -torch.ones_like(t)

    def t_of_alpha(self, alpha: Float[TT, " *batch"]) -> Float[TT, " *batch"]:
        return 1.0 - alpha

    def weight(self, t: Float[TT, " *batch"]) -> Float[TT, " *batch"]:
        return 1.0 / t.clamp(min=self.eps, max=1.0)


class CosineSchedule(NoiseScheduleBase):
    """``alpha(t) = cos(pi t / 2)``: weight ``(pi/2) sin(pi t/2) / (1 - cos(pi t/2))``, about ``2/t`` near 0."""

    name = "cosine"

    def alpha(self, t: Float[TT, " *batch"]) -> Float[TT, " *batch"]:
        return torch.cos(0.5 * math.pi * t)

    def alpha_prime(self, t: Float[TT, " *batch"]) -> Float[TT, " *batch"]:
        return -0.5 * math.pi * torch.sin(0.5 * math.pi * t)

    def mask_probability(self, t: Float[TT, " *batch"]) -> Float[TT, " *batch"]:
        # 1 - cos(x) = 2 sin^2(x/2): no cancellation for small t
        return 2.0 * torch.sin(0.25 * math.pi * t) ** 2

    def t_of_alpha(self, alpha: Float[TT, " *batch"]) -> Float[TT, " *batch"]:
        return torch.arccos(alpha.clamp(-1.0, 1.0)) * (2.0 / math.pi)


def sample_times(
    batch_size: int,
    eps: float = DEFAULT_EPS,
    antithetic: bool = True,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> Float[TT, " batch"]:
    """Training times in ``[eps, 1]``, one per example.

    ``antithetic`` (low-discrepancy) draws one ``u ~ U(0, 1)`` and spreads the batch evenly:
    ``u_i = (u + i / B) mod 1``, so every batch covers the whole time range and the loss's variance
    drops; otherwise each ``u_i`` is independent. Then ``t = eps + (1 - eps) u``.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size} must be >= 1")
    if antithetic:
        u0 = torch.rand((), generator=generator, device=device)
        u = (u0 + torch.arange(batch_size, device=device) / batch_size) % 1.0
    else:
        u = torch.rand(batch_size, generator=generator, device=device)
    return eps + (1.0 - eps) * u
