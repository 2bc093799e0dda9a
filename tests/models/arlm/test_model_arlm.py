"""RotaryTransformerARLMModel: masks, positions, KV cache, parameter groups, validation."""

from __future__ import annotations

import warnings

import pytest
import torch

from xlm_arlm.loss_arlm import causal_attention_mask, positions_from_attention_mask
from xlm_arlm.model_arlm import RotaryTransformerARLMModel
from xlm_core.plugin.protocols import ARLMModel, Model
from xlm_core.testing import BaseModelTests, make_lm_inputs
from xlm_core.testing.typecheck import unchecked

ATOL = 1e-5


class TestARLMModelConformance(BaseModelTests):
    """The shared model suite (causal, KV cache, key padding) on the tiny ARLM."""

    causal = True
    kv_cache = True

    @pytest.fixture
    def model(self, tiny_arlm_model):
        return tiny_arlm_model

    @pytest.fixture
    def run_forward(self, model, vocab_size):
        def run(batch_size=2, seq_len=16, partial_mask=False, *, input_ids=None, attention_mask=None):
            if input_ids is None:
                input_ids, attention_mask = make_lm_inputs(batch_size, seq_len, vocab_size, partial_mask)
            positions = positions_from_attention_mask(attention_mask)
            return model(input_ids, attention_mask, positions)

        return run


def _ids(B: int, L: int, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(7, 57, (B, L), generator=g)


def _left_padded(rows: list[list[int]], L: int) -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.zeros(len(rows), L, dtype=torch.long)
    mask = torch.zeros(len(rows), L, dtype=torch.bool)
    for i, row in enumerate(rows):
        ids[i, L - len(row) :] = torch.tensor(row)
        mask[i, L - len(row) :] = True
    return ids, mask


def test_conforms_to_protocols(tiny_arlm_model) -> None:
    assert isinstance(tiny_arlm_model, ARLMModel)
    assert isinstance(tiny_arlm_model, Model)


def test_output_shape_and_default_positions(tiny_arlm_model) -> None:
    x = _ids(2, 5)
    logits = tiny_arlm_model(x)
    assert logits.shape == (2, 5, 57) and logits.dtype == torch.float32
    explicit = tiny_arlm_model(x, None, torch.arange(5).expand(2, 5))
    assert torch.equal(logits, explicit)
    # RoPE is relative: a uniform shift of every position leaves the logits unchanged ...
    shifted = tiny_arlm_model(x, None, torch.arange(5).expand(2, 5) + 3)
    torch.testing.assert_close(shifted, logits, rtol=0, atol=ATOL)
    # ... while changing the gaps between positions does not.
    gapped = tiny_arlm_model(x, None, torch.tensor([0, 1, 2, 3, 9]).expand(2, 5))
    assert not torch.allclose(gapped[:, 4], logits[:, 4], rtol=0, atol=1e-5)


def test_logits_to_keep_returns_the_last_positions(tiny_arlm_model) -> None:
    x = torch.randint(7, 57, (2, 9), generator=torch.Generator().manual_seed(3))
    mask = torch.ones(2, 9, dtype=torch.bool)
    mask[1, :4] = False  # left padding
    full = tiny_arlm_model(x, mask)
    torch.testing.assert_close(tiny_arlm_model(x, mask, logits_to_keep=1), full[:, -1:], rtol=0, atol=ATOL)
    torch.testing.assert_close(tiny_arlm_model(x, mask, logits_to_keep=3), full[:, -3:], rtol=0, atol=ATOL)


def test_token_type_ids_accepted_and_unused(tiny_arlm_model) -> None:
    x = _ids(2, 5)
    tt = torch.tensor([[0, 0, 1, 1, 1], [0, 1, 1, 1, 1]])
    assert torch.equal(tiny_arlm_model(x, token_type_ids=tt), tiny_arlm_model(x))


@pytest.mark.parametrize("mask_form", ["none", "2d", "3d"])
def test_no_leakage_from_the_future(tiny_arlm_model, mask_form: str) -> None:
    x = _ids(2, 7)
    pad = torch.ones(2, 7, dtype=torch.bool)
    mask = {"none": None, "2d": pad, "3d": causal_attention_mask(pad)}[mask_form]
    base = tiny_arlm_model(x, mask)
    for t in range(7):
        changed = x.clone()
        changed[:, t] = (changed[:, t] - 7 + 13) % 50 + 7
        out = tiny_arlm_model(changed, mask)
        torch.testing.assert_close(out[:, :t], base[:, :t], rtol=0, atol=ATOL)
        assert not torch.allclose(out[:, t], base[:, t])


def test_no_leakage_gradient_check(tiny_arlm_model) -> None:
    x = _ids(1, 6)
    emb = tiny_arlm_model.embed_tokens(x).detach().requires_grad_(True)
    # Run the stack by hand from the embeddings so we can differentiate w.r.t. each input position.
    m = tiny_arlm_model
    cos, sin = m.rotary_emb.cos_sin(torch.arange(6).unsqueeze(0))
    h = emb
    for layer in m.layers:
        h = layer(h, cos, sin, is_causal=True)
    logits = m.final_layer(h)
    for i in range(6):
        (grad,) = torch.autograd.grad(logits[0, i].sum(), emb, retain_graph=True)
        assert torch.count_nonzero(grad[0, i + 1 :]) == 0
        assert grad[0, : i + 1].abs().sum() > 0


def test_3d_mask_is_used_as_given(tiny_arlm_model) -> None:
    x = _ids(1, 5)
    full = torch.ones(1, 5, 5, dtype=torch.bool)  # bidirectional: the future becomes visible
    base = tiny_arlm_model(x, full)
    changed = x.clone()
    changed[0, 4] = 7 if x[0, 4] != 7 else 8
    assert not torch.allclose(tiny_arlm_model(changed, full)[:, 0], base[:, 0])


def test_2d_mask_equals_explicit_3d_mask(tiny_arlm_model) -> None:
    x = _ids(3, 6)
    pad = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0], [0, 0, 1, 1, 1, 1]], dtype=torch.bool)
    positions = positions_from_attention_mask(pad)
    out2d = tiny_arlm_model(x, pad, positions)
    out3d = tiny_arlm_model(x, causal_attention_mask(pad), positions)
    torch.testing.assert_close(out2d, out3d, rtol=0, atol=ATOL)
    assert torch.isfinite(out2d).all()
    torch.testing.assert_close(
        tiny_arlm_model(x, torch.ones(3, 6, dtype=torch.bool)), tiny_arlm_model(x), rtol=0, atol=ATOL
    )


def test_left_padded_row_equals_unpadded_row(tiny_arlm_model) -> None:
    row = [12, 30, 8, 55]
    unpadded = tiny_arlm_model(torch.tensor([row]))
    ids, pad = _left_padded([row, [9, 9, 40, 17, 20, 11]], 6)
    positions = positions_from_attention_mask(pad)
    assert positions[0].tolist() == [0, 0, 0, 1, 2, 3]
    for mask in (pad, causal_attention_mask(pad)):
        out = tiny_arlm_model(ids, mask, positions)
        assert torch.isfinite(out).all()
        torch.testing.assert_close(out[0, 2:], unpadded[0], rtol=0, atol=ATOL)


def test_kv_cache_incremental_equals_full_forward(tiny_arlm_model) -> None:
    m = tiny_arlm_model
    prompts = [[12, 30], [9, 9, 40, 17], [56, 7, 33]]
    P, new = 4, 5
    ids, pad = _left_padded(prompts, P)
    continuation = _ids(3, new, seed=5)
    full_ids = torch.cat([ids, continuation], dim=1)
    full_pad = torch.cat([pad, torch.ones(3, new, dtype=torch.bool)], dim=1)
    full_pos = positions_from_attention_mask(full_pad)
    full = m(full_ids, full_pad, full_pos)

    m.set_kv_cache(batch_size=3, max_seq_length=P + new)
    assert m.kv_cache_length == 0
    assert m.layers[0].kv_cache.k.shape == (3, 4, P + new, 8)
    steps = [m(ids, pad, full_pos[:, :P])]  # prefill
    assert m.kv_cache_length == P
    for t in range(P, P + new):
        steps.append(m(full_ids[:, t : t + 1], full_pad[:, : t + 1], full_pos[:, t : t + 1]))
        assert m.kv_cache_length == t + 1
    incremental = torch.cat(steps, dim=1)
    real = full_pad.unsqueeze(-1).expand_as(full)
    torch.testing.assert_close(incremental[real], full[real], rtol=0, atol=ATOL)
    assert torch.isfinite(incremental).all()

    m.clear_kv_cache()
    assert m.kv_cache_length == 0 and all(layer.kv_cache is None for layer in m.layers)
    torch.testing.assert_close(m(full_ids, full_pad, full_pos), full, rtol=0, atol=0)


def test_kv_cache_multi_token_chunks_and_default_positions(tiny_arlm_model) -> None:
    m = tiny_arlm_model
    x = _ids(2, 7)
    full = m(x)
    m.set_kv_cache(2, 7)
    chunks = [m(x[:, :3]), m(x[:, 3:5]), m(x[:, 5:])]  # positions default to cache offset + 0..T-1
    torch.testing.assert_close(torch.cat(chunks, dim=1), full, rtol=0, atol=ATOL)
    with pytest.raises(ValueError, match="overflow"):
        m(x[:, :1])
    m.clear_kv_cache()


def test_kv_cache_not_in_state_dict(tiny_arlm_model) -> None:
    keys = set(tiny_arlm_model.state_dict())
    tiny_arlm_model.set_kv_cache(2, 8, dtype=torch.float64)
    assert tiny_arlm_model.layers[1].kv_cache.v.dtype == torch.float64
    assert set(tiny_arlm_model.state_dict()) == keys
    assert not any("rotary" in k for k in keys)


def test_weight_decay_split_is_disjoint_and_exhaustive(tiny_arlm_model) -> None:
    decay = dict(tiny_arlm_model.get_named_params_for_weight_decay())
    no_decay = dict(tiny_arlm_model.get_named_params_for_no_weight_decay())
    all_names = {n for n, _ in tiny_arlm_model.named_parameters()}
    assert not set(decay) & set(no_decay)
    assert set(decay) | set(no_decay) == all_names
    expected_decay = {"final_layer.linear.weight"} | {
        f"layers.{i}.{n}.weight" for i in range(2) for n in ("attn_qkv", "o_proj", "mlp.0", "mlp.2")
    }
    assert set(decay) == expected_decay
    assert "embed_tokens.weight" in no_decay and "final_layer.norm_final.weight" in no_decay
    assert all(p.ndim == 2 for p in decay.values())


def test_layers_are_initialised_independently(tiny_arlm_model) -> None:
    w0 = tiny_arlm_model.layers[0].attn_qkv.weight
    w1 = tiny_arlm_model.layers[1].attn_qkv.weight
    assert w0.data_ptr() != w1.data_ptr() and not torch.equal(w0, w1)
    assert torch.equal(tiny_arlm_model.embed_tokens.weight[0], torch.zeros(32))


def test_seeded_construction_is_deterministic(make_arlm_model) -> None:
    a, b = make_arlm_model(seed=3), make_arlm_model(seed=3)
    for (na, pa), (nb, pb) in zip(a.named_parameters(), b.named_parameters()):
        assert na == nb and torch.equal(pa, pb)


@pytest.mark.parametrize("activation, cls", [("relu", torch.nn.ReLU), ("gelu", torch.nn.GELU)])
def test_activation(make_arlm_model, activation: str, cls: type) -> None:
    m = make_arlm_model(activation=activation).eval()
    assert all(isinstance(layer.mlp[1], cls) for layer in m.layers)
    assert torch.isfinite(m(_ids(1, 4))).all()


def test_gelu_and_relu_models_differ(make_arlm_model) -> None:
    x = _ids(1, 4)
    relu = make_arlm_model(activation="relu").eval()(x)
    gelu = make_arlm_model(activation="gelu").eval()(x)
    assert not torch.allclose(relu, gelu)


def test_final_layer_without_normalization(make_arlm_model) -> None:
    m = make_arlm_model(final_layer_without_normalization=True).eval()
    assert m.final_layer.norm_final is None
    assert not any(n.startswith("final_layer.norm") for n, _ in m.named_parameters())
    with_norm = make_arlm_model()
    assert with_norm.final_layer.norm_final is not None
    assert m.final_layer.linear.bias is None
    assert torch.isfinite(m(_ids(1, 4))).all()


def test_default_dim_feedforward_is_four_times_d_model(make_arlm_model) -> None:
    m = make_arlm_model(dim_feedforward=None)
    assert m.layers[0].mlp[0].out_features == 128


def test_dropout_active_only_in_training(make_arlm_model) -> None:
    m = make_arlm_model(dropout=0.3)
    x = _ids(2, 5)
    m.train()
    assert not torch.allclose(m(x), m(x))
    m.eval()
    assert torch.equal(m(x), m(x))


def test_gradients_reach_every_parameter(tiny_arlm_model) -> None:
    tiny_arlm_model.train()
    tiny_arlm_model(_ids(2, 5)).sum().backward()
    for name, p in tiny_arlm_model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


def test_force_flash_attn_on_cpu_warns_once_and_matches(make_arlm_model) -> None:
    plain = make_arlm_model().eval()
    flash = make_arlm_model(force_flash_attn=True).eval()
    x = _ids(2, 5)
    with pytest.warns(UserWarning, match="force_flash_attn"):
        out = flash(x)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        flash(x)
    assert torch.equal(out, plain(x))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(d_model=30, nhead=4), "divisible by nhead"),
        (dict(rotary_emb_dim=16), "at most the head dimension"),
        (dict(rotary_emb_dim=5), "must be even"),
        (dict(padding_idx=57), "padding_idx"),
        (dict(num_layers=0), "num_layers"),
        (dict(activation="tanh"), "activation"),
    ],
)
def test_config_validation(make_arlm_model, kwargs: dict, match: str) -> None:
    with unchecked(), pytest.raises(ValueError, match=match):  # our message, also where the annotation rejects
        make_arlm_model(**kwargs)


def test_token_id_out_of_vocab_is_a_clear_error(tiny_arlm_model) -> None:
    with pytest.raises(ValueError, match=r"\[0, 57\).*tokenizer"):
        tiny_arlm_model(torch.tensor([[7, 57]]))
    with pytest.raises(ValueError, match="-100"):
        tiny_arlm_model(torch.tensor([[7, -100]]))


def test_position_beyond_max_length_is_a_clear_error(tiny_arlm_model) -> None:
    with pytest.raises(ValueError, match="max_length=64"):
        tiny_arlm_model(torch.tensor([[7, 8]]), positions=torch.tensor([[0, 64]]))


def test_shape_errors(tiny_arlm_model) -> None:
    with unchecked(), pytest.raises(ValueError, match="x_t must have shape"):
        tiny_arlm_model(torch.tensor([7, 8]))
    with unchecked(), pytest.raises(ValueError, match="positions"):
        tiny_arlm_model(torch.tensor([[7, 8]]), positions=torch.tensor([[0, 1, 2]]))


def test_instantiable_from_shipped_configs() -> None:
    from importlib.resources import files

    from omegaconf import OmegaConf

    root = files("xlm_arlm") / "configs" / "model"
    small = OmegaConf.load(str(root / "rotary_transformer_small_arlm.yaml"))
    assert (small.d_model, small.num_layers, small.nhead, small.dim_feedforward) == (768, 12, 12, 3072)
    assert (small.activation, small.dropout, small.rotary_emb_dim) == ("relu", 0.1, 64)
    tiny = OmegaConf.load(str(root / "rotary_transformer_tiny_arlm.yaml"))
    kwargs = {k: v for k, v in OmegaConf.to_container(tiny).items() if k != "_target_"}
    kwargs.update(num_embeddings=57, padding_idx=0)
    assert tiny._target_ == "xlm_arlm.model_arlm.RotaryTransformerARLMModel"
    m = RotaryTransformerARLMModel(**kwargs).eval()
    assert (m.d_model, m.num_layers, m.nhead, m.rotary_emb.dim) == (128, 4, 4, 32)
    assert m(_ids(1, 3)).shape == (1, 3, 57)
