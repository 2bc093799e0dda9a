"""RotaryNetwork: the one place every rotary family model builds and initialises its layers."""

from __future__ import annotations

import pytest
import torch

from xlm_arlm.model_arlm import RotaryTransformerARLMModel
from xlm_core.modules import BidirectionalRotaryTransformer, RotaryNetwork

SIZES = dict(num_embeddings=30, d_model=16, num_layers=2, nhead=2, rotary_emb_dim=8, max_length=16, dim_feedforward=32)


def _network(absolute_positions: bool, mixing: str | None) -> RotaryNetwork:
    return RotaryNetwork(
        SIZES["num_embeddings"],
        SIZES["d_model"],
        SIZES["num_layers"],
        SIZES["nhead"],
        padding_idx=0,
        dim_feedforward=SIZES["dim_feedforward"],
        dropout=0.0,
        activation="relu",
        layer_norm_eps=1e-5,
        rotary_emb_dim=SIZES["rotary_emb_dim"],
        max_length=SIZES["max_length"],
        final_layer_without_normalization=False,
        absolute_positions=absolute_positions,
        mixing=mixing,
    )


def test_every_subclass_gets_the_same_weights_from_the_same_seed() -> None:
    options = dict(absolute_positions=True, neighbour_mixing="causal")
    torch.manual_seed(0)
    causal = RotaryTransformerARLMModel(**SIZES, **options).state_dict()
    torch.manual_seed(0)
    bidirectional = BidirectionalRotaryTransformer(**SIZES, **options).state_dict()
    torch.manual_seed(0)
    base = _network(True, "causal").state_dict()
    assert list(causal) == list(bidirectional) == list(base)
    for key, value in base.items():
        assert torch.equal(causal[key], value) and torch.equal(bidirectional[key], value), key
    assert torch.equal(base["embed_tokens.weight"][0], torch.zeros(SIZES["d_model"]))  # the padding row


@pytest.mark.parametrize("absolute_positions", [False, True])
def test_embed_inputs_adds_the_position_aids_that_are_on(absolute_positions: bool) -> None:
    torch.manual_seed(0)
    net = _network(absolute_positions, None)
    x = torch.tensor([[3, 4, 5, 0]])
    positions = torch.tensor([[0, 1, 2, 0]])
    expected = net.embed_tokens(x) + (net.embed_positions(positions) if absolute_positions else 0)
    torch.testing.assert_close(net.embed_inputs(x, positions, None), expected)
    mixed = _network(absolute_positions, "causal")
    mixed.load_state_dict(net.state_dict(), strict=False)
    torch.nn.init.eye_(mixed.neighbour_mixing.prev.weight)  # adds the previous token's embedding
    padding = torch.tensor([[True, True, True, False]])
    out = mixed.embed_inputs(x, positions, padding)
    torch.testing.assert_close(out[:, 0], expected[:, 0])  # nothing before the first token
    torch.testing.assert_close(out[:, 1:3], expected[:, 1:3] + expected[:, 0:2])
    assert net.lm_head is net.final_layer.linear
