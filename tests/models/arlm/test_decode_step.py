"""The static-shape decoding step: KVCache.write, model.decode_step, and ARLMPredictor(compile_decode=...).

Greedy ids of the compiled step must equal the eager path's. The default suite compiles with the
``aot_eager`` backend (Dynamo capture + AOT functionalization of the in-place cache writes, seconds);
the inductor (C++ codegen) run is marked slow.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

import xlm_arlm.predictor_arlm as predictor_module
import xlm_core.modules.decode_step as decode_step_module
from xlm_arlm.loss_arlm import positions_from_attention_mask
from xlm_arlm.predictor_arlm import ARLMPredictor
from xlm_core.data.simple_tokenizer import SimpleSpaceTokenizer
from xlm_core.modules import KVCache
from xlm_core.modules.decode_step import StaticDecoder, cache_slots
from xlm_core.testing.typecheck import unchecked

TOK = SimpleSpaceTokenizer.for_numbers(50)
PAD = TOK.pad_token_id
PROMPTS = [[8, 9, 10, 11, 12], [16, 15], [37, 14, 14, 47]]  # left-padded to 5 below


def left_padded(rows: list[list[int]]) -> dict[str, torch.Tensor]:
    width = max(map(len, rows))
    ids = torch.tensor([[PAD] * (width - len(r)) + r for r in rows])
    return {"input_ids": ids, "attention_mask": ids != PAD}


@pytest.fixture(autouse=True)
def _untraced_checks() -> Iterator[None]:
    """The suite's run-time annotation checks are Python Dynamo cannot trace; compiled paths run without."""
    with unchecked():
        yield


@pytest.fixture
def fast_compile(monkeypatch: pytest.MonkeyPatch) -> None:
    """Compile with aot_eager: the same capture and functionalization as inductor, no code generation."""
    monkeypatch.setitem(decode_step_module.COMPILE_OPTIONS, "backend", "aot_eager")


def greedy(model, compile_decode, max_steps: int = 24, **kw) -> dict:
    predictor = ARLMPredictor(
        max_steps=max_steps,
        max_length=None,
        tokenizer=TOK,
        sampling_method="sample_top_k",
        top_k=1,
        model=model,
        compile_decode=compile_decode,
    )
    return predictor.predict(left_padded(PROMPTS), **kw)


def test_kv_cache_write_fills_one_slot_and_returns_every_slot() -> None:
    cache = KVCache(batch_size=2, n_heads=1, max_seq_length=4, head_dim=3)
    k, v = torch.ones(2, 1, 1, 3), 2 * torch.ones(2, 1, 1, 3)
    all_k, all_v = cache.write(k, v, torch.tensor(2))
    assert all_k.shape == all_v.shape == (2, 1, 4, 3)
    assert torch.equal(all_k[:, :, 2], k[:, :, 0]) and torch.equal(all_v[:, :, 2], v[:, :, 0])
    assert all_k[:, :, [0, 1, 3]].abs().sum() == 0
    assert cache.length == 0  # the caller tracks slots


def teacher_forced_logits(model, step_fn=None) -> torch.Tensor:
    """Logits of 3 fed continuation tokens after PROMPTS: ``model`` with a cache, or ``step_fn`` (static step)."""
    batch = left_padded(PROMPTS)
    ids, mask = batch["input_ids"], batch["attention_mask"]
    cont = torch.tensor([[20, 21, 22], [30, 31, 32], [40, 41, 42]])
    full_mask = torch.cat([mask, torch.ones_like(cont, dtype=torch.bool)], 1)
    pos = positions_from_attention_mask(full_mask)
    P = ids.shape[1]
    S = cache_slots(P + 3) if step_fn else P + 3
    key_mask = torch.zeros(3, S, dtype=torch.bool)
    key_mask[:, : P + 3] = full_mask
    out = []
    with torch.inference_mode():
        model.set_kv_cache(3, S)
        model(ids, mask, pos[:, :P])
        for t in range(3):
            if step_fn is None:
                out.append(model(cont[:, t : t + 1], full_mask[:, : P + t + 1], pos[:, P + t : P + t + 1])[:, -1])
            else:
                out.append(step_fn(cont[:, t : t + 1], pos[:, P + t : P + t + 1], torch.tensor(P + t), key_mask))
        model.clear_kv_cache()
    return torch.stack(out).float()


@pytest.mark.parametrize("autocast, atol", [(False, 1e-5), (True, 5e-2)], ids=["fp32", "bf16-autocast"])
def test_decode_step_equals_forward_with_a_cache(make_arlm_model, autocast: bool, atol: float) -> None:
    model = make_arlm_model(seed=1).eval()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        reference = teacher_forced_logits(model)
        static = teacher_forced_logits(model, model.decode_step)
    torch.testing.assert_close(static, reference, rtol=0, atol=atol)


def test_compiled_step_under_bf16_autocast_runs_bf16_matmuls_and_matches_eager(fast_compile, make_arlm_model) -> None:
    model = make_arlm_model(seed=2).eval()
    decoder = StaticDecoder(model, "compile")
    seen: list[torch.dtype] = []
    model.layers[0].attn_qkv.register_forward_hook(lambda mod, inp, out: seen.append(out.dtype))

    def step(*inputs: torch.Tensor) -> torch.Tensor:
        decoder.begin(*inputs)
        try:
            return decoder.step(*inputs)
        finally:
            decoder.end()

    with torch.autocast("cpu", dtype=torch.bfloat16):
        reference = teacher_forced_logits(model)
        seen.clear()
        compiled = teacher_forced_logits(model, step)
    assert seen and set(seen) == {torch.bfloat16}
    torch.testing.assert_close(compiled, reference, rtol=0, atol=5e-2)
    assert compiled.dtype == torch.float32 and reference.abs().max() > 0.1  # the tolerance is not vacuous


def test_decode_step_needs_a_cache(make_arlm_model) -> None:
    model = make_arlm_model().eval()
    with pytest.raises(ValueError, match="set_kv_cache"):
        model.decode_step(
            torch.ones(1, 1, dtype=torch.long),
            torch.zeros(1, 1, dtype=torch.long),
            torch.tensor(0),
            torch.ones(1, 4, dtype=torch.bool),
        )


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_compiled_greedy_ids_equal_eager_ids(fast_compile, make_arlm_model, seed: int) -> None:
    model = make_arlm_model(seed).eval()
    eager, compiled = greedy(model, False), greedy(model, True)
    assert torch.equal(compiled["ids"], eager["ids"])
    assert torch.equal(compiled["attention_mask"], eager["attention_mask"])
    assert compiled["text"] == eager["text"]
    assert model.kv_cache_length == 0 and all(layer.kv_cache is None for layer in model.layers)


def test_compiled_decoder_is_reused_across_calls_and_follows_weight_updates(fast_compile, make_arlm_model) -> None:
    model = make_arlm_model(4).eval()
    predictor = ARLMPredictor(
        max_steps=12,
        max_length=None,
        tokenizer=TOK,
        sampling_method="sample_top_k",
        top_k=1,
        model=model,
        compile_decode=True,
    )
    first = predictor.predict(left_padded(PROMPTS))["ids"]
    decoder = predictor._decoder
    with torch.no_grad():  # as a training step between two validations would
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    second = predictor.predict(left_padded(PROMPTS))["ids"]
    assert predictor._decoder is decoder
    assert torch.equal(second, greedy(model, False, max_steps=12)["ids"])
    assert not torch.equal(first, second)


def test_auto_compiles_once_the_eager_steps_reach_the_break_even(fast_compile, make_arlm_model, monkeypatch) -> None:
    monkeypatch.setitem(predictor_module.COMPILE_BREAK_EVEN_STEPS, ("cpu", "fp32"), 30)
    model = make_arlm_model(5).eval()
    predictor = ARLMPredictor(
        max_steps=20, max_length=None, tokenizer=TOK, sampling_method="sample_top_k", top_k=1, model=model
    )
    assert predictor.compile_decode == "auto"
    first = predictor.predict(left_padded(PROMPTS))  # 20 eager steps < 30
    assert predictor._decoder is None
    second = predictor.predict(left_padded(PROMPTS))  # 20 + 20 >= 30: compiled
    assert predictor._decoder is not None
    assert torch.equal(first["ids"], second["ids"])


def test_compile_decode_is_validated(make_arlm_model) -> None:
    with pytest.raises(ValueError, match="compile_decode must be"):
        ARLMPredictor(max_steps=4, max_length=None, tokenizer=TOK, compile_decode="yes")

    class NoStep(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.base = make_arlm_model()

        def forward(self, x_t, attention_mask=None, positions=None, token_type_ids=None):
            return self.base(x_t, attention_mask, positions)

        def set_kv_cache(self, *args, **kwargs) -> None:
            self.base.set_kv_cache(*args, **kwargs)

        def clear_kv_cache(self) -> None:
            self.base.clear_kv_cache()

    with pytest.raises(ValueError, match="compile_decode=true needs a model with decode_step"):
        greedy(NoStep().eval(), True)
    assert greedy(NoStep().eval(), "auto")["ids"].shape[0] == 3  # auto falls back to the eager steps


@pytest.mark.slow
def test_inductor_compiled_greedy_ids_equal_eager_ids(make_arlm_model) -> None:
    model = make_arlm_model(0).eval()
    assert torch.equal(greedy(model, True)["ids"], greedy(model, False)["ids"])
