"""MLMPredictor: invariants of iterative unmasking, confidence ordering, seeding, output format."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from xlm_core.data.simple_tokenizer import SimpleSpaceTokenizer
from xlm_core.testing import BasePredictorTests
from xlm_core.testing.typecheck import unchecked
from xlm_mlm.collators_mlm import MLMSeq2SeqPredCollator
from xlm_mlm.predictor_mlm import MLMPredictor, confidence_scores

TOK = SimpleSpaceTokenizer.for_numbers(50)
PAD, MASK, EOS, BOS = 0, 2, 3, 4
V = len(TOK)
ARLM_ROW_KEYS = {"text", "text_with_spl_tokens", "ids", "output_start_idx", "prompt", "time_taken", "target"}


def word(k: int) -> int:
    return k + 7


def pred_batch(slot: int = 6, answers: tuple[list[int], ...] = ([20, 21], [22])) -> dict:
    collator = MLMSeq2SeqPredCollator(TOK, block_size=slot, input_block_size=3)
    prompts = ([10, 11], [12])
    return collator([{"prompt_ids": p, "input_ids": a} for p, a in zip(prompts, answers)])


class Recorder(nn.Module):
    """Wraps a model and keeps a copy of the ids of every call."""

    def __init__(self, base: nn.Module) -> None:
        super().__init__()
        self.base, self.calls = base, []

    def forward(self, x_t, attention_mask=None, positions=None):
        self.calls.append(x_t.clone())
        return self.base(x_t, attention_mask, positions)


class NoisyModel(nn.Module):
    """Fresh random logits at every call: a revealed token would change if the predictor allowed it."""

    def __init__(self) -> None:
        super().__init__()
        self.gen = torch.Generator().manual_seed(0)

    def forward(self, x_t, attention_mask=None, positions=None):
        return torch.randn(*x_t.shape, V, generator=self.gen)


class PeakModel(nn.Module):
    """Position j of the slot predicts word(j) with a peak of height ``heights[j]`` (confidence order)."""

    def __init__(self, start: int, heights: list[float]) -> None:
        super().__init__()
        self.start, self.heights = start, heights

    def forward(self, x_t, attention_mask=None, positions=None):
        logits = torch.zeros(*x_t.shape, V)
        for j, h in enumerate(self.heights):
            logits[:, self.start + j, word(j)] = h
        return logits


class TestMLMPredictorConformance(BasePredictorTests):
    @pytest.fixture
    def predictor(self, make_mlm_model):
        return MLMPredictor(max_steps=6, tokenizer=TOK, model=make_mlm_model().eval())

    @pytest.fixture
    def batch(self):
        return pred_batch()


def test_revealed_tokens_never_change_and_every_step_reveals() -> None:
    model = Recorder(NoisyModel())
    batch = pred_batch(slot=8)
    out = MLMPredictor(max_steps=5, tokenizer=TOK, model=model).predict(batch)
    final = out["ids"]
    assert not (final == MASK).any(), "every mask is filled within max_steps"
    assert len(model.calls) == 5
    states = model.calls + [final]
    for before, after in zip(states, states[1:]):
        revealed = before != MASK
        assert torch.equal(after[revealed], before[revealed]), "a revealed token changed"
        left_before, left_after = (before == MASK).sum(1), (after == MASK).sum(1)
        assert bool((left_after < left_before).all()), "a step revealed nothing in some row"
    assert torch.equal(final[:, :3], batch["input_ids"][:, :3]), "the prompt is untouched"
    assert out["steps_taken"] == [5, 5]


@pytest.mark.parametrize("max_steps, per_step", [(8, [1] * 8), (3, [3, 3, 2]), (1, [8])])
def test_num_reveal_is_ceil_of_masked_left_over_steps_left(max_steps, per_step) -> None:
    model = Recorder(NoisyModel())
    out = MLMPredictor(max_steps=max_steps, tokenizer=TOK, model=model).predict(pred_batch(slot=8))
    counts = [int((c == MASK).sum(1)[0]) for c in model.calls] + [int((out["ids"] == MASK).sum(1)[0])]
    assert [a - b for a, b in zip(counts, counts[1:])] == per_step


@pytest.mark.parametrize("confidence", ["top_prob", "prob_diff", "entropy"])
def test_most_confident_position_is_revealed_first(confidence) -> None:
    heights = [1.0, 5.0, 3.0, 9.0, 2.0, 7.0]  # reveal order: 3, 5, 1, 2, 4, 0
    batch = pred_batch(slot=6)
    model = Recorder(PeakModel(start=3, heights=heights))
    out = MLMPredictor(max_steps=6, tokenizer=TOK, model=model, confidence=confidence).predict(batch)
    order = []
    states = model.calls + [out["ids"]]
    for before, after in zip(states, states[1:]):
        changed = ((before != after)[0, 3:]).nonzero().flatten().tolist()
        order.extend(changed)
    assert order == [3, 5, 1, 2, 4, 0]
    assert out["ids"][0, 3:].tolist() == [word(j) for j in range(6)]


def test_confidence_scores_by_hand() -> None:
    probs = torch.tensor([[[0.5, 0.3, 0.2], [0.4, 0.4, 0.2]]])
    assert confidence_scores(probs, "top_prob")[0].tolist() == pytest.approx([0.5, 0.4])
    assert confidence_scores(probs, "prob_diff")[0].tolist() == pytest.approx([0.2, 0.0], abs=1e-7)
    entropy = -(probs * probs.log()).sum(-1)
    assert confidence_scores(probs, "entropy")[0].tolist() == pytest.approx((-entropy)[0].tolist())


def test_threshold_reveals_every_confident_position_and_at_least_one() -> None:
    heights = [1.0, 12.0, 3.0, 12.0, 2.0, 12.0]
    model = Recorder(PeakModel(start=3, heights=heights))
    MLMPredictor(max_steps=6, tokenizer=TOK, model=model, threshold=0.9).predict(pred_batch(slot=6))
    left = [int((c == MASK).sum(1)[0]) for c in model.calls]
    assert left[:2] == [6, 3]  # the three peaked positions clear 0.9 together
    assert all(a - b >= 1 for a, b in zip(left, left[1:]))


def test_random_order_and_sampling_are_reproducible_with_a_seed(make_mlm_model) -> None:
    model = make_mlm_model().eval()
    batch = pred_batch(slot=8)

    def run(seed):
        return MLMPredictor(8, TOK, model, confidence=None, temperature=1.0, seed=seed).predict(batch)["ids"]

    assert torch.equal(run(5), run(5))
    assert not torch.equal(run(5), run(6))
    top_k = MLMPredictor(8, TOK, model, temperature=1.0, top_k=3, seed=1).predict(batch)["ids"]
    assert not (top_k == MASK).any()


def test_mask_token_is_never_predicted() -> None:
    class LovesMask(nn.Module):
        def forward(self, x_t, attention_mask=None, positions=None):
            logits = torch.zeros(*x_t.shape, V)
            logits[..., MASK] = 100.0
            logits[..., word(1)] = 1.0
            return logits

    out = MLMPredictor(6, TOK, LovesMask()).predict(pred_batch())
    assert not (out["ids"] == MASK).any()


def test_text_stops_at_eos_and_rows_have_the_arlm_keys() -> None:
    class Answer(nn.Module):
        """Slot = word(5) word(6) EOS PAD PAD PAD."""

        def forward(self, x_t, attention_mask=None, positions=None):
            slot = [word(5), word(6), EOS, PAD, PAD, PAD]
            target = torch.tensor([0] * (x_t.shape[1] - 6) + slot)
            return nn.functional.one_hot(target, V).float().expand(x_t.shape[0], -1, -1) * 10

    batch = pred_batch()
    batch["metadata"] = {"answer": ["a", "b"]}
    predictor = MLMPredictor(6, TOK, Answer())
    preds = predictor.predict(batch)
    assert preds["text"] == ["5 6", "5 6"] and preds["output_start_idx"] == 3
    assert len(preds["time_taken"]) == 2 and preds["steps_taken"] == [6, 6]
    rows = predictor.to_dict(batch, preds)
    assert set(rows[0]) == ARLM_ROW_KEYS | {"answer", "unmasking_order", "reveal_steps"}
    assert rows[0]["unmasking_order"] == "confidence" and sorted(rows[0]["reveal_steps"]) == [0, 1, 2, 3, 4, 5]
    assert rows[0]["prompt"] == "3 4" and rows[0]["target"] == "13 14" and rows[1]["target"] == "15"
    assert rows[1]["answer"] == "b"
    json.dumps(rows)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"max_steps": 0}, "max_steps"),
        ({"confidence": "margin"}, "confidence"),
        ({"confidence": None, "threshold": 0.5}, "threshold"),
        ({"temperature": -1.0}, "temperature"),
        ({"top_k": 0}, "top_k"),
        ({"top_p": 1.5}, "top_p"),
        ({"top_k": 2, "top_p": 0.5}, "at most one"),
        (
            {"unmasking_order": "outside_in"},
            r"^Unknown unmasking_order 'outside_in'; use one of confidence, "
            r"left_to_right, right_to_left, random\.$",
        ),
        (
            {"unmasking_order": "left_to_right", "threshold": 0.5},
            r"^threshold reveals positions by confidence, but "
            r"unmasking_order=left_to_right; set threshold=null",
        ),
    ],
)
def test_constructor_validation(kwargs, message) -> None:
    args = {"max_steps": 4, "tokenizer": TOK} | kwargs
    with unchecked(), pytest.raises(ValueError, match=message):
        MLMPredictor(**args)


def test_predict_without_a_model_says_so() -> None:
    with pytest.raises(ValueError, match="model is None"):
        MLMPredictor(4, TOK).predict(pred_batch())


def _reveal_order(out: dict, calls: list[torch.Tensor], start: int = 3) -> list[int]:
    order, states = [], calls + [out["ids"]]
    for before, after in zip(states, states[1:]):
        order.extend(((before != after)[0, start:]).nonzero().flatten().tolist())
    return order


@pytest.mark.parametrize(
    "order, expected",
    [
        ("confidence", [3, 5, 1, 2, 4, 0]),  # by peak height, as in test_most_confident_position_is_revealed_first
        ("left_to_right", [0, 1, 2, 3, 4, 5]),
        ("right_to_left", [5, 4, 3, 2, 1, 0]),
    ],
)
def test_unmasking_orders_reveal_in_their_order_and_record_the_steps(order: str, expected: list[int]) -> None:
    model = Recorder(PeakModel(start=3, heights=[1.0, 5.0, 3.0, 9.0, 2.0, 7.0]))
    predictor = MLMPredictor(max_steps=6, tokenizer=TOK, model=model, unmasking_order=order)
    batch = pred_batch(slot=6)
    out = predictor.predict(batch)
    assert _reveal_order(out, model.calls) == expected
    steps = [expected.index(j) for j in range(6)]
    assert out["reveal_steps"] == [steps, steps]
    assert out["ids"][0, 3:].tolist() == [word(j) for j in range(6)]  # the order changes when, not what
    rows = predictor.to_dict(batch, out)
    assert rows[1]["unmasking_order"] == order and rows[1]["reveal_steps"] == steps


def test_fixed_orders_reveal_several_positions_per_step_from_their_end() -> None:
    out = MLMPredictor(max_steps=3, tokenizer=TOK, model=NoisyModel(), unmasking_order="left_to_right").predict(
        pred_batch(slot=6)
    )
    assert out["reveal_steps"][0] == [0, 0, 1, 1, 2, 2]
    out = MLMPredictor(max_steps=4, tokenizer=TOK, model=NoisyModel(), unmasking_order="right_to_left").predict(
        pred_batch(slot=6)
    )
    assert out["reveal_steps"][0] == [3, 2, 1, 1, 0, 0]  # ceil(6/4) = 2, ceil(4/3) = 2, ceil(2/2) = 1, then 1


def test_random_order_is_a_seeded_permutation() -> None:
    def steps(seed: int) -> list[list[int]]:
        predictor = MLMPredictor(max_steps=8, tokenizer=TOK, model=NoisyModel(), unmasking_order="random", seed=seed)
        return predictor.predict(pred_batch(slot=8))["reveal_steps"]

    first = steps(0)
    assert first == steps(0) and all(sorted(row) == list(range(8)) for row in first)
    assert {tuple(row) for seed in range(4) for row in steps(seed)} != {tuple(range(8))}  # not left to right
    assert steps(1) != first
