"""MDLMPredictor: revealed tokens stay, the mask token is never emitted, cached == plain with the same seed,
the schedule's reveal counts, seq2seq slots and unconditional text, and what a batch cost."""

from __future__ import annotations

import json

import pytest
import torch

from xlm_core.data.simple_tokenizer import SimpleSpaceTokenizer
from xlm_core.kit.noise import CosineSchedule, LogLinearSchedule
from xlm_core.testing import BasePredictorTests
from xlm_mdlm.collators_mdlm import MDLMPredCollator
from xlm_mdlm.predictor_mdlm import MDLMPredictor

TOK = SimpleSpaceTokenizer.for_numbers(50)
MASK, BOS = TOK.mask_token_id, TOK.bos_token_id


class Recording(torch.nn.Module):
    """Wraps a model and keeps every input it was called with."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model
        self.inputs: list[torch.Tensor] = []

    def forward(self, x_t, attention_mask=None, positions=None):
        self.inputs.append(x_t.clone())
        return self.model(x_t, attention_mask, positions)


def _seq2seq_batch(slot: int = 8) -> dict:
    collate = MDLMPredCollator(TOK, block_size=slot, input_block_size=6)
    return collate(
        [
            {"prompt_ids": [10, 11, 12], "input_ids": [13, 14]},
            {"prompt_ids": [15, 16], "input_ids": [17, 18, 19]},
            {"prompt_ids": [20], "input_ids": [21]},
        ]
    )


def _text_batch(length: int = 12) -> dict:
    collate = MDLMPredCollator(TOK, block_size=length, add_bos="input", add_eos=False)
    return collate([{"prompt_ids": [], "input_ids": []}, {"prompt_ids": [30, 31], "input_ids": []}])


@pytest.mark.parametrize("unmasking", ["ancestral", "confidence"])
@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_revealed_tokens_never_change_and_no_mask_is_emitted(tiny_mdlm_model, unmasking, temperature) -> None:
    model = Recording(tiny_mdlm_model)
    predictor = MDLMPredictor(TOK, num_steps=5, model=model, unmasking=unmasking, temperature=temperature, seed=0)
    batch = _seq2seq_batch()
    out = predictor.predict(batch)
    ids = out["ids"]
    snapshots = [*model.inputs, ids]
    for before, after in zip(snapshots, snapshots[1:]):
        revealed = before != MASK
        assert torch.equal(after[revealed], before[revealed])  # a revealed token is never changed
    assert not (ids == MASK).any()
    assert torch.equal(ids[:, : out["output_start_idx"]], batch["input_ids"][:, : out["output_start_idx"]])
    steps = torch.tensor(out["reveal_steps"])
    assert steps.min() >= 0 and steps.max() < 5  # every slot position revealed within num_steps


def test_the_mask_token_is_never_emitted_even_when_the_model_prefers_it(tiny_mdlm_model) -> None:
    class LovesMask(torch.nn.Module):
        def forward(self, x_t, attention_mask=None, positions=None):
            logits = torch.zeros(*x_t.shape, len(TOK))
            logits[..., MASK] = 100.0
            return logits

    for temperature in (0.0, 1.0):
        out = MDLMPredictor(TOK, num_steps=4, model=LovesMask(), temperature=temperature, seed=1).predict(
            _seq2seq_batch()
        )
        assert not (out["ids"] == MASK).any()


@pytest.mark.parametrize("unmasking", ["ancestral", "confidence"])
@pytest.mark.parametrize("schedule", [LogLinearSchedule(), CosineSchedule()])
def test_cached_sampler_returns_what_the_plain_one_does(tiny_mdlm_model, unmasking, schedule) -> None:
    outs = {}
    for cache in (True, False):
        predictor = MDLMPredictor(
            TOK,
            num_steps=40,
            model=tiny_mdlm_model,
            noise_schedule=schedule,
            unmasking=unmasking,
            cache=cache,
            temperature=1.0,
            top_p=0.9,
            seed=7,
        )
        outs[cache] = predictor.predict(_text_batch(length=12))
    assert torch.equal(outs[True]["ids"], outs[False]["ids"])
    assert outs[True]["reveal_steps"] == outs[False]["reveal_steps"]
    assert outs[False]["network_calls"] == outs[False]["num_steps"]
    if unmasking == "ancestral":
        # 12 tokens a row over 40 steps: most steps reveal nothing, and the cached sampler calls the network only
        # after a step that changed something (at most 12 per row, plus the first call)
        assert outs[True]["network_calls"] <= 2 * 12 + 1 < outs[False]["network_calls"]
    else:  # the confidence order reveals at least one position a step: nothing to skip
        assert outs[True]["network_calls"] == outs[False]["network_calls"] == 12


def test_confidence_unmasking_reveals_the_schedules_share_most_confident_first(tiny_mdlm_model) -> None:
    predictor = MDLMPredictor(TOK, num_steps=4, model=tiny_mdlm_model, unmasking="confidence", temperature=0.0)
    out = predictor.predict(_seq2seq_batch(slot=8))
    # log-linear over 4 steps: ceil(8/4), then ceil(6/3), ceil(4/2), ceil(2/1): two positions a step
    for row in out["reveal_steps"]:
        assert sorted(row) == [0, 0, 1, 1, 2, 2, 3, 3]


@pytest.mark.parametrize("order", ["left_to_right", "right_to_left"])
def test_fixed_unmasking_orders_reveal_the_slot_from_one_end(tiny_mdlm_model, order) -> None:
    predictor = MDLMPredictor(
        TOK, num_steps=4, model=tiny_mdlm_model, unmasking="confidence", unmasking_order=order, temperature=0.0
    )
    batch = _seq2seq_batch(slot=8)
    out = predictor.predict(batch)
    expected = [0, 0, 1, 1, 2, 2, 3, 3]  # the schedule's two positions a step, from the chosen end
    for row in out["reveal_steps"]:
        assert row == (expected if order == "left_to_right" else expected[::-1])
    assert predictor.to_dict(batch, out)[0]["unmasking_order"] == order


def test_random_unmasking_order_is_seeded_and_the_same_cached_or_not(tiny_mdlm_model) -> None:
    def reveal_steps(cache: bool, seed: int) -> list[list[int]]:
        predictor = MDLMPredictor(
            TOK,
            num_steps=8,
            model=tiny_mdlm_model,
            unmasking="confidence",
            unmasking_order="random",
            cache=cache,
            temperature=0.0,
            seed=seed,
        )
        return predictor.predict(_seq2seq_batch(slot=8))["reveal_steps"]

    first = reveal_steps(True, seed=1)
    assert first == reveal_steps(False, seed=1) and first != reveal_steps(True, seed=2)
    assert all(sorted(row) == list(range(8)) for row in first)  # one position a step, each once
    assert any(row != sorted(row) for row in first)  # not left to right


def test_ancestral_reveals_follow_the_schedule_on_average(tiny_mdlm_model) -> None:
    # from t = 1 to t = 1/2 (log-linear) each masked position is revealed with probability 1/2
    predictor = MDLMPredictor(TOK, num_steps=2, model=tiny_mdlm_model, unmasking="ancestral", seed=3)
    batch = MDLMPredCollator(TOK, block_size=40, add_bos="input", add_eos=False)(
        [{"prompt_ids": [], "input_ids": []}] * 25
    )
    first = torch.tensor(predictor.predict(batch)["reveal_steps"]) == 0
    assert 0.45 < first.float().mean().item() < 0.55


def test_unconditional_text_and_prediction_rows(tiny_mdlm_model) -> None:
    predictor = MDLMPredictor(TOK, num_steps=6, model=tiny_mdlm_model, seed=0)
    batch = _text_batch(length=10)
    out = predictor.predict(batch)
    assert out["ids"].shape == (2, 13) and out["output_start_idx"] == 3  # [pad][pad][BOS] / [BOS][30][31], 10 slots
    assert out["ids"][0, 2].item() == BOS and out["ids"][1, 0].item() == BOS
    assert out["num_steps"] <= 6 and 1 <= out["network_calls"] <= out["num_steps"] and out["tokens_per_second"] > 0
    rows = predictor.to_dict(batch, out)
    assert rows[1]["prompt"] == "23 24" and rows[0]["unmasking"] == "ancestral" and rows[0]["cache"] is True
    assert rows[0]["network_calls"] == out["network_calls"] and len(rows[0]["reveal_steps"]) == 10
    json.dumps(rows)


def test_bad_settings_are_one_line_errors() -> None:
    with pytest.raises(ValueError, match="num_steps=0"):
        MDLMPredictor(TOK, num_steps=0)
    with pytest.raises(ValueError, match="unmasking='left'"):
        MDLMPredictor(TOK, unmasking="left")
    with pytest.raises(ValueError, match="unmasking_order='middle_out'"):
        MDLMPredictor(TOK, unmasking="confidence", unmasking_order="middle_out")
    with pytest.raises(ValueError, match="set predictor.unmasking=confidence"):
        MDLMPredictor(TOK, unmasking="ancestral", unmasking_order="left_to_right")
    with pytest.raises(ValueError, match="at most one of top_k and top_p"):
        MDLMPredictor(TOK, top_k=5, top_p=0.9)
    with pytest.raises(TypeError, match="noise.schedule"):  # ours, or the runtime type check in tests
        MDLMPredictor(TOK, noise_schedule="loglinear")


class TestMDLMPredictorConformance(BasePredictorTests):
    """The shared predictor suite: greedy, confidence-ordered."""

    @pytest.fixture
    def predictor(self, tiny_mdlm_model):
        return MDLMPredictor(TOK, num_steps=8, model=tiny_mdlm_model, unmasking="confidence", temperature=0.0)

    @pytest.fixture
    def batch(self):
        return _seq2seq_batch()
