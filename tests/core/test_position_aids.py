"""The shared architecture options (xlm_core.modules.position_aids) and the model kit (model_kit)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from xlm_core.modules import (
    AbsolutePositionEmbedding,
    NeighbourMixing,
    RotaryTransformerLayer,
    StateCache,
    WeightDecayGroups,
    check_ids_and_positions,
    gpt2_init_,
    neighbour_mixing_mode,
    neighbour_visibility,
    validate_model_config,
)
from xlm_core.testing.typecheck import unchecked

T, F = True, False


def test_mixing_modes_from_config_values() -> None:
    assert neighbour_mixing_mode(None) is None
    assert neighbour_mixing_mode(False) is None
    assert neighbour_mixing_mode("none") is None
    assert neighbour_mixing_mode(True) == "bidirectional"  # the MLM's `neighbour_mixing: true` keeps its meaning
    assert neighbour_mixing_mode("bidirectional") == "bidirectional"
    assert neighbour_mixing_mode("causal") == "causal"
    with pytest.raises(
        ValueError,
        match=r"^neighbour_mixing='both' is not supported by the MLM; use one of none, "
        r"bidirectional, causal\.$",
    ):
        neighbour_mixing_mode("both", family="the MLM")
    with pytest.raises(
        ValueError,
        match=r"^neighbour_mixing=True is not supported by an ARLM \(bidirectional mixing "
        r"lets each token see the next one, which a causal model must not\); use one "
        r"of none, causal\.$",
    ):
        neighbour_mixing_mode(True, allowed=("none", "causal"), family="an ARLM")


def test_visibility_of_a_key_padding_mask_without_and_with_cached_slots() -> None:
    key = torch.tensor([[F, T, T, T], [T, T, F, F]])
    prev_ok, next_ok = neighbour_visibility(key, 4)
    assert prev_ok.tolist() == [[F, F, T, T], [F, T, T, F]]  # query i may use i-1 when key i-1 is real
    assert next_ok.tolist() == [[T, T, T, F], [T, F, F, F]]
    # Two slots already cached, two new queries at slots 2 and 3.
    prev_ok, next_ok = neighbour_visibility(key, 2, past_len=2)
    assert prev_ok.tolist() == [[T, T], [T, F]]
    assert next_ok.tolist() == [[T, F], [F, F]]
    assert neighbour_visibility(None, 3) == (None, None)


def test_visibility_of_a_3d_mask_follows_each_query_row() -> None:
    # Two packed documents [0, 1] and [2, 3] with causal attention inside each.
    doc = torch.tensor([[[T, F, F, F], [T, T, F, F], [F, F, T, F], [F, F, T, T]]])
    prev_ok, next_ok = neighbour_visibility(doc, 4)
    assert prev_ok.tolist() == [[F, T, F, T]]  # position 2 starts a document: it does not mix in position 1
    assert next_ok.tolist() == [[F, F, F, F]]  # causal: no query sees its successor
    # One new query at slot 3 over 4 slots (3 cached).
    prev_ok, next_ok = neighbour_visibility(doc[:, 3:], 1, past_len=3)
    assert prev_ok.tolist() == [[T]] and next_ok.tolist() == [[F]]


def _mixing(mode: str, d: int = 4) -> NeighbourMixing:
    torch.manual_seed(0)
    return NeighbourMixing(d, mode).eval()


def test_bidirectional_mixing_on_a_hand_built_example() -> None:
    m = _mixing("bidirectional")
    h = torch.arange(12.0).reshape(1, 3, 4)
    out = m(h, torch.tensor([[T, T, F]]))
    torch.testing.assert_close(out[0, 0], h[0, 0] + m.next(h[0, 1]), rtol=0, atol=1e-6)
    torch.testing.assert_close(out[0, 1], h[0, 1] + m.prev(h[0, 0]), rtol=0, atol=1e-6)  # right neighbour: padding
    torch.testing.assert_close(out[0, 2], h[0, 2] + m.prev(h[0, 1]), rtol=0, atol=1e-6)
    assert sorted(n for n, _ in m.named_parameters()) == ["next.weight", "prev.weight"]


def test_causal_mixing_reads_only_the_previous_token() -> None:
    m = _mixing("causal")
    assert m.next is None and [n for n, _ in m.named_parameters()] == ["prev.weight"]
    h = torch.randn(2, 5, 4, generator=torch.Generator().manual_seed(1))
    key = torch.tensor([[F, F, T, T, T], [T, T, T, T, T]])  # row 0 left-padded
    out = m(h, key)
    expected = h.clone()
    expected[1, 1:] += m.prev(h[1, :-1])
    expected[0, 3:] += m.prev(h[0, 2:4])  # the first real token (position 2) mixes in nothing
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-6)
    later = h.clone()
    later[:, 3] += 1.0
    torch.testing.assert_close(m(later, None)[:, :3], m(h, None)[:, :3], rtol=0, atol=0)


def test_cached_chunks_and_static_steps_equal_one_call() -> None:
    m = _mixing("causal")
    h = torch.randn(2, 6, 4, generator=torch.Generator().manual_seed(2))
    key = torch.tensor([[F, T, T, T, T, T], [T, T, T, T, T, T]])
    full = m(h, key)
    m.set_cache(2, 6)
    chunks = [m(h[:, :3], key[:, :3])]
    for t in range(3, 6):
        chunks.append(m(h[:, t : t + 1], key[:, : t + 1]))  # a key-padding mask over every slot so far
    torch.testing.assert_close(torch.cat(chunks, 1), full, rtol=0, atol=1e-6)
    m.set_cache(2, 8)  # static steps: one slot each, a mask over all 8 slots
    key_mask = torch.cat([key, torch.zeros(2, 2, dtype=torch.bool)], 1)
    steps = [m.step(h[:, t : t + 1], torch.tensor(t), key_mask) for t in range(6)]
    torch.testing.assert_close(torch.cat(steps, 1), full, rtol=0, atol=1e-6)
    m.clear_cache()
    assert m.cache is None and set(m.state_dict()) == {"prev.weight"}


def test_a_3d_mask_keeps_packed_documents_apart() -> None:
    m = _mixing("bidirectional")
    h = torch.randn(1, 4, 4, generator=torch.Generator().manual_seed(3))
    both = torch.tensor([[[T, T, F, F], [T, T, F, F], [F, F, T, T], [F, F, T, T]]])  # documents [0, 1] and [2, 3]
    out = m(h, both)
    torch.testing.assert_close(out[0, 1], h[0, 1] + m.prev(h[0, 0]), rtol=0, atol=1e-6)  # not token 2: other document
    torch.testing.assert_close(out[0, 2], h[0, 2] + m.next(h[0, 3]), rtol=0, atol=1e-6)
    causal = _mixing("causal")
    cached = torch.cat(
        [causal(h[:, :2], both[:, :2, :2])]
        + [  # 3-D masks over every slot, with a cache
            causal(h, both)[:, 2:]
        ],
        1,
    )
    causal.set_cache(1, 4)
    steps = [causal(h[:, :2], both[:, :2, :2]), causal(h[:, 2:3], both[:, 2:3, :3]), causal(h[:, 3:], both[:, 3:])]
    torch.testing.assert_close(torch.cat(steps, 1), cached, rtol=0, atol=1e-6)
    torch.testing.assert_close(steps[1][0, 0], h[0, 2], rtol=0, atol=0)  # a document's first token mixes nothing


def test_bidirectional_mixing_cannot_decode_incrementally() -> None:
    with pytest.raises(ValueError, match="only causal neighbour mixing can decode incrementally"):
        _mixing("bidirectional").set_cache(1, 4)


def test_state_cache_overflow_names_the_fix() -> None:
    cache = StateCache(1, 2, 3)
    cache.update(torch.ones(1, 2, 3))
    with pytest.raises(ValueError, match="call set_kv_cache with the batch size and length in use"):
        cache.update(torch.ones(1, 1, 3))
    assert set(cache.state_dict()) == set()


def test_absolute_positions_are_a_lookup_table() -> None:
    torch.manual_seed(0)
    emb = AbsolutePositionEmbedding(8, 4)
    assert isinstance(emb, nn.Embedding) and emb.weight.shape == (8, 4)
    pos = torch.tensor([[0, 0, 1, 2]])
    assert torch.equal(emb(pos)[0, 1], emb.weight[0]) and torch.equal(emb(pos)[0, 3], emb.weight[2])


class _Tiny(WeightDecayGroups, nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(5, 8, padding_idx=0)
        self.layers = nn.ModuleList(RotaryTransformerLayer(8, 2, dim_feedforward=16, dropout=0.0) for _ in range(2))
        gpt2_init_(self, self.layers, self.embed, padding_idx=0)


def test_gpt2_init_draws_in_module_order_and_zeroes_padding() -> None:
    torch.manual_seed(0)
    a = _Tiny()
    after_a = torch.rand(1)
    torch.manual_seed(0)
    b = _Tiny()
    assert torch.equal(after_a, torch.rand(1))  # the same random numbers consumed
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert torch.equal(a.embed.weight[0], torch.zeros(8))
    assert all(layer.mlp[0].bias.abs().sum() == 0 for layer in a.layers)
    assert float(a.layers[0].o_proj.weight.detach().std()) < float(
        a.layers[0].attn_qkv.weight.detach().std()
    )  # residual scaled down


def test_weight_decay_groups_split_linear_weights_from_the_rest() -> None:
    model = _Tiny()
    decay = {n for n, _ in model.get_named_params_for_weight_decay()}
    no_decay = {n for n, _ in model.get_named_params_for_no_weight_decay()}
    assert decay == {f"layers.{i}.{n}.weight" for i in range(2) for n in ("attn_qkv", "o_proj", "mlp.0", "mlp.2")}
    assert decay | no_decay == {n for n, _ in model.named_parameters()} and not decay & no_decay


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(d_model=30, nhead=4), r"d_model \(30\) must be divisible by nhead \(4\)"),
        (dict(rotary_emb_dim=3), r"rotary_emb_dim \(3\) must be even and at most the head dimension"),
        (dict(num_layers=True), r"num_layers must be a positive int, got True"),
        (dict(padding_idx=99), r"padding_idx \(99\) must lie in \[0, num_embeddings=20\)"),
        (dict(padding_idx=2, mask_idx=2), r"mask_idx and padding_idx are both 2"),
    ],
)
def test_model_config_validation_names_the_value(kwargs: dict, message: str) -> None:
    args = dict(num_embeddings=20, d_model=32, num_layers=2, nhead=4, rotary_emb_dim=8, max_length=16)
    with unchecked(), pytest.raises(ValueError, match=message):
        validate_model_config(**{**args, **kwargs})


def test_id_and_position_checks() -> None:
    ids, pos = torch.tensor([[1, 2, 19]]), torch.tensor([[0, 1, 2]])
    check_ids_and_positions(ids, pos, 20, 16)
    with pytest.raises(ValueError, match=r"ids in \[2, 20\].*set model.num_embeddings to len\(tokenizer\)"):
        check_ids_and_positions(ids + 1, pos, 20, 16)
    with pytest.raises(ValueError, match=r"Positions must lie in \[0, max_length=16\) but got \[0, 16\]"):
        check_ids_and_positions(ids, pos * 8, 20, 16)
