"""Padding and truncation of token-id lists, plus a counter that makes truncation visible.

Family-agnostic: collators of every family use these to build fixed-width rows.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Literal, TypeVar

__all__ = [
    "Side",
    "pad_list",
    "truncate_list",
    "pad_truncate_list",
    "TruncationCounter",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")
Side = Literal["left", "right"]


def _check_side(side: str, arg: str) -> None:
    if side not in ("left", "right"):
        raise ValueError(f"{arg}={side!r} is not a side; use 'left' or 'right'.")


def pad_list(seq: Sequence[T], length: int, pad_value: T, side: Side = "right") -> list[T]:
    """Pad ``seq`` with ``pad_value`` on ``side`` up to ``length`` (never shortens it)."""
    _check_side(side, "side")
    padding = [pad_value] * max(0, length - len(seq))
    return padding + list(seq) if side == "left" else list(seq) + padding


def truncate_list(seq: Sequence[T], max_length: int, side: Side = "right") -> tuple[list[T], bool]:
    """Cut ``seq`` to at most ``max_length`` items, dropping from ``side``.

    Returns the cut list and whether anything was dropped (so callers can count truncations).
    """
    _check_side(side, "side")
    if max_length < 0:
        raise ValueError(f"max_length={max_length} must be >= 0.")
    if len(seq) <= max_length:
        return list(seq), False
    if side == "left":
        return list(seq[len(seq) - max_length :]), True
    return list(seq[:max_length]), True


def pad_truncate_list(
    seq: Sequence[T],
    length: int,
    pad_value: T,
    pad_side: Side = "right",
    truncate_side: Side = "right",
) -> tuple[list[T], bool]:
    """Make ``seq`` exactly ``length`` long: truncate from ``truncate_side``, pad on ``pad_side``.

    Returns the new list and whether it was truncated.
    """
    cut, truncated = truncate_list(seq, length, truncate_side)
    return pad_list(cut, length, pad_value, pad_side), truncated


class TruncationCounter:
    """Counts truncated examples and logs a rate-limited warning, so truncation is never silent.

    ``hint`` names the setting to raise (e.g. ``"block_size=128"``). The first truncation is
    always reported; later ones at most once every ``warn_interval_s`` seconds, with totals.
    """

    def __init__(self, name: str, warn_interval_s: float = 60.0) -> None:
        self.name = name
        self.warn_interval_s = warn_interval_s
        self.num_truncated = 0
        self.num_examples = 0
        self._last_warning: float | None = None

    @property
    def rate(self) -> float:
        """Fraction of the examples seen so far that were truncated (0.0 before any)."""
        return self.num_truncated / self.num_examples if self.num_examples else 0.0

    def update(self, num_truncated: int, num_examples: int, hint: str) -> None:
        """Record one batch: ``num_truncated`` of its ``num_examples`` examples were cut."""
        if num_truncated < 0 or num_examples < num_truncated:
            raise ValueError(f"Need 0 <= num_truncated <= num_examples, got {num_truncated} and {num_examples}.")
        self.num_examples += num_examples
        self.num_truncated += num_truncated
        if num_truncated == 0:
            return
        now = time.monotonic()
        if self._last_warning is not None and now - self._last_warning < self.warn_interval_s:
            return
        self._last_warning = now
        logger.warning(
            "%s truncated %d of %d examples in this batch (%d of %d so far, %.2f%%); raise %s to keep whole sequences.",
            self.name,
            num_truncated,
            num_examples,
            self.num_truncated,
            self.num_examples,
            100.0 * self.rate,
            hint,
        )

    def reset(self) -> None:
        """Forget all counts (e.g. between epochs)."""
        self.num_truncated = 0
        self.num_examples = 0
        self._last_warning = None
