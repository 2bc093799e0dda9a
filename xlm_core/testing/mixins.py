"""pytest mixin classes running the conformance checks; subclass one per component and add fixtures.

The fixtures ``vocab_size``, ``simple_tokenizer``, ``dummy_noise_schedule`` and ``batch_size`` come from
``pytest_plugins = ["xlm_core.testing.fixtures"]`` (override any of them in your conftest or class).
Class attributes declare capabilities and options; capability-gated tests skip when not declared.
"""

from __future__ import annotations

from typing import Any

import pytest

from xlm_core.testing import collator_checks as cc
from xlm_core.testing import loss_checks as lc
from xlm_core.testing import model_checks as mc
from xlm_core.testing import predictor_checks as pc
from xlm_core.testing.parametrize import run_check

__all__ = ["BaseModelTests", "BaseLossTests", "BaseCollatorTests", "BasePredictorTests"]


class BaseModelTests:
    """Model suite. Required fixtures:

    - ``model``: the ``nn.Module`` under test (small; it is run several times per test);
    - ``run_forward``: callable ``(batch_size=2, seq_len=16, partial_mask=False, *, input_ids=None,
      attention_mask=None) -> logits (batch, seq_len, vocab_size)``. The suite passes ``input_ids``
      (long) and ``attention_mask`` (bool, True = real; right or left padding), to be used as given;
      without them build inputs with ``xlm_core.testing.make_lm_inputs``. This is where a family puts
      its forward signature (e.g. ARLM: positions = (mask.cumsum(1) - 1).clamp(min=0)).
    - ``vocab_size`` (from the fixtures plugin: 57): the logits' last dimension.

    Class attributes: ``causal`` (run the no-future-leak check), ``kv_cache`` (None = detect
    ``set_kv_cache``), ``key_padding`` (padded ids must not change real outputs), ``params_without_grad``,
    ``pad_token_id``.
    """

    causal: bool = False
    kv_cache: bool | None = None
    key_padding: bool = True
    params_without_grad: frozenset[str] = frozenset()
    pad_token_id: int = 0

    def model_subject(self, model: Any, run_forward: Any, vocab_size: int) -> mc.ModelSubject:
        return mc.ModelSubject(
            model, run_forward, vocab_size, pad_token_id=self.pad_token_id,
            params_without_grad=frozenset(self.params_without_grad),
        )

    def test_forward_output_shape(self, model: Any, run_forward: Any, vocab_size: int) -> None:
        run_check(mc.check_forward_output_shape, self.model_subject(model, run_forward, vocab_size))

    def test_partial_mask_handled(self, model: Any, run_forward: Any, vocab_size: int) -> None:
        run_check(mc.check_partial_mask_handled, self.model_subject(model, run_forward, vocab_size))

    def test_padding_ids_ignored(self, model: Any, run_forward: Any, vocab_size: int) -> None:
        if not self.key_padding:
            pytest.skip("key_padding = False for this model")
        run_check(mc.check_padding_ids_ignored, self.model_subject(model, run_forward, vocab_size))

    def test_batch_independence(self, model: Any, run_forward: Any, vocab_size: int) -> None:
        run_check(mc.check_batch_independence, self.model_subject(model, run_forward, vocab_size))

    def test_gradients_reach_parameters(self, model: Any, run_forward: Any, vocab_size: int) -> None:
        run_check(mc.check_gradients_reach_parameters, self.model_subject(model, run_forward, vocab_size))

    def test_weight_decay_split(self, model: Any, run_forward: Any, vocab_size: int) -> None:
        run_check(mc.check_weight_decay_split, self.model_subject(model, run_forward, vocab_size))

    def test_causal(self, model: Any, run_forward: Any, vocab_size: int) -> None:
        if not self.causal:
            pytest.skip("causal = False for this model")
        run_check(mc.check_causal, self.model_subject(model, run_forward, vocab_size))

    def test_kv_cache_matches_full_forward(self, model: Any, run_forward: Any, vocab_size: int) -> None:
        has_cache = hasattr(model, "set_kv_cache") if self.kv_cache is None else self.kv_cache
        if not has_cache:
            pytest.skip("the model has no KV cache (set_kv_cache)")
        run_check(mc.check_kv_cache_matches_full_forward, self.model_subject(model, run_forward, vocab_size))


class BaseLossTests:
    """Loss suite. Required fixtures:

    - ``loss_fn``: the loss (``LossFunction``: ``loss_fn(batch, batch_idx, dataloader_idx,
      dataloader_name) -> {"loss": ...}``, with the model as ``loss_fn.model``);
    - ``batch``: one training batch it accepts, with targets (and ideally some padding);
    - ``vocab_size`` (fixtures plugin).

    Class attributes: ``target_key`` ("target_ids"), ``ignore_index`` (-100).
    """

    target_key: str = "target_ids"
    ignore_index: int = -100

    def loss_subject(self, loss_fn: Any, batch: Any, vocab_size: int) -> lc.LossSubject:
        return lc.LossSubject(loss_fn, batch, vocab_size, self.target_key, self.ignore_index)

    def test_loss_output(self, loss_fn: Any, batch: Any, vocab_size: int) -> None:
        run_check(lc.check_loss_output, self.loss_subject(loss_fn, batch, vocab_size))

    def test_loss_reaches_model(self, loss_fn: Any, batch: Any, vocab_size: int) -> None:
        run_check(lc.check_loss_reaches_model, self.loss_subject(loss_fn, batch, vocab_size))

    def test_loss_changes_with_targets(self, loss_fn: Any, batch: Any, vocab_size: int) -> None:
        run_check(lc.check_loss_changes_with_targets, self.loss_subject(loss_fn, batch, vocab_size))

    def test_loss_ignores_padding(self, loss_fn: Any, batch: Any, vocab_size: int) -> None:
        run_check(lc.check_loss_ignores_padding, self.loss_subject(loss_fn, batch, vocab_size))


class BaseCollatorTests:
    """Collator suite. Required fixtures:

    - ``collator``: the collator under test (``collator(examples) -> dict of tensors``);
    - ``raw_examples``: a list of dataset examples of *different* lengths, one longer than block_size;
    - ``block_size`` (optional): the longest row the collator may emit. Default here:
      ``collator.block_size`` plus ``collator.input_block_size`` when that is a positive int.

    pad id and vocabulary size come from ``collator.tokenizer``. Class attribute: ``ignore_index``.
    """

    ignore_index: int = -100

    @pytest.fixture
    def block_size(self, collator: Any) -> int | None:
        size = getattr(collator, "block_size", None)
        extra = getattr(collator, "input_block_size", None)
        if size is not None and isinstance(extra, int) and extra > 0:
            size += extra
        return size

    def collator_subject(self, collator: Any, raw_examples: Any, block_size: int | None) -> cc.CollatorSubject:
        return cc.CollatorSubject(collator, raw_examples, block_size, self.ignore_index)

    def test_collator_shapes(self, collator: Any, raw_examples: Any, block_size: int | None) -> None:
        run_check(cc.check_collator_shapes, self.collator_subject(collator, raw_examples, block_size))

    def test_collator_block_size(self, collator: Any, raw_examples: Any, block_size: int | None) -> None:
        run_check(cc.check_collator_block_size, self.collator_subject(collator, raw_examples, block_size))

    def test_collator_padding(self, collator: Any, raw_examples: Any, block_size: int | None) -> None:
        run_check(cc.check_collator_padding, self.collator_subject(collator, raw_examples, block_size))


class BasePredictorTests:
    """Predictor suite. Required fixtures:

    - ``predictor``: configured for *greedy* decoding (e.g. ARLM: sampling_method="sample_top_k", top=1);
    - ``batch``: one prediction batch it accepts;
    - ``vocab_size`` (fixtures plugin).

    Class attributes: ``expected_output_keys`` (("ids",)), ``ids_key`` ("ids").
    """

    expected_output_keys: tuple[str, ...] = ("ids",)
    ids_key: str = "ids"

    def predictor_subject(self, predictor: Any, batch: Any, vocab_size: int) -> pc.PredictorSubject:
        return pc.PredictorSubject(predictor, batch, vocab_size, self.expected_output_keys, self.ids_key)

    def test_predictor_output_keys(self, predictor: Any, batch: Any, vocab_size: int) -> None:
        run_check(pc.check_predictor_output_keys, self.predictor_subject(predictor, batch, vocab_size))

    def test_predictor_ids_in_vocab(self, predictor: Any, batch: Any, vocab_size: int) -> None:
        run_check(pc.check_predictor_ids_in_vocab, self.predictor_subject(predictor, batch, vocab_size))

    def test_greedy_deterministic(self, predictor: Any, batch: Any, vocab_size: int) -> None:
        run_check(pc.check_greedy_deterministic, self.predictor_subject(predictor, batch, vocab_size))
