"""MLMLoss: scores exactly the masked positions, equals a hand computation, empty batches give 0."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from xlm_core.data.simple_tokenizer import SimpleSpaceTokenizer
from xlm_core.testing import BaseLossTests
from xlm_mlm.collators_mlm import MLMSeq2SeqTrainCollator
from xlm_mlm.loss_mlm import MLMLoss, positions_from_attention_mask

TOK = SimpleSpaceTokenizer.for_numbers(50)
PAD, MASK, EOS, BOS, X = 0, 2, 3, 4, -100
V = len(TOK)


class TableModel(nn.Module):
    """Logits read from a learnable (L, V) table, the same for every row; records its inputs."""

    def __init__(self, length: int) -> None:
        super().__init__()
        self.table = nn.Parameter(torch.randn(length, V, generator=torch.Generator().manual_seed(0)))
        self.seen: dict[str, torch.Tensor] = {}

    def forward(self, x_t, attention_mask=None, positions=None):
        self.seen = {"x_t": x_t, "attention_mask": attention_mask, "positions": positions}
        return self.table.unsqueeze(0).expand(x_t.shape[0], -1, -1)


def _batch() -> dict[str, torch.Tensor]:
    """Two rows: [PAD 10 BOS | MASK 21 MASK] and [11 12 BOS | 22 MASK PAD(real slot PAD, visible)]."""
    return {
        "input_ids": torch.tensor([[PAD, 10, BOS, MASK, 21, MASK], [11, 12, BOS, 22, MASK, PAD]]),
        "attention_mask": torch.tensor([[False, True, True, True, True, True], [True] * 6]),
        "target_ids": torch.tensor([[X, X, X, 20, 21, EOS], [X, X, X, 22, EOS, PAD]]),
    }


class TestMLMLossConformance(BaseLossTests):
    @pytest.fixture
    def loss_fn(self, make_mlm_model):
        return MLMLoss(model=make_mlm_model(), tokenizer=TOK)

    @pytest.fixture
    def batch(self):
        collator = MLMSeq2SeqTrainCollator(TOK, block_size=4, input_block_size=4, mask_rate_min=1.0)
        return collator(
            [
                {"prompt_ids": [10], "input_ids": [20, 21]},
                {"prompt_ids": [11, 12, 13], "input_ids": [22]},
            ]
        )


def test_loss_equals_hand_computation_at_masked_positions_only() -> None:
    model = TableModel(6)
    out = MLMLoss(model, TOK)(_batch())
    logp = torch.log_softmax(model.table.detach(), dim=-1)
    scored = [(0, 3, 20), (0, 5, EOS), (1, 4, EOS)]  # (row, position, target) of the masked positions
    nll = {(r, p): -logp[p, t].item() for r, p, t in scored}
    expected = sum(nll.values()) / 3
    assert out["loss"].item() == pytest.approx(expected, rel=1e-6)
    assert out["batch_loss"].tolist() == pytest.approx([(nll[0, 3] + nll[0, 5]) / 2, nll[1, 4]], rel=1e-6)
    assert out["nlls"].tolist() == pytest.approx([nll[0, 3], nll[0, 5], nll[1, 4]], rel=1e-6)
    assert not out["batch_loss"].requires_grad and not out["nlls"].requires_grad


def test_model_gets_key_padding_mask_and_cumsum_positions() -> None:
    model = TableModel(6)
    MLMLoss(model, TOK)(_batch())
    assert model.seen["attention_mask"].dtype == torch.bool
    assert model.seen["positions"].tolist() == [[0, 0, 1, 2, 3, 4], [0, 1, 2, 3, 4, 5]]
    assert positions_from_attention_mask(torch.tensor([[False, False, True]])).tolist() == [[0, 0, 0]]


def test_only_masked_positions_get_gradient() -> None:
    model = TableModel(6)
    MLMLoss(model, TOK)(_batch())["loss"].backward()
    rows_with_grad = model.table.grad.abs().sum(dim=-1).nonzero().flatten().tolist()
    assert rows_with_grad == [3, 4, 5]  # positions masked in some row


def test_loss_on_visible_tokens_scores_every_target() -> None:
    model = TableModel(6)
    out = MLMLoss(model, TOK, loss_on_visible_tokens=True)(_batch())
    assert out["nlls"].numel() == 6  # all target positions of both rows
    logp = torch.log_softmax(model.table.detach(), dim=-1)
    targets = [(3, 20), (4, 21), (5, EOS), (3, 22), (4, EOS), (5, PAD)]
    assert out["loss"].item() == pytest.approx(sum(-logp[p, t].item() for p, t in targets) / 6, rel=1e-6)


def test_batch_without_masked_positions_gives_zero_with_gradient_path() -> None:
    model = TableModel(6)
    batch = _batch()
    batch["input_ids"] = torch.tensor([[PAD, 10, BOS, 20, 21, EOS], [11, 12, BOS, 22, EOS, PAD]])
    out = MLMLoss(model, TOK)(batch)
    assert out["loss"].item() == 0.0 and not math.isnan(out["loss"].item())
    assert out["loss"].requires_grad
    out["loss"].backward()
    assert model.table.grad is not None and torch.equal(model.table.grad, torch.zeros_like(model.table))
    assert out["batch_loss"].tolist() == [0.0, 0.0] and out["nlls"].numel() == 0


def test_mask_under_padding_or_with_ignored_target_is_not_scored() -> None:
    model = TableModel(6)
    batch = _batch()
    batch["input_ids"] = torch.tensor([[MASK, MASK, BOS, MASK, 21, EOS], [11, 12, BOS, 22, EOS, PAD]])
    out = MLMLoss(model, TOK)(batch)
    assert out["nlls"].numel() == 1  # only (row 0, position 3): position 0 is padding, 1 is prompt (-100)


def test_needs_a_mask_token_and_consistent_shapes() -> None:
    class NoMask:
        mask_token_id = None

    with pytest.raises(ValueError, match="mask token"):
        MLMLoss(TableModel(6), NoMask())
    batch = _batch()
    batch["target_ids"] = batch["target_ids"][:, :5]
    with pytest.raises(ValueError, match="same|share"):
        MLMLoss(TableModel(6), TOK)(batch)
    with pytest.raises(KeyError, match="target_ids"):
        MLMLoss(TableModel(6), TOK)({"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]})


def _loss_and_grads(model, batch, fused: bool, bf16: bool = False, **kw) -> tuple[dict, dict]:
    model.zero_grad(set_to_none=True)
    with torch.autocast("cpu", torch.bfloat16, enabled=bf16):
        out = MLMLoss(model, TOK, fused=fused, **kw)(batch)
    out["loss"].backward()
    return out, {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("bf16", [False, True], ids=["fp32", "bf16-autocast"])
@pytest.mark.parametrize("visible", [False, True], ids=["masked-only", "visible-too"])
def test_fused_head_equals_the_plain_logits_path(make_mlm_model, visible: bool, bf16: bool) -> None:
    """Only the scored positions reach the fused head; loss, batch_loss, nlls and every gradient equal the
    plain path's (the mask token stays excluded from the softmax)."""
    model = make_mlm_model(absolute_positions=True, neighbour_mixing=True)
    batch = _batch()
    fused, fused_grads = _loss_and_grads(model, batch, True, bf16, loss_on_visible_tokens=visible, chunk_size=2)
    plain, plain_grads = _loss_and_grads(model, batch, False, bf16, loss_on_visible_tokens=visible)
    for key in ("loss", "batch_loss", "nlls"):
        torch.testing.assert_close(fused[key], plain[key], rtol=1e-6, atol=1e-6)
    assert fused_grads.keys() == plain_grads.keys()
    for name, g in plain_grads.items():
        if not bf16:
            torch.testing.assert_close(fused_grads[name], g, rtol=1e-4, atol=1e-7, msg=name)
        else:  # the plain path rounds its gradients to bf16 (eps 2**-8), the fused one accumulates in fp32
            assert float((fused_grads[name] - g).norm()) <= 2e-2 * float(g.norm()), name
    assert float(fused_grads["final_layer.linear.weight"][MASK].abs().max()) == 0.0


def test_fused_head_with_nothing_scored_gives_zero_connected_loss(make_mlm_model) -> None:
    model = make_mlm_model()
    batch = _batch()
    batch["input_ids"] = batch["input_ids"].masked_fill(batch["input_ids"] == MASK, 9)
    out, grads = _loss_and_grads(model, batch, True)
    assert out["loss"].item() == 0.0 and out["nlls"].shape == (0,)
    assert grads.keys() == {n for n, _ in model.named_parameters()}
    assert all(float(g.abs().max()) == 0.0 for g in grads.values())
