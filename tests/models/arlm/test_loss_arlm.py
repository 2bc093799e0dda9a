"""ARLMLoss: hand-computed cross-entropy, nlls, batch_loss, -100 ignore, all-ignored batches."""

from __future__ import annotations

import pytest
import torch

from xlm_arlm.loss_arlm import ARLMLoss, causal_attention_mask, positions_from_attention_mask
from xlm_core.plugin.protocols import LossFunction
from xlm_core.testing import BaseLossTests


class TestARLMLossConformance(BaseLossTests):
    """The shared loss suite on a right-padded LM batch."""

    @pytest.fixture
    def loss_fn(self, tiny_arlm_model):
        return ARLMLoss(tiny_arlm_model, tokenizer=None)

    @pytest.fixture
    def batch(self, arlm_batch):
        return arlm_batch


class TestARLMLossConformanceSeq2Seq(TestARLMLossConformance):
    """The same suite on a seq2seq batch (left-padded prompt, right-padded target)."""

    @pytest.fixture
    def batch(self):
        return _seq2seq_batch()


def _manual_nll(model, batch) -> torch.Tensor:
    """Per-position NLL (B, L) computed by hand from the reference model call; nan = ignored."""
    mask = batch["attention_mask"].bool()
    with torch.no_grad():
        logits = model(batch["input_ids"], causal_attention_mask(mask), positions_from_attention_mask(mask))
    log_probs = logits - logits.exp().sum(-1, keepdim=True).log()
    nll = torch.full(batch["target_ids"].shape, float("nan"))
    for b in range(nll.shape[0]):
        for i in range(nll.shape[1]):
            t = int(batch["target_ids"][b, i])
            if t != -100:
                nll[b, i] = -log_probs[b, i, t]
    return nll


def _seq2seq_batch() -> dict[str, torch.Tensor]:
    """Left-padded prompt + right-padded target, as in the docs/arlm.md example (BOS=4, EOS=3)."""
    input_ids = torch.tensor([[0, 17, 18, 4, 27, 28, 3, 0], [19, 20, 21, 4, 30, 3, 0, 0]])
    attention_mask = input_ids != 0
    target_ids = torch.tensor([[-100, -100, -100, 27, 28, 3, -100, -100], [-100, -100, -100, 30, 3, -100, -100, -100]])
    return {"input_ids": input_ids, "attention_mask": attention_mask, "target_ids": target_ids}


def test_conforms_to_protocol(tiny_arlm_model) -> None:
    loss_fn = ARLMLoss(tiny_arlm_model, tokenizer=None)
    assert isinstance(loss_fn, LossFunction)


def test_positions_and_causal_mask_helpers() -> None:
    mask = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 0]], dtype=torch.bool)
    assert positions_from_attention_mask(mask).tolist() == [[0, 0, 0, 1], [0, 1, 2, 0]]
    assert positions_from_attention_mask(mask.long()).tolist() == [[0, 0, 0, 1], [0, 1, 2, 0]]
    cm = causal_attention_mask(mask)
    assert cm.shape == (2, 4, 4) and cm.dtype == torch.bool
    assert cm[0].long().tolist() == [[0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 1, 0], [0, 0, 1, 1]]
    assert cm[1].long().tolist() == [[1, 0, 0, 0], [1, 1, 0, 0], [1, 1, 1, 0], [1, 1, 1, 0]]


@pytest.mark.parametrize("batch_kind", ["right_padded", "seq2seq"])
def test_loss_equals_hand_computed_cross_entropy(tiny_arlm_model, arlm_batch, batch_kind: str) -> None:
    batch = arlm_batch if batch_kind == "right_padded" else _seq2seq_batch()
    out = ARLMLoss(tiny_arlm_model, None)(batch)
    nll = _manual_nll(tiny_arlm_model, batch)
    valid = batch["target_ids"] != -100
    torch.testing.assert_close(out["loss"], nll[valid].mean(), rtol=0, atol=1e-5)
    torch.testing.assert_close(out["nlls"], nll[valid], rtol=0, atol=1e-5)  # row-major order
    expected_rows = torch.stack([nll[b][valid[b]].mean() for b in range(nll.shape[0])])
    torch.testing.assert_close(out["batch_loss"], expected_rows, rtol=0, atol=1e-5)
    assert out["nlls"].shape == (int(valid.sum()),)
    assert out["batch_loss"].shape == (batch["input_ids"].shape[0],)


def test_nll_counts_on_fixture_batch(tiny_arlm_model, arlm_batch) -> None:
    out = ARLMLoss(tiny_arlm_model, None)(arlm_batch)
    assert out["nlls"].numel() == 5 + 3 + 4  # each row scores all but its last real token
    assert (out["nlls"] > 0).all()
    # mean of the per-token nlls is the loss; the loss is not the mean of the row means here
    torch.testing.assert_close(out["loss"], out["nlls"].mean(), rtol=0, atol=1e-6)
    assert not torch.allclose(out["loss"], out["batch_loss"].mean(), rtol=0, atol=1e-7)


def test_matches_torch_cross_entropy_mean(tiny_arlm_model) -> None:
    batch = _seq2seq_batch()
    mask = batch["attention_mask"]
    logits = tiny_arlm_model(batch["input_ids"], causal_attention_mask(mask), positions_from_attention_mask(mask))
    spec = torch.nn.functional.cross_entropy(logits.flatten(0, 1), batch["target_ids"].flatten(), ignore_index=-100)
    torch.testing.assert_close(ARLMLoss(tiny_arlm_model, None)(batch)["loss"], spec, rtol=0, atol=1e-6)


def test_ignore_index_excludes_positions(tiny_arlm_model, arlm_batch) -> None:
    full = ARLMLoss(tiny_arlm_model, None)(arlm_batch)
    batch = dict(arlm_batch)
    targets = arlm_batch["target_ids"].clone()
    targets[0, :3] = -100
    batch["target_ids"] = targets
    out = ARLMLoss(tiny_arlm_model, None)(batch)
    keep = arlm_batch["target_ids"] != -100
    kept_now = (targets != -100)[keep]
    torch.testing.assert_close(out["nlls"], full["nlls"][kept_now], rtol=0, atol=1e-6)
    torch.testing.assert_close(out["batch_loss"][0], full["nlls"][3:5].mean(), rtol=0, atol=1e-6)
    torch.testing.assert_close(out["batch_loss"][1:], full["batch_loss"][1:], rtol=0, atol=1e-6)


def test_all_ignored_batch(tiny_arlm_model, arlm_batch) -> None:
    batch = dict(arlm_batch)
    batch["target_ids"] = torch.full_like(arlm_batch["target_ids"], -100)
    tiny_arlm_model.train()
    out = ARLMLoss(tiny_arlm_model, None)(batch)
    assert out["loss"].item() == 0.0 and out["loss"].requires_grad
    assert torch.equal(out["batch_loss"], torch.zeros(3))
    assert out["nlls"].shape == (0,)
    out["loss"].backward()
    for name, p in tiny_arlm_model.named_parameters():  # graph connected: every grad exists, all zero
        assert p.grad is not None and torch.count_nonzero(p.grad) == 0, name


def test_one_all_ignored_row_gets_zero_batch_loss(tiny_arlm_model, arlm_batch) -> None:
    full = ARLMLoss(tiny_arlm_model, None)(arlm_batch)
    batch = dict(arlm_batch)
    targets = arlm_batch["target_ids"].clone()
    targets[1] = -100
    batch["target_ids"] = targets
    out = ARLMLoss(tiny_arlm_model, None)(batch)
    assert out["batch_loss"][1].item() == 0.0
    torch.testing.assert_close(out["batch_loss"][[0, 2]], full["batch_loss"][[0, 2]], rtol=0, atol=1e-6)
    assert out["nlls"].numel() == 5 + 4


@pytest.mark.parametrize("batch_kind", ["right_padded", "left_padded", "seq2seq", "no_padding"])
def test_fast_mask_path_equals_spec_3d_mask(tiny_arlm_model, arlm_batch, batch_kind: str) -> None:
    if batch_kind == "right_padded":
        batch = arlm_batch
    elif batch_kind == "seq2seq":
        batch = _seq2seq_batch()
    elif batch_kind == "left_padded":
        batch = {k: v.flip(1) for k, v in arlm_batch.items()}
        batch["target_ids"] = torch.where(batch["attention_mask"], batch["target_ids"], -100)
    else:
        batch = {k: v[:1] for k, v in arlm_batch.items()}
    fast = ARLMLoss(tiny_arlm_model, None)(batch)
    spec = ARLMLoss(tiny_arlm_model, None, use_3d_mask=True)(batch)
    for key in ("loss", "batch_loss", "nlls"):
        torch.testing.assert_close(fast[key], spec[key], rtol=0, atol=1e-6)


def test_fast_path_choice(tiny_arlm_model, arlm_batch) -> None:
    loss_fn = ARLMLoss(tiny_arlm_model, None)
    mask, valid = arlm_batch["attention_mask"], arlm_batch["target_ids"] != -100
    assert loss_fn._model_mask(mask, valid) is None  # right-padded, padding never scored
    assert torch.equal(loss_fn._model_mask(mask.flip(1), valid.flip(1) & mask.flip(1)), mask.flip(1))
    scored_padding = valid | ~mask
    assert loss_fn._model_mask(mask, scored_padding) is mask  # keep the mask: padding is scored
    assert ARLMLoss(tiny_arlm_model, None, use_3d_mask=True)._model_mask(mask, valid).shape == (3, 6, 6)


def test_call_equals_loss_fn_and_backward(tiny_arlm_model, arlm_batch) -> None:
    loss_fn = ARLMLoss(tiny_arlm_model, None)
    a = loss_fn(arlm_batch, 0, 0, "train/lm")
    b = loss_fn.loss_fn(arlm_batch, batch_idx=0, dataloader_idx=0, dataloader_name="train/lm")
    assert torch.equal(a["loss"], b["loss"]) and torch.equal(a["nlls"], b["nlls"])
    assert not a["nlls"].requires_grad and not a["batch_loss"].requires_grad
    a["loss"].backward()
    assert tiny_arlm_model.final_layer.linear.weight.grad.abs().sum() > 0


def test_int_attention_mask_accepted(tiny_arlm_model, arlm_batch) -> None:
    as_int = dict(arlm_batch, attention_mask=arlm_batch["attention_mask"].long())
    torch.testing.assert_close(
        ARLMLoss(tiny_arlm_model, None)(as_int)["loss"],
        ARLMLoss(tiny_arlm_model, None)(arlm_batch)["loss"],
        rtol=0,
        atol=0,
    )


def test_bad_batches_are_clear_errors(tiny_arlm_model, arlm_batch) -> None:
    loss_fn = ARLMLoss(tiny_arlm_model, None)
    with pytest.raises(KeyError, match="target_ids"):
        loss_fn({k: v for k, v in arlm_batch.items() if k != "target_ids"})
    with pytest.raises(ValueError, match="share one"):
        loss_fn(dict(arlm_batch, target_ids=arlm_batch["target_ids"][:, :-1]))
    with pytest.raises(ValueError, match="no model"):
        ARLMLoss(None, None)(arlm_batch)


def _loss_and_grads(model, batch, fused: bool, bf16: bool = False, **kw) -> tuple[dict, dict]:
    model.zero_grad(set_to_none=True)
    with torch.autocast("cpu", torch.bfloat16, enabled=bf16):
        out = ARLMLoss(model, None, fused=fused, **kw)(batch)
    out["loss"].backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return out, grads


@pytest.mark.parametrize("bf16", [False, True], ids=["fp32", "bf16-autocast"])
@pytest.mark.parametrize("batch_kind", ["right_padded", "seq2seq", "all_ignored"])
def test_fused_head_equals_the_plain_logits_path(make_arlm_model, arlm_batch, batch_kind: str, bf16: bool) -> None:
    """The fused head + cross-entropy gives the plain path's loss, batch_loss, nlls and every parameter's
    gradient (fp32: to rounding; bf16 autocast: the plain path rounds its gradients to bf16)."""
    model = make_arlm_model()
    batch = _seq2seq_batch() if batch_kind == "seq2seq" else dict(arlm_batch)
    if batch_kind == "all_ignored":
        batch["target_ids"] = torch.full_like(arlm_batch["target_ids"], -100)
    fused, fused_grads = _loss_and_grads(model, batch, True, bf16, chunk_size=4)
    plain, plain_grads = _loss_and_grads(model, batch, False, bf16)
    for key in ("loss", "batch_loss", "nlls"):
        torch.testing.assert_close(fused[key], plain[key], rtol=1e-6, atol=1e-6)
    assert fused_grads.keys() == plain_grads.keys() == {n for n, _ in model.named_parameters()}
    for name, g in plain_grads.items():
        if not bf16:
            torch.testing.assert_close(fused_grads[name], g, rtol=1e-4, atol=1e-7, msg=name)
        else:  # relative difference of the whole gradient, a few bf16 roundings (bf16 eps = 2**-8)
            assert float((fused_grads[name] - g).norm()) <= 2e-2 * float(g.norm()), name


def test_fused_head_never_calls_the_models_forward(tiny_arlm_model, arlm_batch) -> None:
    """Only the hidden states are computed (no (B, L, V) logits); a model without the contract keeps the plain path."""
    calls: list[str] = []
    handle = tiny_arlm_model.register_forward_hook(lambda m, a, out: calls.append("forward"))
    try:
        ARLMLoss(tiny_arlm_model, None)(arlm_batch)
        assert calls == []
        ARLMLoss(tiny_arlm_model, None, fused=False)(arlm_batch)
        assert calls == ["forward"]
    finally:
        handle.remove()
    assert torch.equal(
        tiny_arlm_model.lm_head(tiny_arlm_model.forward_hidden(arlm_batch["input_ids"])),
        tiny_arlm_model(arlm_batch["input_ids"]),
    )


@pytest.fixture
def fresh_dynamo():
    """Drop Dynamo's caches after the test (checked functions share one wrapper code object, whose compiled
    entries count towards one recompile limit for the whole session)."""
    yield
    torch._dynamo.reset()


def test_compiled_model_trains_through_its_compiled_hidden_states(make_arlm_model, arlm_batch, fresh_dynamo) -> None:
    """``compile=true`` hands the loss ``torch.compile(model)``: the hidden states run compiled and the
    loss and gradients equal the eager ones."""
    from xlm_core.testing.typecheck import unchecked

    eager_model, compiled_model = make_arlm_model(), make_arlm_model()
    eager, eager_grads = _loss_and_grads(eager_model, arlm_batch, True)
    compiled = torch.compile(compiled_model, backend="aot_eager")
    with unchecked():
        out, grads = _loss_and_grads(compiled, arlm_batch, True)
        from xlm_core.modules import hidden_state_head

        forward_hidden, _ = hidden_state_head(compiled)
    assert forward_hidden != compiled_model.forward_hidden
    torch.testing.assert_close(out["loss"], eager["loss"], rtol=1e-6, atol=1e-6)
    for name, g in eager_grads.items():
        torch.testing.assert_close(
            grads[f"_orig_mod.{name}"] if f"_orig_mod.{name}" in grads else grads[name],
            g,
            rtol=1e-4,
            atol=1e-6,
            msg=name,
        )
