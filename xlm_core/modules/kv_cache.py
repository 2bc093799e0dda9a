"""Key/value cache of one attention layer, for incremental (one token at a time) decoding."""

from __future__ import annotations

import torch
from jaxtyping import Float, Integer
from torch import Tensor as TT
from torch import nn

__all__ = ["KVCache"]


class KVCache(nn.Module):
    """Preallocated keys and values, filled left to right: slots ``[0, length)`` hold data.

    Buffers are non-persistent so a cache never ends up in a checkpoint.
    """

    k: TT
    v: TT

    def __init__(
        self,
        batch_size: int,
        n_heads: int,
        max_seq_length: int,
        head_dim: int,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        for name, value in (
            ("batch_size", batch_size),
            ("n_heads", n_heads),
            ("max_seq_length", max_seq_length),
            ("head_dim", head_dim),
        ):
            if value < 1:
                raise ValueError(f"KVCache {name} must be >= 1, got {value}.")
        shape = (batch_size, n_heads, max_seq_length, head_dim)
        self.register_buffer("k", torch.zeros(shape, device=device, dtype=dtype), persistent=False)
        self.register_buffer("v", torch.zeros(shape, device=device, dtype=dtype), persistent=False)
        self.length = 0

    @property
    def max_seq_length(self) -> int:
        return self.k.shape[2]

    def update(
        self,
        k_new: Float[TT, "batch n_heads t_new head_dim"],
        v_new: Float[TT, "batch n_heads t_new head_dim"],
    ) -> tuple[Float[TT, "batch n_heads total head_dim"], Float[TT, "batch n_heads total head_dim"]]:
        """Write the new keys/values at slots ``[length, length + t_new)``; return all filled slots."""
        if k_new.shape[0] != self.k.shape[0] or k_new.shape[1] != self.k.shape[1]:
            raise ValueError(
                f"KVCache was allocated for batch_size={self.k.shape[0]}, n_heads={self.k.shape[1]} "
                f"but got keys of shape {tuple(k_new.shape)}; call set_kv_cache with the batch size in use."
            )
        start, end = self.length, self.length + k_new.shape[2]
        if end > self.max_seq_length:
            raise ValueError(
                f"KVCache overflow: {end} slots needed but max_seq_length={self.max_seq_length}; "
                "call set_kv_cache with a larger max_seq_length."
            )
        self.k[:, :, start:end] = k_new.to(self.k.dtype)
        self.v[:, :, start:end] = v_new.to(self.v.dtype)
        self.length = end
        return self.k[:, :, :end], self.v[:, :, :end]

    def write(
        self,
        k_new: Float[TT, "batch n_heads 1 head_dim"],
        v_new: Float[TT, "batch n_heads 1 head_dim"],
        slot: Integer[TT, ""],
    ) -> tuple[Float[TT, "batch n_heads slots head_dim"], Float[TT, "batch n_heads slots head_dim"]]:
        """Write one step's keys/values at slot ``slot`` (a tensor) and return every slot.

        The static-shape counterpart of :meth:`update` for compiled / graph-captured decoding: no
        host sync, no Python state, the same output shape every step (the caller masks unfilled
        slots and tracks which slot is next; ``length`` is not advanced).
        """
        index = slot.reshape(1)
        self.k.index_copy_(2, index, k_new.to(self.k.dtype))
        self.v.index_copy_(2, index, v_new.to(self.v.dtype))
        return self.k, self.v

    def reset(self) -> None:
        """Mark every slot empty (the buffers are kept for reuse)."""
        self.length = 0

    def extra_repr(self) -> str:
        return f"shape={tuple(self.k.shape)}, dtype={self.k.dtype}, length={self.length}"
