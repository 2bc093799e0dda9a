"""What every family's Transformer needs besides its layers: config checks, GPT-2 init, input checks, AdamW groups.

Families import these instead of copying them (``xlm_arlm.model_arlm``, ``xlm_mlm.model_mlm``). The
initialisation draws its random numbers in ``model.modules()`` order, so a model that registers its
modules in the same order gets the same weights from the same seed.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator

import torch
from jaxtyping import Integer
from torch import Tensor as TT
from torch import nn

from xlm_core.modules.transformer import RotaryTransformerLayer, linear_weights

__all__ = ["validate_model_config", "gpt2_init_", "check_ids_and_positions", "WeightDecayGroups"]


def validate_model_config(
    num_embeddings: int,
    d_model: int,
    num_layers: int,
    nhead: int,
    rotary_emb_dim: int,
    max_length: int,
    padding_idx: int | None = None,
    mask_idx: int | None = None,
) -> None:
    """Reject inconsistent constructor arguments of a rotary Transformer with a message that says what to change."""
    for name, value in (
        ("num_embeddings", num_embeddings),
        ("d_model", d_model),
        ("num_layers", num_layers),
        ("nhead", nhead),
        ("max_length", max_length),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}.")
    if d_model % nhead != 0:
        raise ValueError(f"d_model ({d_model}) must be divisible by nhead ({nhead}); pick nhead dividing d_model.")
    head_dim = d_model // nhead
    if rotary_emb_dim < 0 or rotary_emb_dim > head_dim or rotary_emb_dim % 2 != 0:
        raise ValueError(
            f"rotary_emb_dim ({rotary_emb_dim}) must be even and at most the head dimension "
            f"d_model / nhead = {head_dim}."
        )
    for name, value in (("padding_idx", padding_idx), ("mask_idx", mask_idx)):
        if value is not None and not 0 <= value < num_embeddings:
            raise ValueError(f"{name} ({value}) must lie in [0, num_embeddings={num_embeddings}) or be None.")
    if mask_idx is not None and mask_idx == padding_idx:
        raise ValueError(f"mask_idx and padding_idx are both {mask_idx}; the mask token needs its own id.")


def gpt2_init_(
    model: nn.Module,
    layers: Iterable[RotaryTransformerLayer],
    embed_tokens: nn.Embedding,
    padding_idx: int | None,
) -> None:
    """GPT-2 style init in place: N(0, 0.02) weights of every Linear and Embedding, zero biases,
    the two residual projections of each layer at N(0, 0.02 / sqrt(2 * num_layers)), the padding row zero.

    Draws in ``model.modules()`` order, then the layers' residual projections in order.
    """
    for module in model.modules():
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if getattr(module, "bias", None) is not None:
                nn.init.zeros_(module.bias)
    layers = list(layers)
    residual_std = 0.02 / math.sqrt(2 * len(layers)) if layers else 0.02
    for layer in layers:
        nn.init.normal_(layer.o_proj.weight, mean=0.0, std=residual_std)
        nn.init.normal_(layer.mlp[2].weight, mean=0.0, std=residual_std)
    if padding_idx is not None:
        with torch.no_grad():
            embed_tokens.weight[padding_idx].zero_()


def check_ids_and_positions(
    x_t: Integer[TT, "batch seq_len"],
    positions: Integer[TT, "batch seq_len"],
    num_embeddings: int,
    max_length: int,
    sync: bool = True,
) -> None:
    """Fail with a readable message on token ids outside the vocabulary or positions beyond ``max_length``.

    Costs one fused min/max per tensor and one host sync. ``sync=False`` (decoding steps on an
    accelerator) checks with an asynchronous device assert instead, so generation does not wait for
    the host every token. Skipped for empty inputs and while ``torch.compile`` traces.
    """
    if x_t.numel() == 0 or torch.compiler.is_compiling():
        return
    if not sync:
        ok = (x_t.min() >= 0) & (x_t.max() < num_embeddings) & (positions.min() >= 0) & (positions.max() < max_length)
        torch._assert_async(ok, "token id or position out of range in a decoding step")
        return
    lo, hi, pos_lo, pos_hi = torch.stack((*torch.aminmax(x_t), *torch.aminmax(positions))).tolist()
    if lo < 0 or hi >= num_embeddings:
        raise ValueError(
            f"Token ids must lie in [0, {num_embeddings}) but the batch holds ids in [{lo}, {hi}]. The tokenizer "
            "and the model's vocabulary probably do not match: set model.num_embeddings to len(tokenizer), and "
            "never feed -100 labels as input ids."
        )
    if pos_lo < 0 or pos_hi >= max_length:
        raise ValueError(
            f"Positions must lie in [0, max_length={max_length}) but got [{pos_lo}, {pos_hi}]; "
            "raise model.max_length or shorten the input."
        )


class WeightDecayGroups:
    """Mixin for an ``nn.Module``: AdamW decays the Linear weight matrices and nothing else.

    Provides the two methods of the ``Model`` protocol that ``xlm_core.training.optim`` reads.
    """

    def get_named_params_for_weight_decay(self) -> Iterator[tuple[str, nn.Parameter]]:
        """Weight matrices of the Linear layers."""
        decay = {id(p) for _, p in linear_weights(self)}  # type: ignore[arg-type]
        for name, param in self.named_parameters():  # type: ignore[attr-defined]
            if id(param) in decay:
                yield name, param

    def get_named_params_for_no_weight_decay(self) -> Iterator[tuple[str, nn.Parameter]]:
        """Everything else: biases, LayerNorm parameters, embeddings."""
        decay = {id(p) for _, p in linear_weights(self)}  # type: ignore[arg-type]
        for name, param in self.named_parameters():  # type: ignore[attr-defined]
            if id(param) not in decay:
                yield name, param
