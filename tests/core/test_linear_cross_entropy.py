"""Fused linear + cross-entropy: equal to the unfused head + F.cross_entropy in value and every gradient."""

from __future__ import annotations

import importlib

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from xlm_core.kit.token_nll import scored_token_nll
from xlm_core.modules import hidden_state_head, linear_cross_entropy, scored_linear_cross_entropy
from xlm_core.testing.typecheck import unchecked

lce = importlib.import_module("xlm_core.modules.linear_cross_entropy")  # the package exports the function by that name
N, D, V = 37, 16, 101  # 37 tokens: no tested chunk size divides it


def _inputs(seed: int = 0, bias: bool = True) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(N, D, generator=g).requires_grad_()
    weight = (0.3 * torch.randn(V, D, generator=g)).requires_grad_()
    b = torch.randn(V, generator=g).requires_grad_() if bias else None
    targets = torch.randint(0, V, (N,), generator=g)
    targets[::5] = -100
    return hidden, weight, b, targets


def _unfused(hidden, weight, bias, targets, token_weights=None, bf16=False, excluded=None):
    """The reference: full logits from F.linear (autocast if ``bf16``), fp32 cross-entropy, summed."""
    with torch.autocast("cpu", torch.bfloat16, enabled=bf16):
        logits = F.linear(hidden, weight, bias)
    if excluded is not None:
        logits = logits.index_fill(-1, torch.tensor([excluded]), torch.finfo(logits.dtype).min)
    nll = F.cross_entropy(logits.float(), targets, reduction="none", ignore_index=-100)
    per_token = nll if token_weights is None else nll * token_weights
    return per_token.sum(), nll.detach()


def _grads(loss, tensors):
    return torch.autograd.grad(loss, [t for t in tensors if t is not None])


@pytest.mark.parametrize("chunk_size", [1, 8, 36, 37, 512])
@pytest.mark.parametrize("bias", [True, False])
def test_fp32_loss_nll_and_gradients_equal_unfused(chunk_size: int, bias: bool) -> None:
    hidden, weight, b, targets = _inputs(bias=bias)
    ref_loss, ref_nll = _unfused(hidden, weight, b, targets)
    loss, nll = linear_cross_entropy(hidden, weight, targets, bias=b, chunk_size=chunk_size)
    torch.testing.assert_close(loss, ref_loss, rtol=1e-6, atol=1e-5)
    torch.testing.assert_close(nll, ref_nll, rtol=1e-6, atol=1e-6)
    assert not nll.requires_grad and bool((nll[targets == -100] == 0).all())
    for got, want in zip(_grads(loss, (hidden, weight, b)), _grads(ref_loss, (hidden, weight, b))):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_token_weights_scale_each_token_and_get_no_gradient() -> None:
    hidden, weight, b, targets = _inputs()
    token_weights = torch.rand(N, generator=torch.Generator().manual_seed(3)) * 4
    ref_loss, _ = _unfused(hidden, weight, b, targets, token_weights)
    loss, _ = linear_cross_entropy(hidden, weight, targets, bias=b, token_weights=token_weights, chunk_size=8)
    torch.testing.assert_close(loss, ref_loss, rtol=1e-6, atol=1e-5)
    for got, want in zip(_grads(loss, (hidden, weight, b)), _grads(ref_loss, (hidden, weight, b))):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("emulated", [True, False], ids=["bf16-as-fp32-products", "bf16-kernels"])
def test_bf16_autocast_matches_unfused_autocast_path(monkeypatch: pytest.MonkeyPatch, emulated: bool) -> None:
    """Under bf16 autocast the products run in bf16 (native kernels, or fp32 products of bf16-rounded
    operands on CPUs without bf16 units), the softmax in fp32: the loss equals the unfused autocast
    path's, gradients agree to bf16 rounding (the unfused path rounds them to bf16, ours accumulates
    in fp32)."""
    monkeypatch.setattr(lce, "_emulates_bf16", lambda device_type, dtype: emulated and dtype == torch.bfloat16)
    hidden, weight, b, targets = _inputs()
    ref_loss, ref_nll = _unfused(hidden, weight, b, targets, bf16=True)
    with torch.autocast("cpu", torch.bfloat16):
        loss, nll = linear_cross_entropy(hidden, weight, targets, bias=b, chunk_size=8)
    assert loss.dtype == torch.float32 and nll.dtype == torch.float32
    torch.testing.assert_close(loss, ref_loss, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(nll, ref_nll, rtol=1e-5, atol=1e-5)
    grads, ref_grads = _grads(loss, (hidden, weight, b)), _grads(ref_loss, (hidden, weight, b))
    for got, want in zip(grads, ref_grads):
        assert got.dtype == want.dtype == torch.float32
        scale = want.abs().max()
        torch.testing.assert_close(got, want, rtol=0, atol=float(scale) * 2**-6)
    fp32_loss, _ = _unfused(hidden, weight, b, targets)
    assert (loss - fp32_loss).abs() > 0  # the products really ran in bf16


def test_all_ignored_gives_zero_loss_connected_to_inputs_with_zero_gradients() -> None:
    hidden, weight, b, targets = _inputs()
    loss, nll = linear_cross_entropy(hidden, weight, torch.full_like(targets, -100), bias=b, chunk_size=8)
    assert loss.item() == 0.0 and loss.requires_grad
    assert bool((nll == 0).all())
    for g in _grads(loss, (hidden, weight, b)):
        assert g is not None and bool((g == 0).all())


def test_no_tokens_at_all_gives_zero_loss_connected_to_the_head() -> None:
    _, weight, b, _ = _inputs()
    hidden = torch.zeros(0, D, requires_grad=True)
    loss, nll = linear_cross_entropy(hidden, weight, torch.zeros(0, dtype=torch.long), bias=b)
    assert loss.item() == 0.0 and nll.shape == (0,)
    gh, gw, gb = _grads(loss, (hidden, weight, b))
    assert gh.shape == (0, D) and bool((gw == 0).all()) and bool((gb == 0).all())


def test_without_grad_the_values_are_the_same() -> None:
    hidden, weight, b, targets = _inputs()
    loss, nll = linear_cross_entropy(hidden, weight, targets, bias=b, chunk_size=8)
    with torch.no_grad():
        loss_ng, nll_ng = linear_cross_entropy(hidden, weight, targets, bias=b, chunk_size=8)
    assert not loss_ng.requires_grad
    assert torch.equal(loss_ng, loss.detach()) and torch.equal(nll_ng, nll)


def test_excluded_class_equals_lowest_finite_logit() -> None:
    hidden, weight, b, targets = _inputs()
    targets = targets.masked_fill(targets == 5, 6)
    ref_loss, ref_nll = _unfused(hidden, weight, b, targets, excluded=5)
    loss, nll = linear_cross_entropy(hidden, weight, targets, bias=b, excluded_class=5, chunk_size=8)
    torch.testing.assert_close(loss, ref_loss, rtol=1e-6, atol=1e-5)
    torch.testing.assert_close(nll, ref_nll, rtol=1e-6, atol=1e-6)
    got, want = _grads(loss, (hidden, weight, b)), _grads(ref_loss, (hidden, weight, b))
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-6)
    assert bool((got[1][5] == 0).all())  # the excluded class's weights learn nothing


def test_leading_dimensions_and_the_scored_positions_variant() -> None:
    hidden, weight, b, targets = _inputs()
    h3, t3 = hidden[:36].reshape(4, 9, D), targets[:36].reshape(4, 9)
    loss, nll = linear_cross_entropy(h3, weight, t3, bias=b, chunk_size=5)
    ref_loss, _ = _unfused(h3.reshape(36, D), weight, b, t3.reshape(36))
    torch.testing.assert_close(loss, ref_loss, rtol=1e-6, atol=1e-5)
    assert nll.shape == (4, 9)
    head = nn.Linear(D, V)
    with torch.no_grad():
        head.weight.copy_(weight)
        head.bias.copy_(b)
    scored = t3 != -100
    scored[0] = False  # a row with nothing scored
    loss_s, nll_s = scored_linear_cross_entropy(h3, head, t3, scored, chunk_size=4)
    ref_s, _ = _unfused(h3.reshape(36, D), weight, b, t3.masked_fill(~scored, -100).reshape(36))
    torch.testing.assert_close(loss_s, ref_s, rtol=1e-6, atol=1e-5)
    assert nll_s.shape == (4, 9) and bool((nll_s[~scored] == 0).all())
    torch.testing.assert_close(nll_s[scored], nll[scored])


def test_invalid_arguments_name_the_mismatch() -> None:
    hidden, weight, _, targets = _inputs(bias=False)
    with unchecked():
        with pytest.raises(ValueError, match="targets' shape"):
            linear_cross_entropy(hidden, weight, targets[:-1])
        with pytest.raises(ValueError, match="d_model"):
            linear_cross_entropy(hidden[:, :-1], weight, targets)
        with pytest.raises(ValueError, match="chunk_size"):
            linear_cross_entropy(hidden, weight, targets, chunk_size=0)


def test_default_chunk_size_keeps_a_block_near_128_mib() -> None:
    assert lce.chunk_size_for(151_936) == 220
    assert lce.chunk_size_for(1_000) == 33_554
    assert lce.chunk_size_for(10**9) == 16


class _Contract(nn.Module):
    """A minimal model following the hidden-state contract."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(V, D)
        self.lm_head = nn.Linear(D, V, bias=False)

    def forward_hidden(self, x_t, attention_mask=None, positions=None):
        return torch.tanh(self.embed(x_t))

    def forward(self, x_t, attention_mask=None, positions=None):
        return self.lm_head(self.forward_hidden(x_t, attention_mask, positions))


def test_hidden_state_head_follows_the_contract_and_compiles_for_compiled_models(fresh_dynamo) -> None:
    model = _Contract()
    forward_hidden, head = hidden_state_head(model)
    assert head is model.lm_head and forward_hidden == model.forward_hidden
    assert hidden_state_head(nn.Linear(2, 3)) is None
    compiled = torch.compile(model)
    forward_c, head_c = hidden_state_head(compiled)
    assert head_c is model.lm_head
    assert forward_c != model.forward_hidden  # the compiled model's hidden states are compiled too
    assert hidden_state_head(compiled)[0] is forward_c  # compiled once per model


class _LogitsOnly(nn.Module):
    """The same network without the contract: a loss must score its logits."""

    def __init__(self, inner: _Contract) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x_t, attention_mask=None, positions=None):
        return self.inner(x_t, attention_mask, positions)


@pytest.mark.parametrize("weighted", [False, True])
def test_scored_token_nll_is_the_same_on_the_fused_and_the_logits_path(weighted: bool) -> None:
    g = torch.Generator().manual_seed(3)
    torch.manual_seed(3)
    model = _Contract()
    ids = torch.randint(0, V, (2, 5), generator=g)
    targets = torch.randint(1, V, (2, 5), generator=g)
    scored = torch.tensor([[True, False, True, True, False], [False, True, True, False, False]])
    weights = torch.rand(2, 5, generator=g) + 0.5 if weighted else None
    # The reference by hand: log-softmax of the logits with class 0 removed, at the scored targets.
    logp = model(ids).detach().index_fill(-1, torch.tensor([0]), float("-inf")).log_softmax(-1)
    expected_nll = torch.where(scored, -logp.gather(-1, targets.unsqueeze(-1)).squeeze(-1), 0.0)
    expected_sum = (expected_nll * (1.0 if weights is None else weights)).sum()
    grads = []
    for net in (model, _LogitsOnly(model)):
        model.zero_grad()
        loss_sum, nll = scored_token_nll(net, ids, None, None, targets, scored, token_weights=weights, excluded_class=0)
        torch.testing.assert_close(loss_sum, expected_sum)
        torch.testing.assert_close(nll, expected_nll)
        loss_sum.backward()
        grads.append(model.lm_head.weight.grad.clone())
    torch.testing.assert_close(grads[0], grads[1])
    _, with_class_0 = scored_token_nll(model, ids, None, None, targets, scored, fused=False, token_weights=weights)
    logp_all = model(ids).detach().log_softmax(-1)
    torch.testing.assert_close(
        with_class_0, torch.where(scored, -logp_all.gather(-1, targets.unsqueeze(-1)).squeeze(-1), 0.0)
    )
    assert (with_class_0[scored] > nll[scored]).all()  # class 0 allowed takes probability from every target


@pytest.fixture
def fresh_dynamo():
    """Drop Dynamo's caches after the test: with the suite's annotation checks every checked function runs
    through one shared wrapper code object, whose compiled entries count towards one recompile limit."""
    yield
    torch._dynamo.reset()


def test_under_torch_compile_with_a_compiled_block(fresh_dynamo) -> None:
    """Inside a compiled function (the fused head is a graph break) and with its block compiled, the
    loss and gradients equal the eager ones."""
    hidden, weight, b, targets = _inputs()

    def step(h: torch.Tensor, compile_block: bool) -> torch.Tensor:
        return linear_cross_entropy(
            torch.tanh(h) * 2, weight, targets, bias=b, chunk_size=16, compile_block=compile_block
        )[0]

    with unchecked():
        eager = step(hidden, False)
        compiled = torch.compile(step)(hidden, True)
    torch.testing.assert_close(compiled, eager, rtol=1e-5, atol=1e-4)
    for got, want in zip(_grads(compiled, (hidden, weight, b)), _grads(eager, (hidden, weight, b))):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
