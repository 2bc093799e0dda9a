"""Rotary position embedding (RoPE, rotate-half convention) on the first channels of each head."""

from __future__ import annotations

import torch
from jaxtyping import Float, Integer
from torch import Tensor as TT
from torch import nn

__all__ = ["RotaryEmbedding", "rotate_half", "apply_rotary_emb"]


def rotate_half(x: Float[TT, "... d"]) -> Float[TT, "... d"]:
    """(x1, x2) -> (-x2, x1) over the two halves of the last dimension."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def apply_rotary_emb(
    x: Float[TT, "*lead batch n_heads seq_len head_dim"],
    cos: Float[TT, "batch 1 seq_len rotary_dim"],
    sin: Float[TT, "batch 1 seq_len rotary_dim"],
) -> Float[TT, "*lead batch n_heads seq_len head_dim"]:
    """Rotate the first ``rotary_dim`` channels of every head; the rest pass through unchanged.

    Leading dimensions broadcast, so q and k can be rotated together as one (2, B, H, L, Dh) tensor.

    The rotation is computed in float32 and cast back to ``x.dtype``.
    """
    rotary_dim = cos.shape[-1]
    if rotary_dim == 0:
        return x
    x_rot = x[..., :rotary_dim].float()
    x_rot = x_rot * cos + rotate_half(x_rot) * sin
    if rotary_dim == x.shape[-1]:
        return x_rot.to(x.dtype)
    return torch.cat((x_rot.to(x.dtype), x[..., rotary_dim:]), dim=-1)


class RotaryEmbedding(nn.Module):
    """Holds the cos/sin tables of RoPE for positions ``0 .. max_length-1``.

    Channel pair ``(i, i + dim/2)`` of a head is rotated by angle ``position * base**(-2i/dim)``.
    Positions are given per token, so left-padded rows can start at 0 after their padding.
    """

    cos_cached: TT
    sin_cached: TT

    def __init__(self, dim: int, max_length: int = 1024, base: float = 10000.0) -> None:
        super().__init__()
        if dim < 0 or dim % 2 != 0:
            raise ValueError(f"RotaryEmbedding dim must be a non-negative even number, got {dim}.")
        if max_length < 1:
            raise ValueError(f"RotaryEmbedding max_length must be >= 1, got {max_length}.")
        self.dim = dim
        self.max_length = max_length
        self.base = base
        cos, sin = self._tables(max_length)
        # Non-persistent: recomputed on construction, so checkpoints do not carry them.
        self.register_buffer("cos_cached", cos, persistent=False)  # (max_length, dim)
        self.register_buffer("sin_cached", sin, persistent=False)  # (max_length, dim)

    def _tables(self, length: int) -> tuple[Float[TT, "length dim"], Float[TT, "length dim"]]:
        inv_freq = 1.0 / (self.base ** (torch.arange(0, self.dim, 2, dtype=torch.float64) / self.dim))
        angles = torch.outer(torch.arange(length, dtype=torch.float64), inv_freq)  # (length, dim/2)
        angles = torch.cat((angles, angles), dim=-1)  # (length, dim), matches rotate_half's split
        return angles.cos().float(), angles.sin().float()

    def _apply(self, fn, recurse: bool = True):  # type: ignore[no-untyped-def]
        # Keep the tables in float32 when the module is cast to half precision.
        super()._apply(fn, recurse)
        if self.cos_cached.dtype != torch.float32:
            cos, sin = self._tables(self.max_length)
            self.cos_cached = cos.to(self.cos_cached.device)
            self.sin_cached = sin.to(self.sin_cached.device)
        return self

    def cos_sin(
        self, positions: Integer[TT, "batch seq_len"]
    ) -> tuple[Float[TT, "batch 1 seq_len dim"], Float[TT, "batch 1 seq_len dim"]]:
        """float32 cos/sin for each token's position, broadcastable over heads.

        Positions must lie in ``[0, max_length)`` (the model validates this at its boundary).
        """
        cos = self.cos_cached[positions].unsqueeze(1)  # (B, 1, L, dim)
        sin = self.sin_cached[positions].unsqueeze(1)  # (B, 1, L, dim)
        return cos, sin

    def forward(
        self,
        x: Float[TT, "batch n_heads seq_len head_dim"],
        positions: Integer[TT, "batch seq_len"],
    ) -> Float[TT, "batch n_heads seq_len head_dim"]:
        """Apply RoPE at ``positions`` to the first ``dim`` channels of each head of ``x``."""
        if self.dim > x.shape[-1]:
            raise ValueError(f"rotary dim {self.dim} exceeds the head dimension {x.shape[-1]}.")
        cos, sin = self.cos_sin(positions)
        return apply_rotary_emb(x, cos, sin)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, max_length={self.max_length}, base={self.base}"
