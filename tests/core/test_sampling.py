"""Tests of xlm_core.kit.sampling on hand-built distributions."""

from __future__ import annotations

import math

import pytest
import torch

from xlm_core.kit.sampling import sample_from_logits, sample_from_top_k, sample_from_top_p
from xlm_core.testing.typecheck import unchecked

# probabilities 0.5, 0.3, 0.15, 0.05 at ids 2, 0, 3, 1
PROBS = torch.tensor([0.3, 0.05, 0.5, 0.15])
LOGITS = PROBS.log()
DRAWS = 4000


def _draws(fn, *args, **kwargs) -> torch.Tensor:
    """Many independent draws at once: the hand-built row repeated DRAWS times."""
    logits = LOGITS.expand(DRAWS, -1).clone()
    g = torch.Generator().manual_seed(0)
    return fn(*args, logits, generator=g, **kwargs)


def test_full_sampling_matches_distribution() -> None:
    ids = _draws(sample_from_logits)
    assert ids.shape == (DRAWS,) and ids.dtype == torch.long
    freq = torch.bincount(ids, minlength=4).float() / DRAWS
    # 4 binomial standard deviations at most 0.5 * 0.5 / 4000 -> 0.032
    assert torch.allclose(freq, PROBS, atol=0.032), freq


def test_zero_probability_never_drawn() -> None:
    logits = torch.tensor([0.0, float("-inf"), 1.0, float("-inf")]).expand(DRAWS, -1)
    ids = sample_from_logits(logits, generator=torch.Generator().manual_seed(1))
    assert set(ids.tolist()) == {0, 2}


def test_top_k_support() -> None:
    ids = _draws(sample_from_top_k, 2)
    assert set(ids.tolist()) == {2, 0}
    freq0 = (ids == 0).float().mean().item()
    assert abs(freq0 - 0.3 / 0.8) < 0.04


def test_top_k_larger_than_vocab_is_full_sampling() -> None:
    ids = _draws(sample_from_top_k, 50)
    assert set(ids.tolist()) == {0, 1, 2, 3}


def test_top_k_one_is_argmax_and_deterministic() -> None:
    logits = torch.randn(3, 5, 11, generator=torch.Generator().manual_seed(3))
    torch.manual_seed(0)
    state = torch.get_rng_state()
    out = sample_from_top_k(1, logits)
    assert torch.equal(out, logits.argmax(-1))
    assert out.shape == (3, 5)
    assert torch.equal(torch.get_rng_state(), state)  # no randomness consumed


def test_top_p_keeps_crossing_token() -> None:
    # sorted mass: 0.5, 0.8, 0.95, 1.0; p=0.6 -> {2 (0.5), 0 (crosses 0.6)}
    ids = _draws(sample_from_top_p, 0.6)
    assert set(ids.tolist()) == {2, 0}
    # p=0.85 -> 0.5 + 0.3 < 0.85, so the third token (id 3) crosses and is kept
    ids = _draws(sample_from_top_p, 0.85)
    assert set(ids.tolist()) == {2, 0, 3}


def test_top_p_small_p_keeps_top_token_only() -> None:
    ids = _draws(sample_from_top_p, 0.01)
    assert set(ids.tolist()) == {2}


def test_top_p_one_is_full_support_and_renormalised() -> None:
    ids = _draws(sample_from_top_p, 1.0)
    assert set(ids.tolist()) == {0, 1, 2, 3}
    ids = _draws(sample_from_top_p, 0.6)
    assert abs((ids == 2).float().mean().item() - 0.5 / 0.8) < 0.04


def test_temperature_sharpens_and_flattens() -> None:
    cold = _draws(sample_from_logits, temperature=0.05)
    assert (cold == 2).float().mean().item() > 0.99
    hot = _draws(sample_from_logits, temperature=100.0)
    freq = torch.bincount(hot, minlength=4).float() / DRAWS
    assert torch.allclose(freq, torch.full((4,), 0.25), atol=0.035), freq


def test_temperature_applies_before_nucleus() -> None:
    # At T=0.1 the top token holds ~0.99 of the mass, so p=0.9 keeps it alone.
    ids = _draws(sample_from_top_p, 0.9, temperature=0.1)
    assert set(ids.tolist()) == {2}


@pytest.mark.parametrize("fn,args", [(sample_from_logits, ()), (sample_from_top_k, (3,)), (sample_from_top_p, (0.7,))])
def test_fixed_seed_reproduces(fn, args) -> None:
    logits = torch.randn(16, 30, generator=torch.Generator().manual_seed(5))
    a = fn(*args, logits, generator=torch.Generator().manual_seed(123))
    b = fn(*args, logits, generator=torch.Generator().manual_seed(123))
    c = fn(*args, logits, generator=torch.Generator().manual_seed(124))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_leading_dims_preserved() -> None:
    logits = torch.randn(2, 3, 4, 7)
    for out in (sample_from_logits(logits), sample_from_top_k(3, logits), sample_from_top_p(0.5, logits)):
        assert out.shape == (2, 3, 4)
        assert int(out.min()) >= 0 and int(out.max()) < 7


@pytest.mark.parametrize("k", [0, -1, 1.5, True])
def test_invalid_k(k) -> None:
    with unchecked(), pytest.raises(ValueError, match="k >= 1"):
        sample_from_top_k(k, LOGITS)


@pytest.mark.parametrize("p", [0.0, -0.1, 1.01, math.nan])
def test_invalid_p(p) -> None:
    with pytest.raises(ValueError, match="0 < p <= 1"):
        sample_from_top_p(p, LOGITS)


@pytest.mark.parametrize("t", [0.0, -1.0])
def test_invalid_temperature(t) -> None:
    for call in (
        lambda: sample_from_logits(LOGITS, temperature=t),
        lambda: sample_from_top_k(2, LOGITS, temperature=t),
        lambda: sample_from_top_p(0.5, LOGITS, temperature=t),
    ):
        with pytest.raises(ValueError, match="temperature must be > 0"):
            call()


@pytest.mark.parametrize("temperature", [1e-40, 1e-50, 1e-300])
def test_a_tiny_temperature_is_the_argmax_not_nan(temperature: float) -> None:
    """logits / 1e-40 overflows to inf and softmax to NaN; the shifted logits give the greedy token."""
    logits = torch.randn(64, 50, generator=torch.Generator().manual_seed(0)) * 5
    logits[0, 3] = float("-inf")
    greedy = logits.argmax(-1)
    g = torch.Generator().manual_seed(1)
    assert torch.equal(sample_from_logits(logits, temperature, g), greedy)
    assert torch.equal(sample_from_top_k(10, logits, temperature, g), greedy)
    assert torch.equal(sample_from_top_p(0.9, logits, temperature, g), greedy)
