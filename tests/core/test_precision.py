"""trainer.precision=auto: hardware detection, resolution, the autocast contexts outside the Trainer."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from xlm_core.jobs.common import trainer_kwargs
from xlm_core.training import precision as P


@pytest.fixture
def bf16_cpu(monkeypatch: pytest.MonkeyPatch):
    """Pretend this CPU has (``bf16_cpu(True)``) or lacks (``False``) native bf16, with no CUDA device."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)

    def set_native(native: bool) -> None:
        monkeypatch.setattr(P, "cpu_has_native_bf16", lambda: native)

    return set_native


@pytest.mark.parametrize("native, expected", [(True, "bf16-mixed"), (False, "32-true")])
@pytest.mark.parametrize("accelerator", ["cpu", "auto", None])
def test_auto_on_the_cpu_is_bf16_mixed_only_with_native_bf16(
    bf16_cpu, native: bool, expected: str, accelerator: str | None
) -> None:
    bf16_cpu(native)
    assert P.resolve_precision("auto", accelerator) == expected
    assert P.resolve_precision("AUTO", accelerator) == expected


@pytest.mark.parametrize("native, expected", [(True, "bf16-mixed"), (False, "32-true")])
def test_auto_on_a_gpu_never_picks_fp16(monkeypatch: pytest.MonkeyPatch, native: bool, expected: str) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(P, "cuda_has_native_bf16", lambda: native)
    monkeypatch.setattr(P, "cpu_has_native_bf16", lambda: not native)  # the CPU must not matter
    for accelerator in ("gpu", "cuda", "auto"):
        assert P.resolve_precision("auto", accelerator) == expected


@pytest.mark.parametrize("given", ["32", 32, "32-true", "bf16-mixed", "16-mixed", "bf16-true", None])
def test_explicit_precisions_pass_through(bf16_cpu, given) -> None:
    bf16_cpu(True)
    assert P.resolve_precision(given, "cpu") == given


def test_cpu_detection_reads_the_cpu_feature_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    if not hasattr(torch.cpu, "get_capabilities") or not torch.backends.mkldnn.is_available():
        pytest.skip("needs torch.cpu.get_capabilities and oneDNN")
    for caps, native in (
        ({"avx512_bf16": True}, True),
        ({"amx_bf16": True}, True),
        ({"bf16": True}, True),
        ({"avx2": True, "avx512_f": True}, False),
    ):
        monkeypatch.setattr(torch.cpu, "get_capabilities", lambda caps=caps: caps)
        P.cpu_has_native_bf16.cache_clear()
        assert P.cpu_has_native_bf16() is native, caps
    P.cpu_has_native_bf16.cache_clear()


def test_trainer_kwargs_resolve_auto(bf16_cpu, tmp_path: Path) -> None:
    cfg = OmegaConf.create(
        {"trainer": {"precision": "auto", "accelerator": "cpu", "devices": 1}, "paths": {"run_dir": str(tmp_path)}}
    )
    bf16_cpu(True)
    assert trainer_kwargs(cfg)["precision"] == "bf16-mixed"
    bf16_cpu(False)
    assert trainer_kwargs(cfg)["precision"] == "32-true"


def test_precision_note_says_what_was_chosen_and_why() -> None:
    assert P.precision_note("auto", "bf16-mixed", "cpu") == "bf16-mixed (auto: native bf16 on this CPU)"
    assert P.precision_note("auto", "32-true", "cuda") == "32-true (auto: no native bf16 on this CUDA)"
    assert P.precision_note("32", "32-true", "cpu") == "32-true (trainer.precision=32)"


def test_inference_autocast_turns_the_weight_cache_on_inside_autocast_only() -> None:
    with P.inference_autocast("cpu"):
        assert not torch.is_autocast_enabled("cpu")
    with torch.autocast("cpu", dtype=torch.bfloat16, cache_enabled=False):
        with P.inference_autocast("cpu"):
            assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
            assert torch.is_autocast_cache_enabled()
        assert not torch.is_autocast_cache_enabled()


def test_inference_grad_mode_keeps_autocasts_weight_cast_cache() -> None:
    """Generation under autocast runs without gradients but outside inference mode, where autocast's
    weight-cast cache works: three calls cast the weight once (inference mode: three times)."""
    from torch.profiler import profile

    from xlm_core.training.precision import inference_autocast, inference_grad_mode

    with inference_grad_mode("cpu"):
        assert torch.is_inference_mode_enabled()
    layer, x = torch.nn.Linear(8, 16, bias=False), torch.randn(2, 8)

    def casts(grad_mode) -> int:
        with torch.autocast("cpu", torch.bfloat16), grad_mode, inference_autocast("cpu"), profile() as prof:
            for _ in range(3):
                layer(x)
        return sum(e.count for e in prof.key_averages() if e.key == "aten::_to_copy")

    with torch.autocast("cpu", torch.bfloat16):
        assert not torch.is_inference_mode_enabled()
        with inference_grad_mode("cpu"):
            assert not torch.is_grad_enabled() and not torch.is_inference_mode_enabled()
    assert casts(torch.no_grad()) == 3 + 1  # the input each call, the weight once
    assert casts(torch.inference_mode()) == 3 + 3  # what inference mode would cost
