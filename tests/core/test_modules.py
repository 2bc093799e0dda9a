"""Shared nn modules: rotary embedding, attention-mask builder, KV cache, transformer layers."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from xlm_core.modules import (
    KVCache,
    RotaryEmbedding,
    RotaryTransformerFinalLayer,
    RotaryTransformerLayer,
    apply_rotary_emb,
    build_attention_mask,
    causal_mask,
    rotary_layer_stack,
    rotate_half,
)
from xlm_core.testing.typecheck import unchecked

# --- rotary ------------------------------------------------------------------------------------


def test_rotate_half_exact() -> None:
    x = torch.tensor([1.0, 2.0, 3.0, 4.0])
    assert torch.equal(rotate_half(x), torch.tensor([-3.0, -4.0, 1.0, 2.0]))


def test_rotary_hand_computed_example() -> None:
    # dim 4, base 10000: pair (0, 2) turns by angle p, pair (1, 3) by p / 100.
    rope = RotaryEmbedding(4, max_length=8)
    x = torch.tensor([1.0, 2.0, 3.0, 4.0]).view(1, 1, 1, 4)
    for p in (0, 1, 5):
        out = rope(x, torch.tensor([[p]])).view(4)
        a, b = p, p / 100
        expected = torch.tensor(
            [
                1 * math.cos(a) - 3 * math.sin(a),
                2 * math.cos(b) - 4 * math.sin(b),
                3 * math.cos(a) + 1 * math.sin(a),
                4 * math.cos(b) + 2 * math.sin(b),
            ]
        )
        torch.testing.assert_close(out, expected, rtol=0, atol=1e-6)


def test_rotary_position_zero_is_identity_and_norm_is_preserved() -> None:
    torch.manual_seed(0)
    rope = RotaryEmbedding(8, max_length=16)
    x = torch.randn(2, 3, 5, 8)
    assert torch.equal(rope(x, torch.zeros(2, 5, dtype=torch.long)), x)
    positions = torch.randint(0, 16, (2, 5))
    torch.testing.assert_close(rope(x, positions).norm(dim=-1), x.norm(dim=-1))


def test_rotary_dim_smaller_than_head_dim_leaves_other_channels_untouched() -> None:
    torch.manual_seed(0)
    rope = RotaryEmbedding(4, max_length=16)
    x = torch.randn(2, 3, 5, 10)
    positions = torch.arange(5).expand(2, 5) + 3
    out = rope(x, positions)
    assert torch.equal(out[..., 4:], x[..., 4:])
    assert not torch.allclose(out[..., :4], x[..., :4])
    # The rotated part equals a full-width rope of dim 4 on those channels alone.
    torch.testing.assert_close(out[..., :4], rope(x[..., :4].contiguous(), positions))


def test_rotary_dot_product_depends_only_on_position_difference() -> None:
    torch.manual_seed(0)
    rope = RotaryEmbedding(8, max_length=64)
    q = torch.randn(1, 1, 1, 8)
    k = torch.randn(1, 1, 1, 8)

    def score(m: int, n: int) -> torch.Tensor:
        return (rope(q, torch.tensor([[m]])) * rope(k, torch.tensor([[n]]))).sum()

    base = score(5, 2)
    for shift in (1, 7, 30):
        torch.testing.assert_close(score(5 + shift, 2 + shift), base, rtol=0, atol=1e-5)
    assert not torch.allclose(score(6, 2), base, atol=1e-3)


def test_rotary_per_token_positions_per_row() -> None:
    # Row 1 is row 0 shifted right by 2 (left padding) with positions restarting at 0.
    torch.manual_seed(0)
    rope = RotaryEmbedding(8, max_length=16)
    x = torch.randn(1, 2, 3, 8)
    padded = torch.cat([torch.randn(1, 2, 2, 8), x], dim=2)
    out = rope(padded, torch.tensor([[0, 0, 0, 1, 2]]))
    torch.testing.assert_close(out[:, :, 2:], rope(x, torch.tensor([[0, 1, 2]])))


def test_rotary_math_is_float32_and_tables_stay_float32_after_cast() -> None:
    rope = RotaryEmbedding(8, max_length=16).to(torch.bfloat16)
    assert rope.cos_cached.dtype == torch.float32
    x = torch.randn(1, 1, 4, 8)
    positions = torch.arange(4).unsqueeze(0)
    out = rope(x.to(torch.bfloat16), positions)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), rope(x, positions), rtol=1e-2, atol=1e-2)
    assert rope.state_dict() == {}


def test_rotary_rejects_odd_dim() -> None:
    with pytest.raises(ValueError, match="even"):
        RotaryEmbedding(3)


def test_apply_rotary_emb_zero_dim_is_identity() -> None:
    x = torch.randn(1, 1, 2, 4)
    empty = torch.zeros(1, 1, 2, 0)
    assert apply_rotary_emb(x, empty, empty) is x


# --- masks -------------------------------------------------------------------------------------


def test_causal_mask_with_offset() -> None:
    assert torch.equal(causal_mask(3, 3), torch.ones(3, 3, dtype=torch.bool).tril())
    expected = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]], dtype=torch.bool)
    assert torch.equal(causal_mask(2, 4), expected)


def test_build_mask_none() -> None:
    assert build_attention_mask(None, 4, causal=True) == (None, True)
    assert build_attention_mask(None, 4, causal=False) == (None, False)
    mask, is_causal = build_attention_mask(None, 1, past_len=3, causal=True)
    assert not is_causal and mask is not None
    assert torch.equal(mask, torch.ones(1, 1, 1, 4, dtype=torch.bool))


def test_build_mask_key_padding_is_causal_and_guards_empty_rows() -> None:
    pad = torch.tensor([[False, True, True]])  # left-padded row
    mask, is_causal = build_attention_mask(pad, 3, causal=True)
    assert not is_causal
    expected = torch.tensor(
        [
            [1, 0, 0],  # padding query: no key allowed -> its own slot only
            [0, 1, 0],
            [0, 1, 1],
        ],
        dtype=torch.bool,
    )
    assert torch.equal(mask, expected[None, None])


def test_build_mask_3d_used_as_given_except_empty_rows() -> None:
    given = torch.tensor([[[0, 0, 0], [1, 0, 1], [1, 1, 1]]], dtype=torch.bool)  # not causal
    mask, _ = build_attention_mask(given, 3, causal=True)
    expected = given.clone()
    expected[0, 0, 0] = True
    assert torch.equal(mask, expected[:, None])


def test_build_mask_with_cache_offset() -> None:
    pad = torch.tensor([[False, True, True, True]])  # 2 cached slots + 2 new tokens
    mask, _ = build_attention_mask(pad, 2, past_len=2, causal=True)
    expected = torch.tensor([[0, 1, 1, 0], [0, 1, 1, 1]], dtype=torch.bool)
    assert torch.equal(mask, expected[None, None])


def test_build_mask_non_causal_key_padding_stays_broadcastable() -> None:
    pad = torch.tensor([[True, True, False], [False, False, False]])
    mask, _ = build_attention_mask(pad, 3, causal=False)
    assert mask.shape == (2, 1, 1, 3)
    assert torch.equal(mask[0, 0, 0], torch.tensor([True, True, False]))
    assert mask[1].all()  # an all-padding row sees everything, so it stays finite


def test_build_mask_shape_errors() -> None:
    with pytest.raises(ValueError, match="all 5 key slots"):
        build_attention_mask(torch.ones(1, 3, dtype=torch.bool), 3, past_len=2)
    with pytest.raises(ValueError, match=r"\(B, 3, 3\)"):
        build_attention_mask(torch.ones(1, 3, 4, dtype=torch.bool), 3)
    with unchecked(), pytest.raises(ValueError, match="attention_mask must have shape"):  # the annotation rejects 4-D
        build_attention_mask(torch.ones(1, 1, 3, 3, dtype=torch.bool), 3)


# --- KV cache ----------------------------------------------------------------------------------


def test_kv_cache_update_and_errors() -> None:
    cache = KVCache(2, 3, 5, 4)
    assert cache.k.shape == (2, 3, 5, 4) and cache.length == 0
    assert cache.state_dict() == {}
    k1, v1 = torch.randn(2, 3, 2, 4), torch.randn(2, 3, 2, 4)
    k, v = cache.update(k1, v1)
    assert cache.length == 2 and torch.equal(k, k1) and torch.equal(v, v1)
    k2, v2 = torch.randn(2, 3, 1, 4), torch.randn(2, 3, 1, 4)
    k, v = cache.update(k2, v2)
    assert cache.length == 3
    assert torch.equal(k, torch.cat([k1, k2], dim=2)) and torch.equal(v, torch.cat([v1, v2], dim=2))
    with pytest.raises(ValueError, match="overflow"):
        cache.update(torch.randn(2, 3, 3, 4), torch.randn(2, 3, 3, 4))
    with pytest.raises(ValueError, match="batch_size=2"):
        cache.update(torch.randn(1, 3, 1, 4), torch.randn(1, 3, 1, 4))
    cache.reset()
    assert cache.length == 0


def test_kv_cache_dtype_and_validation() -> None:
    cache = KVCache(1, 1, 4, 2, dtype=torch.float64)
    k, _ = cache.update(torch.ones(1, 1, 1, 2), torch.ones(1, 1, 1, 2))
    assert k.dtype == torch.float64
    with pytest.raises(ValueError, match="max_seq_length"):
        KVCache(1, 1, 0, 2)


# --- layers ------------------------------------------------------------------------------------


def _reference_layer(
    layer: RotaryTransformerLayer, x: torch.Tensor, positions: torch.Tensor, allowed: torch.Tensor, rotary_dim: int
) -> torch.Tensor:
    """Plain-torch attention with an explicit softmax, to check the SDPA path of the layer."""
    B, L, D = x.shape
    H, Dh = layer.n_heads, layer.head_dim
    h = F.layer_norm(x, (D,), layer.norm1.weight, layer.norm1.bias, layer.norm1.eps)
    q, k, v = (h @ layer.attn_qkv.weight.T).split(D, dim=-1)
    q, k, v = (t.view(B, L, H, Dh).transpose(1, 2) for t in (q, k, v))
    rope = RotaryEmbedding(rotary_dim, max_length=64)
    q, k = rope(q, positions), rope(k, positions)
    scores = (q @ k.transpose(-1, -2)) / math.sqrt(Dh)
    scores = scores.masked_fill(~allowed[:, None], float("-inf"))
    y = (scores.softmax(-1) @ v).transpose(1, 2).reshape(B, L, D)
    x = x + y @ layer.o_proj.weight.T
    h2 = F.layer_norm(x, (D,), layer.norm2.weight, layer.norm2.bias, layer.norm2.eps)
    return x + layer.mlp(h2)


@pytest.mark.parametrize("rotary_dim", [4, 8])
def test_layer_matches_reference_attention(rotary_dim: int) -> None:
    torch.manual_seed(0)
    layer = RotaryTransformerLayer(16, 2, dim_feedforward=32, dropout=0.0).eval()
    for p in layer.parameters():  # non-trivial LayerNorm/bias values
        torch.nn.init.normal_(p, std=0.3)
    x = torch.randn(2, 5, 16)
    positions = torch.tensor([[0, 1, 2, 3, 4], [0, 0, 0, 1, 2]])
    pad = torch.tensor([[True] * 5, [False, False, True, True, True]])
    mask, is_causal = build_attention_mask(pad, 5)
    cos, sin = RotaryEmbedding(rotary_dim, max_length=64).cos_sin(positions)
    out = layer(x, cos, sin, attn_mask=mask, is_causal=is_causal)
    expected = _reference_layer(layer, x, positions, mask[:, 0], rotary_dim)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    assert torch.isfinite(out).all()


def test_layer_is_causal_fast_path_equals_explicit_causal_mask() -> None:
    torch.manual_seed(0)
    layer = RotaryTransformerLayer(16, 4, dropout=0.0).eval()
    x = torch.randn(2, 6, 16)
    cos, sin = RotaryEmbedding(4, max_length=8).cos_sin(torch.arange(6).expand(2, 6))
    fast = layer(x, cos, sin, attn_mask=None, is_causal=True)
    explicit = layer(x, cos, sin, attn_mask=causal_mask(6, 6)[None, None].expand(2, 1, 6, 6))
    torch.testing.assert_close(fast, explicit, rtol=1e-6, atol=1e-6)


def test_layer_kv_cache_incremental_equals_full() -> None:
    torch.manual_seed(0)
    layer = RotaryTransformerLayer(16, 4, dropout=0.0).eval()
    rope = RotaryEmbedding(4, max_length=8)
    x = torch.randn(2, 6, 16)
    positions = torch.arange(6).expand(2, 6)
    full = layer(x, *rope.cos_sin(positions), is_causal=True)
    layer.kv_cache = KVCache(2, 4, 6, 4)
    steps = [layer(x[:, :3], *rope.cos_sin(positions[:, :3]), is_causal=True)]
    for t in range(3, 6):
        mask, _ = build_attention_mask(None, 1, past_len=t)
        steps.append(layer(x[:, t : t + 1], *rope.cos_sin(positions[:, t : t + 1]), attn_mask=mask))
    torch.testing.assert_close(torch.cat(steps, dim=1), full, rtol=1e-5, atol=1e-5)


def test_layer_dropout_only_in_training() -> None:
    torch.manual_seed(0)
    layer = RotaryTransformerLayer(16, 4, dropout=0.5)
    x = torch.randn(2, 6, 16)
    cos, sin = RotaryEmbedding(4, max_length=8).cos_sin(torch.arange(6).expand(2, 6))
    layer.eval()
    assert torch.equal(layer(x, cos, sin, is_causal=True), layer(x, cos, sin, is_causal=True))
    layer.train()
    assert not torch.allclose(layer(x, cos, sin, is_causal=True), layer(x, cos, sin, is_causal=True))


def test_layer_activation_choice() -> None:
    assert isinstance(RotaryTransformerLayer(8, 2, activation="relu").mlp[1], torch.nn.ReLU)
    assert isinstance(RotaryTransformerLayer(8, 2, activation="gelu").mlp[1], torch.nn.GELU)
    assert RotaryTransformerLayer(8, 2).mlp[0].out_features == 32
    assert RotaryTransformerLayer(8, 2, dim_feedforward=12).mlp[0].out_features == 12
    with unchecked(), pytest.raises(ValueError, match="activation"):
        RotaryTransformerLayer(8, 2, activation="swish")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="divisible"):
        RotaryTransformerLayer(10, 3)


def test_layer_projections_have_no_bias() -> None:
    layer = RotaryTransformerLayer(8, 2)
    assert layer.attn_qkv.bias is None and layer.o_proj.bias is None
    assert layer.attn_qkv.weight.shape == (24, 8)


def test_final_layer_with_and_without_norm() -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 3, 8) * 5 + 2
    with_norm = RotaryTransformerFinalLayer(8, 11)
    without = RotaryTransformerFinalLayer(8, 11, use_final_layer_norm=False)
    without.linear.weight.data.copy_(with_norm.linear.weight.data)
    assert with_norm.linear.bias is None and without.norm_final is None
    torch.testing.assert_close(without(x), x @ with_norm.linear.weight.T)
    torch.testing.assert_close(with_norm(x), F.layer_norm(x, (8,)) @ with_norm.linear.weight.T)


def test_rotary_layer_stack_builds_independent_layers_with_the_given_options() -> None:
    torch.manual_seed(0)
    layers = rotary_layer_stack(3, d_model=16, nhead=2, dim_feedforward=24, dropout=0.0)
    assert len(layers) == 3 and all(isinstance(layer, RotaryTransformerLayer) for layer in layers)
    first, second = (dict(layer.named_parameters()) for layer in layers[:2])
    assert all(first[name] is not second[name] for name in first)  # not one layer repeated
    assert not torch.equal(first["mlp.0.weight"], second["mlp.0.weight"])  # drawn separately
    assert first["mlp.0.weight"].shape == (24, 16) and layers[0].n_heads == 2
