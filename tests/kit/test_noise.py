"""Masked-diffusion noise schedules against their closed forms, and the sampling of training times."""

from __future__ import annotations

import math

import pytest
import torch

from xlm_core.kit.noise import CosineSchedule, LogLinearSchedule, sample_times

T = torch.tensor([0.0, 1e-6, 1e-3, 0.25, 0.5, 0.75, 1.0], dtype=torch.float64)


def test_loglinear_closed_forms() -> None:
    s = LogLinearSchedule()
    assert torch.equal(s.alpha(T), 1 - T)
    assert torch.equal(s.alpha_prime(T), -torch.ones_like(T))
    assert torch.allclose(s.t_of_alpha(s.alpha(T)), T, rtol=0, atol=1e-15)
    inside = T.clamp(min=1e-3)
    assert torch.allclose(s.weight(T), 1 / inside, rtol=0, atol=0)
    assert s.weight(torch.tensor([0.0])).item() == pytest.approx(1000.0)  # clamped at eps, finite


def test_cosine_closed_forms() -> None:
    s = CosineSchedule()
    x = math.pi * T / 2
    assert torch.allclose(s.alpha(T), torch.cos(x), atol=1e-15)
    assert torch.allclose(s.alpha_prime(T), -math.pi / 2 * torch.sin(x), atol=1e-15)
    assert torch.allclose(s.mask_probability(T), 1 - torch.cos(x), atol=1e-15)
    assert torch.allclose(s.t_of_alpha(s.alpha(T)), T, atol=1e-7)
    inside = T.clamp(min=1e-3)
    xi = math.pi * inside / 2
    assert torch.allclose(s.weight(T), (math.pi / 2) * torch.sin(xi) / (1 - torch.cos(xi)), rtol=1e-9)
    assert s.weight(torch.tensor([1.0], dtype=torch.float64)).item() == pytest.approx(math.pi / 2)
    # near 0 the weight behaves like 2/t, and the stable 1 - cos keeps it finite in float32
    assert s.weight(torch.tensor([1e-3], dtype=torch.float64)).item() == pytest.approx(2 / 1e-3, rel=1e-6)
    assert torch.isfinite(s.weight(torch.tensor([0.0, 1e-8], dtype=torch.float32))).all()


@pytest.mark.parametrize("schedule", [LogLinearSchedule(), CosineSchedule()])
def test_boundaries_and_monotonicity(schedule) -> None:
    t = torch.linspace(0, 1, 101, dtype=torch.float64)
    a = schedule.alpha(t)
    assert a[0].item() == 1.0 and abs(a[-1].item()) < 1e-15
    assert (a[1:] < a[:-1]).all()
    # the weight is the derivative's ratio: -alpha'/(1-alpha), checked by finite differences
    mid = torch.tensor([0.2, 0.5, 0.8], dtype=torch.float64)
    h = 1e-6
    numeric = -(schedule.alpha(mid + h) - schedule.alpha(mid - h)) / (2 * h) / (1 - schedule.alpha(mid))
    assert torch.allclose(schedule.weight(mid), numeric, rtol=1e-6)


@pytest.mark.parametrize("schedule", [LogLinearSchedule(), CosineSchedule()])
def test_reveal_probability(schedule) -> None:
    t, s = torch.tensor([1.0, 0.5, 0.5]), torch.tensor([0.0, 0.5, 0.25])
    p = schedule.reveal_probability(t, s)
    assert p[0].item() == pytest.approx(1.0)  # to time 0 every token is revealed
    assert p[1].item() == 0.0  # no time passes: nothing revealed
    expected = (schedule.alpha(s[2]) - schedule.alpha(t[2])) / (1 - schedule.alpha(t[2]))
    assert p[2].item() == pytest.approx(expected.item())


def test_eps_is_validated() -> None:
    with pytest.raises(ValueError, match=r"eps=0 must lie in \(0, 1\)"):
        LogLinearSchedule(eps=0)


def test_antithetic_times_cover_the_range_evenly() -> None:
    g = torch.Generator().manual_seed(0)
    t = sample_times(8, eps=1e-3, antithetic=True, generator=g)
    assert t.shape == (8,) and (t >= 1e-3).all() and (t <= 1).all()
    u = ((t - 1e-3) / (1 - 1e-3)).sort().values
    assert torch.allclose(u[1:] - u[:-1], torch.full((7,), 1 / 8), atol=1e-6)  # one per 1/B slice
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    assert torch.equal(sample_times(5, generator=g1), sample_times(5, generator=g2))
    iid = sample_times(10_000, antithetic=False, generator=torch.Generator().manual_seed(1))
    assert abs(iid.mean().item() - 0.5) < 0.01 and iid.min() >= 1e-3
