"""Export an ARLM as a Hugging Face ``transformers`` GPT-NeoX directory that loads without xlm.

``RotaryTransformerARLMModel`` is architecturally a GPT-NeoX: pre-LN LayerNorm (with bias), a
sequential residual, rotate-half RoPE on the first ``rotary_emb_dim`` channels of each head, a
bias-free fused q/k/v projection and output projection, an MLP with biases, and an untied output
layer without bias. ``export_hf`` writes ``config.json`` + ``model.safetensors`` + the tokenizer, so
``AutoModelForCausalLM.from_pretrained(dir)`` and ``AutoTokenizer.from_pretrained(dir)`` work with
no xlm import. The mapping is documented in docs/export.md.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from xlm_arlm.model_arlm import RotaryTransformerARLMModel

__all__ = ["neox_config", "copy_weights_to_neox", "to_neox", "export_tokenizer", "export_hf", "check_export"]

logger = logging.getLogger(__name__)

# our MLP activation module -> the GPT-NeoX ``hidden_act`` that computes the same function
_ACTIVATIONS: tuple[tuple[type[nn.Module], dict[str, Any], str], ...] = (
    (nn.ReLU, {}, "relu"),
    (nn.GELU, {"approximate": "none"}, "gelu"),
    (nn.GELU, {"approximate": "tanh"}, "gelu_pytorch_tanh"),
)


def _hidden_act(model: RotaryTransformerARLMModel) -> str:
    act = model.layers[0].mlp[1] if len(model.layers) else nn.ReLU()
    for cls, attrs, name in _ACTIVATIONS:
        if type(act) is cls and all(getattr(act, k, None) == v for k, v in attrs.items()):
            return name
    raise ValueError(
        f"GPT-NeoX has no activation equal to this model's {act!r}; train with model.activation=relu or gelu "
        "to export to Hugging Face."
    )


def neox_config(model: RotaryTransformerARLMModel, tokenizer: Any = None) -> Any:
    """The ``GPTNeoXConfig`` of the same network; refuses settings GPT-NeoX cannot express."""
    import transformers
    from transformers import GPTNeoXConfig

    aids = [
        f"model.{name}={value}"
        for name, value, on in (
            ("absolute_positions", "true", model.embed_positions is not None),
            ("neighbour_mixing", getattr(model.neighbour_mixing, "mode", "none"), model.neighbour_mixing is not None),
        )
        if on
    ]
    if aids:
        raise ValueError(
            f"{' and '.join(aids)} cannot be exported: GPT-NeoX has no such layer; train with "
            "model.absolute_positions=false and model.neighbour_mixing=none to export to Hugging Face."
        )
    if model.final_layer.norm_final is None:
        raise ValueError(
            "model.final_layer_without_normalization=true cannot be exported: GPT-NeoX always applies a final "
            "LayerNorm; train with model.final_layer_without_normalization=false to export to Hugging Face."
        )
    rotary_dim, head_dim = model.rotary_emb.dim, model.head_dim
    factor = rotary_dim / head_dim
    if int(head_dim * factor) != rotary_dim or rotary_dim == 0:
        raise ValueError(
            f"model.rotary_emb_dim={rotary_dim} cannot be expressed as GPT-NeoX's partial_rotary_factor of the head "
            f"dimension {head_dim}; use an even rotary_emb_dim in [2, {head_dim}] such as {head_dim // 2}."
        )
    if tokenizer is not None and len(tokenizer) > model.num_embeddings:
        raise ValueError(
            f"The tokenizer has {len(tokenizer)} tokens but the model embeds {model.num_embeddings}; export with the "
            "tokenizer the model was trained with."
        )
    norm = model.layers[0].norm1 if len(model.layers) else model.final_layer.norm_final
    special = {
        name: getattr(tokenizer, name, None) if tokenizer is not None else None
        for name in ("bos_token_id", "eos_token_id", "pad_token_id")
    }
    common = dict(
        vocab_size=model.num_embeddings,
        hidden_size=model.d_model,
        num_hidden_layers=model.num_layers,
        num_attention_heads=model.nhead,
        intermediate_size=model.layers[0].mlp[0].out_features if len(model.layers) else 4 * model.d_model,
        hidden_act=_hidden_act(model),
        attention_dropout=0.0,
        hidden_dropout=0.0,
        max_position_embeddings=model.max_length,
        layer_norm_eps=norm.eps,
        use_cache=True,
        tie_word_embeddings=False,
        use_parallel_residual=False,
        attention_bias=False,
        initializer_range=0.02,
        **special,
    )
    if int(transformers.__version__.split(".")[0]) >= 5:
        rope = {"rope_type": "default", "rope_theta": float(model.rotary_emb.base), "partial_rotary_factor": factor}
        return GPTNeoXConfig(**common, rope_parameters=rope)
    return GPTNeoXConfig(**common, rotary_pct=factor, rotary_emb_base=float(model.rotary_emb.base))


@torch.no_grad()
def copy_weights_to_neox(model: RotaryTransformerARLMModel, neox: nn.Module) -> None:
    """Load our weights into a ``GPTNeoXForCausalLM`` built from ``neox_config``.

    GPT-NeoX packs q/k/v per head (``[q_h, k_h, v_h]`` for each head ``h``); ours packs ``[q; k; v]``.
    """
    H, Dh, D = model.nhead, model.head_dim, model.d_model
    body = neox.gpt_neox
    body.embed_in.weight.copy_(model.embed_tokens.weight)
    for ours, theirs in zip(model.layers, body.layers):
        theirs.input_layernorm.load_state_dict(ours.norm1.state_dict())
        theirs.post_attention_layernorm.load_state_dict(ours.norm2.state_dict())
        qkv = ours.attn_qkv.weight.view(3, H, Dh, D).permute(1, 0, 2, 3).reshape(3 * D, D)
        theirs.attention.query_key_value.weight.copy_(qkv)
        theirs.attention.dense.weight.copy_(ours.o_proj.weight)
        theirs.mlp.dense_h_to_4h.load_state_dict(ours.mlp[0].state_dict())
        theirs.mlp.dense_4h_to_h.load_state_dict(ours.mlp[2].state_dict())
    body.final_layer_norm.load_state_dict(model.final_layer.norm_final.state_dict())
    neox.get_output_embeddings().weight.copy_(model.final_layer.linear.weight)


def to_neox(model: RotaryTransformerARLMModel, tokenizer: Any = None, attn_implementation: str = "sdpa") -> nn.Module:
    """A ``GPTNeoXForCausalLM`` computing the same function as ``model`` (fp32, eval mode)."""
    from transformers import GPTNeoXForCausalLM

    config = neox_config(model, tokenizer)
    config._attn_implementation = attn_implementation
    neox = GPTNeoXForCausalLM(config).float()
    copy_weights_to_neox(model, neox)
    return neox.eval()


def export_tokenizer(tokenizer: Any, out_dir: str | os.PathLike[str]) -> None:
    """Save ``tokenizer`` so ``AutoTokenizer.from_pretrained(out_dir)`` loads it without xlm.

    ``SimpleSpaceTokenizer`` becomes an equivalent word-level fast tokenizer with the same ids;
    every other (Hugging Face) tokenizer is saved as it is.
    """
    from xlm_core.data.simple_tokenizer import SimpleSpaceTokenizer

    if isinstance(tokenizer, SimpleSpaceTokenizer):
        tokenizer = _simple_as_fast(tokenizer)
    tokenizer.save_pretrained(str(out_dir))


def _simple_as_fast(tokenizer: Any) -> Any:
    """A ``PreTrainedTokenizerFast`` splitting on whitespace with the SimpleSpaceTokenizer's vocabulary."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from xlm_core.data.simple_tokenizer import SPECIAL_TOKENS

    vocab = tokenizer.get_vocab()
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token=tokenizer.unk_token))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    backend.decoder = decoders.WordPiece(prefix="\x00", cleanup=False)  # joins tokens with single spaces
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        clean_up_tokenization_spaces=False,
        **{attr: token for attr, token in SPECIAL_TOKENS},
    )


@torch.no_grad()
def check_export(model: RotaryTransformerARLMModel, out_dir: str | os.PathLike[str], length: int = 16) -> float:
    """Max |logit difference| between ``model`` and the export reloaded by transformers on a probe batch."""
    from transformers import AutoModelForCausalLM

    theirs = AutoModelForCausalLM.from_pretrained(str(out_dir)).float().eval()  # saved in fp32
    length = min(length, model.max_length)
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, model.num_embeddings, (2, length), generator=g)
    was_training = model.training
    model.eval()
    try:
        param = next(model.parameters())
        ours = model(ids.to(param.device)).float().cpu()
    finally:
        model.train(was_training)
    return float((theirs(input_ids=ids).logits.float() - ours).abs().max())


def export_hf(
    model: RotaryTransformerARLMModel, tokenizer: Any, out_dir: str | os.PathLike[str], verify: bool = True
) -> Path:
    """Write ``model`` and ``tokenizer`` as a transformers directory; returns ``out_dir``.

    With ``verify`` the directory is reloaded with ``AutoModelForCausalLM`` and its logits are
    compared with ours (fp32); a difference above 1e-4 is an error.
    """
    if not isinstance(model, RotaryTransformerARLMModel):
        raise ValueError(f"export_hf exports RotaryTransformerARLMModel, got {type(model).__name__}.")
    out = Path(out_dir)
    neox = to_neox(model, tokenizer)
    out.mkdir(parents=True, exist_ok=True)
    neox.save_pretrained(str(out), safe_serialization=True)
    if tokenizer is not None:
        export_tokenizer(tokenizer, out)
    if verify:
        diff = check_export(model, out)
        if not diff <= 1e-4:
            raise RuntimeError(f"The export in {out} does not reproduce the model: max |logit diff| = {diff:.3g}.")
        logger.info("Exported to %s; reloaded with transformers: max |logit diff| = %.3g", out, diff)
    return out
