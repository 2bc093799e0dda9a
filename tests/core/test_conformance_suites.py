"""The conformance suites pass on a correct tiny family and fail on each deliberately broken variant."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

sys.path.append(str(Path(__file__).resolve().parents[1]))  # tests/: home of the testing_family package

from testing_family import broken  # noqa: E402
from testing_family.collator import TinyCollator  # noqa: E402
from testing_family.loss import TinyLoss  # noqa: E402
from testing_family.model import TinyCausalLM  # noqa: E402
from testing_family.predictor import TinyGreedyPredictor  # noqa: E402

from xlm_core.data.simple_tokenizer import SimpleSpaceTokenizer  # noqa: E402
from xlm_core.kit.positions import positions_from_attention_mask  # noqa: E402
from xlm_core.testing import (  # noqa: E402
    CAPABILITIES,
    BaseCollatorTests,
    BaseLossTests,
    BaseModelTests,
    BasePredictorTests,
    CollatorSubject,
    LossSubject,
    ModelSubject,
    NotApplicable,
    PredictorSubject,
    checks_for,
    make_lm_inputs,
    parametrize_with_checks,
    run_check,
)
from xlm_core.testing import collator_checks as cc  # noqa: E402
from xlm_core.testing import loss_checks as lc  # noqa: E402
from xlm_core.testing import model_checks as mc  # noqa: E402
from xlm_core.testing import predictor_checks as pc  # noqa: E402
from xlm_core.testing.typecheck import unchecked  # noqa: E402

pytest_plugins = ["xlm_core.testing.fixtures"]

BLOCK_SIZE = 6
PREDICT_KEYS = ("ids", "text", "attention_mask", "output_start_idx")


# --- building blocks of the tiny family ---------------------------------------------------------
def make_run_forward(model: torch.nn.Module, vocab_size: int) -> Callable[..., torch.Tensor]:
    def run_forward(batch_size=2, seq_len=16, partial_mask=False, *, input_ids=None, attention_mask=None):
        if input_ids is None:
            input_ids, attention_mask = make_lm_inputs(batch_size, seq_len, vocab_size, partial_mask)
        return model(input_ids, attention_mask, positions_from_attention_mask(attention_mask))

    return run_forward


def raw_lm_examples(tokenizer: SimpleSpaceTokenizer) -> list[dict[str, list[int]]]:
    """Three examples of different lengths; the first is longer than BLOCK_SIZE."""
    texts = ["1 2 3 4 5 6 7 8", "9 10 11", "12 13 14 15"]
    return [{"input_ids": tokenizer.encode(t)} for t in texts]


def prompt_batch(tokenizer: SimpleSpaceTokenizer) -> dict[str, torch.Tensor]:
    """Left-padded prompts, as a prediction dataloader gives them."""
    pad = tokenizer.pad_token_id
    ids = torch.tensor([[12, 13, 14], [pad, 20, 21], [pad, pad, 30]])
    return {"input_ids": ids, "attention_mask": (ids != pad).long()}


def model_subject(cls: type[TinyCausalLM], vocab_size: int) -> ModelSubject:
    torch.manual_seed(0)
    model = cls(vocab_size)
    return ModelSubject(model, make_run_forward(model, vocab_size), vocab_size)


def loss_subject(cls: type[TinyLoss], tokenizer: SimpleSpaceTokenizer) -> LossSubject:
    torch.manual_seed(0)
    model = TinyCausalLM(len(tokenizer))
    batch = TinyCollator(tokenizer, BLOCK_SIZE)(raw_lm_examples(tokenizer))
    return LossSubject(cls(model, tokenizer), batch, len(tokenizer))


def collator_subject(cls: type[TinyCollator], tokenizer: SimpleSpaceTokenizer) -> CollatorSubject:
    return CollatorSubject(cls(tokenizer, BLOCK_SIZE), raw_lm_examples(tokenizer), BLOCK_SIZE)


def predictor_subject(cls: type[TinyGreedyPredictor], tokenizer: SimpleSpaceTokenizer) -> PredictorSubject:
    torch.manual_seed(0)
    predictor = cls(TinyCausalLM(len(tokenizer)), tokenizer, max_new_tokens=4)
    return PredictorSubject(predictor, prompt_batch(tokenizer), len(tokenizer), PREDICT_KEYS)


# --- the correct family runs the mixins as real tests --------------------------------------------
@pytest.fixture
def model(vocab_size: int) -> TinyCausalLM:
    torch.manual_seed(0)
    return TinyCausalLM(vocab_size)


@pytest.fixture
def run_forward(model: TinyCausalLM, vocab_size: int) -> Callable[..., torch.Tensor]:
    return make_run_forward(model, vocab_size)


class TestTinyModel(BaseModelTests):
    causal = True


class TestTinyLoss(BaseLossTests):
    @pytest.fixture
    def loss_fn(self, model: TinyCausalLM, simple_tokenizer: SimpleSpaceTokenizer) -> TinyLoss:
        return TinyLoss(model, simple_tokenizer)

    @pytest.fixture
    def batch(self, simple_tokenizer: SimpleSpaceTokenizer) -> dict[str, torch.Tensor]:
        return TinyCollator(simple_tokenizer, BLOCK_SIZE)(raw_lm_examples(simple_tokenizer))


class TestTinyCollator(BaseCollatorTests):
    @pytest.fixture
    def collator(self, simple_tokenizer: SimpleSpaceTokenizer) -> TinyCollator:
        return TinyCollator(simple_tokenizer, BLOCK_SIZE)

    @pytest.fixture
    def raw_examples(self, simple_tokenizer: SimpleSpaceTokenizer) -> list[dict[str, list[int]]]:
        return raw_lm_examples(simple_tokenizer)

    def test_block_size_fixture_defaults_to_collator(self, block_size: int) -> None:
        assert block_size == BLOCK_SIZE


class TestTinyPredictor(BasePredictorTests):
    expected_output_keys = PREDICT_KEYS

    @pytest.fixture
    def predictor(self, model: TinyCausalLM, simple_tokenizer: SimpleSpaceTokenizer) -> TinyGreedyPredictor:
        return TinyGreedyPredictor(model, simple_tokenizer, max_new_tokens=4)

    @pytest.fixture
    def batch(self, simple_tokenizer: SimpleSpaceTokenizer) -> dict[str, torch.Tensor]:
        return prompt_batch(simple_tokenizer)


@parametrize_with_checks("model", capabilities=CAPABILITIES)
def test_parametrized_model_checks(check: Any, model: TinyCausalLM, run_forward: Any, vocab_size: int) -> None:
    run_check(check, ModelSubject(model, run_forward, vocab_size))


def test_shared_fixtures(simple_tokenizer: SimpleSpaceTokenizer, vocab_size: int, batch_size: int) -> None:
    assert simple_tokenizer.words == [str(i) for i in range(50)]
    assert vocab_size == 57 and batch_size == 3


# --- every check rejects a broken variant --------------------------------------------------------
BROKEN: list[tuple[Callable[[Any], None], Callable[[SimpleSpaceTokenizer], Any], str]] = [
    (mc.check_forward_output_shape, lambda t: model_subject(broken.WrongVocabLM, len(t)), "shape"),
    (
        mc.check_logits_depend_on_input_ids,
        lambda t: model_subject(broken.InputBlindLM, len(t)),
        "ignores the input_ids",
    ),
    (mc.check_partial_mask_handled, lambda t: model_subject(broken.NaNOnPaddingLM, len(t)), "non-finite"),
    (mc.check_padding_ids_ignored, lambda t: model_subject(broken.PaddingBlindLM, len(t)), "left padding"),
    (mc.check_batch_independence, lambda t: model_subject(broken.BatchNormLM, len(t)), "row"),
    (mc.check_gradients_reach_parameters, lambda t: model_subject(broken.DeadParameterLM, len(t)), "unused"),
    (mc.check_weight_decay_split, lambda t: model_subject(broken.OverlappingDecayLM, len(t)), "head.weight"),
    (mc.check_weight_decay_split, lambda t: model_subject(broken.IncompleteDecayLM, len(t)), "neither"),
    (mc.check_causal, lambda t: model_subject(broken.FutureLeakingLM, len(t)), "sees the future"),
    (mc.check_kv_cache_matches_full_forward, lambda t: model_subject(broken.StaleCacheLM, len(t)), "KV-cached"),
    (lc.check_loss_output, lambda t: loss_subject(broken.PerTokenLoss, t), "scalar"),
    (lc.check_loss_output, lambda t: loss_subject(broken.InPlaceLoss, t), "modified in place"),
    (lc.check_loss_reaches_model, lambda t: loss_subject(broken.DetachedLoss, t), "does not reach the model"),
    (lc.check_loss_changes_with_targets, lambda t: loss_subject(broken.TargetBlindLoss, t), "ignores"),
    (lc.check_loss_ignores_padding, lambda t: loss_subject(broken.PaddingCountingLoss, t), "padded input ids"),
    (
        lc.check_loss_ignores_ignored_targets,
        lambda t: loss_subject(broken.IgnoredTargetScoringLoss, t),
        "scores ignored",
    ),
    (cc.check_collator_shapes, lambda t: collator_subject(broken.ShortTargetCollator, t), "target_ids"),
    (cc.check_collator_block_size, lambda t: collator_subject(broken.UntruncatedCollator, t), "block_size"),
    (cc.check_collator_padding, lambda t: collator_subject(broken.PadTargetCollator, t), "ignore index"),
    (pc.check_predictor_output_keys, lambda t: predictor_subject(broken.TextlessPredictor, t), "lacks"),
    (pc.check_predictor_ids_in_vocab, lambda t: predictor_subject(broken.OutOfVocabPredictor, t), "outside"),
    (pc.check_greedy_deterministic, lambda t: predictor_subject(broken.SamplingPredictor, t), "differ"),
]


@pytest.mark.parametrize(
    "check, make_subject, reason",
    BROKEN,
    ids=[f"{c.__name__}-{i}" for i, (c, _, _) in enumerate(BROKEN)],
)
def test_check_rejects_broken_variant(
    check: Callable[[Any], None],
    make_subject: Callable[[SimpleSpaceTokenizer], Any],
    reason: str,
    simple_tokenizer: SimpleSpaceTokenizer,
) -> None:
    with pytest.raises(AssertionError, match=reason):
        check(make_subject(simple_tokenizer))


@pytest.mark.parametrize(
    "make_subject, kind",
    [
        (lambda t: model_subject(TinyCausalLM, len(t)), "model"),
        (lambda t: loss_subject(TinyLoss, t), "loss"),
        (lambda t: collator_subject(TinyCollator, t), "collator"),
        (lambda t: predictor_subject(TinyGreedyPredictor, t), "predictor"),
    ],
    ids=["model", "loss", "collator", "predictor"],
)
def test_correct_family_passes_every_check(
    make_subject: Any, kind: str, simple_tokenizer: SimpleSpaceTokenizer
) -> None:
    for check in checks_for(kind, CAPABILITIES):
        check(make_subject(simple_tokenizer))


def test_every_registered_check_has_a_failing_variant() -> None:
    registered = {c.name for kind in ("model", "loss", "collator", "predictor") for c in checks_for(kind, CAPABILITIES)}
    assert registered == {check.__name__ for check, _, _ in BROKEN}


def test_checks_for_selects_by_capability() -> None:
    plain = {c.name for c in checks_for("model")}
    assert "check_causal" not in plain and "check_kv_cache_matches_full_forward" not in plain
    assert "check_padding_ids_ignored" not in plain and "check_weight_decay_split" in plain
    assert {c.name for c in checks_for("model", {"causal"})} == plain | {"check_causal"}
    with pytest.raises(ValueError, match="Unknown capabilities"):
        checks_for("model", {"bidirectional"})
    with unchecked(), pytest.raises(ValueError, match="Unknown check kind"):
        checks_for("tokenizer")  # type: ignore[arg-type]


def test_not_applicable_check_skips(simple_tokenizer: SimpleSpaceTokenizer) -> None:
    subject = loss_subject(TinyLoss, simple_tokenizer)
    subject.batch = {k: v[:1] for k, v in subject.batch.items()}  # the longest row alone: no padding
    with pytest.raises(NotApplicable, match="no padding"):
        lc.check_loss_ignores_padding(subject)
    with pytest.raises(pytest.skip.Exception, match="no padding"):
        run_check(lc.check_loss_ignores_padding, subject)


def test_kv_check_requires_cache_methods(simple_tokenizer: SimpleSpaceTokenizer) -> None:
    subject = model_subject(TinyCausalLM, len(simple_tokenizer))
    subject.model.set_kv_cache = None  # declared kv-capable but has no usable set_kv_cache
    with pytest.raises(AssertionError, match="set_kv_cache"):
        mc.check_kv_cache_matches_full_forward(subject)
