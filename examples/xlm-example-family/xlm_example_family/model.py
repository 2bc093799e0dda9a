"""The example family's network: next-token logits from the running mean of the embeddings so far."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from jaxtyping import Bool, Float, Integer
from torch import Tensor as TT
from torch import nn


class RunningMeanLM(nn.Module):
    """A causal LM: position i sees the mean embedding of the real tokens at positions <= i."""

    def __init__(self, num_embeddings: int, d_model: int = 32, padding_idx: int | None = None) -> None:
        super().__init__()
        if num_embeddings < 2 or d_model < 1:
            raise ValueError(f"need num_embeddings >= 2 and d_model >= 1; got {num_embeddings}, {d_model}")
        self.embed = nn.Embedding(num_embeddings, d_model, padding_idx=padding_idx)
        self.mix = nn.Linear(d_model, d_model)
        self.norm = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, num_embeddings)

    def forward(
        self,
        x_t: Integer[TT, " batch seq_len"],
        attention_mask: Bool[TT, " batch seq_len"] | None = None,
        positions: Integer[TT, " batch seq_len"] | None = None,
    ) -> Float[TT, " batch seq_len vocab_size"]:
        """``attention_mask`` is a key-padding mask (True = real token); ``positions`` are not needed."""
        if attention_mask is None:
            attention_mask = torch.ones_like(x_t, dtype=torch.bool)
        if attention_mask.shape != x_t.shape:
            raise ValueError(f"attention_mask must have the shape of x_t {tuple(x_t.shape)}; got {tuple(attention_mask.shape)}")
        real = attention_mask.unsqueeze(-1).to(self.embed.weight.dtype)  # (B, L, 1)
        h = self.embed(x_t) * real  # padding contributes nothing
        mean = h.cumsum(dim=1) / real.cumsum(dim=1).clamp(min=1.0)  # (B, L, D), causal by construction
        return self.head(self.norm(mean + torch.tanh(self.mix(mean))))

    def get_named_params_for_weight_decay(self) -> Iterator[tuple[str, nn.Parameter]]:
        """Matrices of the linear layers."""
        return ((n, p) for n, p in self.named_parameters() if n in ("mix.weight", "head.weight"))

    def get_named_params_for_no_weight_decay(self) -> Iterator[tuple[str, nn.Parameter]]:
        """Embeddings, biases and the norm."""
        return ((n, p) for n, p in self.named_parameters() if n not in ("mix.weight", "head.weight"))
