"""RotaryTransformerMLMModel: bidirectional attention, key padding, position aids, parameter groups."""

from __future__ import annotations

import pytest
import torch

from xlm_core.data.simple_tokenizer import SimpleSpaceTokenizer
from xlm_core.plugin.protocols import MLMModel, Model
from xlm_core.testing import BaseModelTests, make_lm_inputs
from xlm_mlm.loss_mlm import positions_from_attention_mask

TOK = SimpleSpaceTokenizer.for_numbers(50)
VOCAB, PAD, MASK = len(TOK), TOK.pad_token_id, TOK.mask_token_id  # 57, 0, 2
ATOL = 1e-5


def _ids(B: int, L: int, seed: int = 1) -> torch.Tensor:
    return torch.randint(7, VOCAB, (B, L), generator=torch.Generator().manual_seed(seed))


def _run_forward_for(model, vocab_size):
    def run(batch_size=2, seq_len=16, partial_mask=False, *, input_ids=None, attention_mask=None):
        if input_ids is None:
            input_ids, attention_mask = make_lm_inputs(batch_size, seq_len, vocab_size, partial_mask)
        return model(input_ids, attention_mask, positions_from_attention_mask(attention_mask))

    return run


class TestMLMModelConformance(BaseModelTests):
    """The shared model suite on the plain tiny MLM: key padding on, not causal, no KV cache."""

    causal = False
    kv_cache = False
    key_padding = True

    @pytest.fixture
    def model(self, make_mlm_model):
        return make_mlm_model(mask_idx=None).eval()

    @pytest.fixture
    def run_forward(self, model, vocab_size):
        return _run_forward_for(model, vocab_size)


class TestMLMModelWithPositionAidsConformance(TestMLMModelConformance):
    """The same suite with the learned absolute positions and neighbour mixing switched on."""

    @pytest.fixture
    def model(self, make_mlm_model):
        return make_mlm_model(mask_idx=None, absolute_positions=True, neighbour_mixing=True).eval()


def test_conforms_to_protocols(tiny_mlm_model) -> None:
    assert isinstance(tiny_mlm_model, MLMModel)
    assert isinstance(tiny_mlm_model, Model)


@pytest.mark.parametrize("aids", [False, True])
def test_a_later_token_changes_earlier_logits(make_mlm_model, aids: bool) -> None:
    model = make_mlm_model(absolute_positions=aids, neighbour_mixing=aids).eval()
    x = _ids(1, 7)
    mask = torch.ones(1, 7, dtype=torch.bool)
    base = model(x, mask)
    changed = x.clone()
    changed[0, 6] = 7 if x[0, 6] != 7 else 8
    out = model(changed, mask)
    assert not torch.allclose(out[0, 0], base[0, 0], atol=ATOL), "position 0 must see position 6"


@pytest.mark.parametrize("aids", [False, True])
def test_padding_is_never_attended_to(make_mlm_model, aids: bool) -> None:
    model = make_mlm_model(absolute_positions=aids, neighbour_mixing=aids).eval()
    row = [12, 30, 8, 55]
    alone = model(torch.tensor([row]))
    right = torch.tensor([row + [PAD, PAD], row + [17, 40]])  # second row: junk under the padding
    right_mask = torch.tensor([[True] * 4 + [False] * 2] * 2)
    out = model(right, right_mask, positions_from_attention_mask(right_mask))
    torch.testing.assert_close(out[:, :4], alone.expand(2, 4, VOCAB), rtol=0, atol=ATOL)
    left = torch.tensor([[PAD, PAD] + row, [23, 9] + row])
    left_mask = torch.tensor([[False] * 2 + [True] * 4] * 2)
    out = model(left, left_mask, positions_from_attention_mask(left_mask))
    torch.testing.assert_close(out[:, 2:], alone.expand(2, 4, VOCAB), rtol=0, atol=ATOL)


def test_all_ones_mask_equals_no_mask(tiny_mlm_model) -> None:
    x = _ids(2, 6)
    torch.testing.assert_close(tiny_mlm_model(x, torch.ones(2, 6, dtype=torch.bool)), tiny_mlm_model(x), rtol=0, atol=0)


def test_3d_mask_is_used_as_given(make_mlm_model) -> None:
    model = make_mlm_model().eval()
    x = _ids(1, 5)
    causal = torch.ones(5, 5, dtype=torch.bool).tril().unsqueeze(0)
    base = model(x, causal)
    changed = x.clone()
    changed[0, 4] = 7 if x[0, 4] != 7 else 8
    torch.testing.assert_close(model(changed, causal)[:, :4], base[:, :4], rtol=0, atol=ATOL)


def test_mask_logit_is_the_lowest_finite_value(tiny_mlm_model, make_mlm_model) -> None:
    logits = tiny_mlm_model(_ids(2, 4))
    assert bool((logits[..., MASK] == torch.finfo(logits.dtype).min).all())
    assert torch.isfinite(logits).all()
    assert float(torch.softmax(logits, -1)[..., MASK].max()) == 0.0  # never predicted
    plain = make_mlm_model(mask_idx=None).eval()(_ids(2, 4))
    assert torch.isfinite(plain).all()


def test_rotary_only_model_is_shift_invariant_and_absolute_positions_are_not(make_mlm_model) -> None:
    x = _ids(2, 5)
    pos = torch.arange(5).expand(2, 5)
    rotary = make_mlm_model().eval()
    torch.testing.assert_close(rotary(x, None, pos + 3), rotary(x, None, pos), rtol=0, atol=ATOL)
    absolute = make_mlm_model(absolute_positions=True).eval()
    assert not torch.allclose(absolute(x, None, pos + 3), absolute(x, None, pos), atol=ATOL)


def test_neighbour_mixing_sees_only_adjacent_real_tokens(make_mlm_model) -> None:
    model = make_mlm_model(neighbour_mixing=True)
    mixing = model.neighbour_mixing
    h = torch.randn(1, 4, 32, generator=torch.Generator().manual_seed(0))
    mask = torch.tensor([[True, True, True, False]])
    out = mixing(h, mask)
    expected_1 = h[0, 1] + mixing.prev(h[0, 0]) + mixing.next(h[0, 2])
    expected_2 = h[0, 2] + mixing.prev(h[0, 1])  # its right neighbour is padding
    torch.testing.assert_close(out[0, 1], expected_1, rtol=0, atol=ATOL)
    torch.testing.assert_close(out[0, 2], expected_2, rtol=0, atol=ATOL)


def test_weight_decay_split(make_mlm_model) -> None:
    model = make_mlm_model(absolute_positions=True, neighbour_mixing=True)
    decay = dict(model.get_named_params_for_weight_decay())
    no_decay = dict(model.get_named_params_for_no_weight_decay())
    assert not set(decay) & set(no_decay)
    assert set(decay) | set(no_decay) == {n for n, _ in model.named_parameters()}
    assert {"neighbour_mixing.prev.weight", "neighbour_mixing.next.weight", "final_layer.linear.weight"} <= set(decay)
    assert {"embed_tokens.weight", "embed_positions.weight"} <= set(no_decay)
    assert all(p.ndim == 2 for p in decay.values())


def test_token_type_ids_accepted_and_unused(tiny_mlm_model) -> None:
    x = _ids(2, 5)
    tt = torch.tensor([[0, 0, 1, 1, 1], [0, 1, 1, 1, 1]])
    assert torch.equal(tiny_mlm_model(x, token_type_ids=tt), tiny_mlm_model(x))


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"d_model": 30}, "divisible by nhead"),
        ({"rotary_emb_dim": 10}, "rotary_emb_dim"),
        ({"mask_idx": 57}, "mask_idx"),
        ({"mask_idx": PAD}, "its own id"),
        ({"num_layers": 0}, "num_layers"),
    ],
)
def test_constructor_validation(make_mlm_model, overrides: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make_mlm_model(**overrides)


def test_forward_validation(tiny_mlm_model) -> None:
    with pytest.raises(ValueError, match="Token ids"):
        tiny_mlm_model(torch.tensor([[5, -100]]))
    with pytest.raises(ValueError, match="max_length"):
        tiny_mlm_model(torch.tensor([[5, 6]]), None, torch.tensor([[0, 64]]))
    with pytest.raises(ValueError, match="batch, seq_len"):
        tiny_mlm_model(torch.tensor([5, 6]))


def test_neighbour_mixing_true_is_bidirectional_and_causal_reads_only_the_previous_token(make_mlm_model) -> None:
    legacy, named = make_mlm_model(neighbour_mixing=True), make_mlm_model(neighbour_mixing="bidirectional")
    assert legacy.neighbour_mixing.mode == named.neighbour_mixing.mode == "bidirectional"
    assert all(torch.equal(p, q) for p, q in zip(legacy.state_dict().values(), named.state_dict().values()))
    causal = make_mlm_model(neighbour_mixing="causal")
    assert {k for k in causal.state_dict() if k.startswith("neighbour_mixing")} == {"neighbour_mixing.prev.weight"}
    assert make_mlm_model(neighbour_mixing="none").neighbour_mixing is None
    with pytest.raises(ValueError, match=r"neighbour_mixing='sideways' is not supported by the MLM"):
        make_mlm_model(neighbour_mixing="sideways")
