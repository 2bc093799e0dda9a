"""pytest mixin classes running the conformance checks; subclass one per component and add fixtures.

Each registered check becomes one test method (``check_causal`` -> ``test_causal``), so a new check
needs no edit here. The fixtures ``simple_tokenizer``, ``batch_size`` and ``vocab_size`` come from
``pytest_plugins = ["xlm_core.testing.fixtures"]`` (override any of them); without a ``vocab_size``
fixture it is read from the component. Class attributes declare capabilities and options; a check
needing an undeclared capability skips with the attribute to set. ``names`` is the family's
:class:`~xlm_core.plugin.names.FamilyNames` (the keys of its batches and predictions, as registered).
"""

from __future__ import annotations

from typing import Any, ClassVar

import pytest

from xlm_core.plugin.names import FamilyNames
from xlm_core.testing import collator_checks as cc
from xlm_core.testing import loss_checks as lc
from xlm_core.testing import model_checks as mc
from xlm_core.testing import predictor_checks as pc
from xlm_core.testing.parametrize import run_check
from xlm_core.testing.registry import CAPABILITIES, Check
from xlm_core.testing.suite import checks_for

__all__ = ["BaseModelTests", "BaseLossTests", "BaseCollatorTests", "BasePredictorTests"]


def _optional(request: pytest.FixtureRequest, name: str) -> Any:
    """The value of fixture ``name``, or None when no fixture of that name exists."""
    try:
        return request.getfixturevalue(name)
    except pytest.FixtureLookupError:
        return None


class _Suite:
    """Common machinery: capabilities of the subclass and its subject built from fixtures."""

    kind: ClassVar[str]
    names: ClassVar[FamilyNames] = FamilyNames()

    def capabilities(self, request: pytest.FixtureRequest) -> set[str]:
        return set()


def _test_for(check: Check) -> Any:
    def test(self: _Suite, request: pytest.FixtureRequest) -> None:
        missing = check.requires - self.capabilities(request)
        if missing:
            pytest.skip(f"{check.name} needs {', '.join(sorted(missing))} = True on {type(self).__name__}")
        run_check(check, self.subject(request))  # type: ignore[attr-defined]

    test.__name__ = "test_" + check.name.removeprefix("check_")
    test.__doc__ = check.doc
    return test


def _add_tests(cls: type[_Suite]) -> type[_Suite]:
    for check in checks_for(cls.kind, CAPABILITIES):  # type: ignore[arg-type]
        setattr(cls, f"test_{check.name.removeprefix('check_')}", _test_for(check))
    return cls


class BaseModelTests(_Suite):
    """Model suite. Required fixtures:

    - ``model``: the ``nn.Module`` under test (small; it is run several times per test);
    - ``run_forward``: callable ``(batch_size=2, seq_len=16, partial_mask=False, *, input_ids=None,
      attention_mask=None) -> logits (batch, seq_len, vocab_size)``. Checks needing controlled inputs
      pass ``input_ids`` (long) and ``attention_mask`` (bool, True = real; right or left padding), to be
      used as given; without them build inputs with ``xlm_core.testing.make_lm_inputs``. This is where a
      family puts its forward signature (e.g. the core's positions:
      ``xlm_core.kit.positions.positions_from_attention_mask(attention_mask)``).
      A ``run_forward(batch_size, seq_len, partial_mask)`` without the keywords runs the other checks.
    - ``vocab_size`` (optional; the fixtures plugin gives 57): the logits' last dimension.

    Class attributes: ``causal`` (run the no-future-leak check), ``kv_cache`` (None = detect
    ``set_kv_cache``), ``key_padding`` (padded ids must not change real outputs), ``params_without_grad``,
    ``pad_token_id``.
    """

    kind = "model"
    causal: bool = False
    kv_cache: bool | None = None
    key_padding: bool = True
    params_without_grad: frozenset[str] = frozenset()
    pad_token_id: int = 0

    def capabilities(self, request: pytest.FixtureRequest) -> set[str]:
        has_cache = self.kv_cache
        if has_cache is None:
            has_cache = hasattr(request.getfixturevalue("model"), "set_kv_cache")
        flags = {"causal": self.causal, "kv_cache": has_cache, "key_padding": self.key_padding}
        return {name for name, on in flags.items() if on}

    def subject(self, request: pytest.FixtureRequest) -> mc.ModelSubject:
        return mc.ModelSubject(
            request.getfixturevalue("model"),
            request.getfixturevalue("run_forward"),
            _optional(request, "vocab_size"),
            pad_token_id=self.pad_token_id,
            params_without_grad=frozenset(self.params_without_grad),
        )


class BaseLossTests(_Suite):
    """Loss suite. Required fixtures:

    - ``loss_fn``: the loss (``LossFunction``: ``loss_fn(batch, batch_idx, dataloader_idx,
      dataloader_name) -> {"loss": ...}``, with the model as ``loss_fn.model``);
    - ``batch``: one training batch it accepts, with targets (and ideally some padding);
    - ``vocab_size`` (optional).

    Class attributes: ``names`` (the batch keys), ``target_key`` / ``ignore_index`` (override those of
    ``names`` when set).
    """

    kind = "loss"
    target_key: str | None = None
    ignore_index: int | None = None

    def subject(self, request: pytest.FixtureRequest) -> lc.LossSubject:
        return lc.LossSubject(
            request.getfixturevalue("loss_fn"),
            request.getfixturevalue("batch"),
            _optional(request, "vocab_size"),
            self.target_key,
            self.ignore_index,
            names=self.names,
        )


class BaseCollatorTests(_Suite):
    """Collator suite. Required fixtures:

    - ``collator``: the collator under test (``collator(examples) -> dict of tensors``);
    - ``raw_examples``: a list of dataset examples of *different* lengths, one longer than block_size;
    - ``block_size`` (optional): the longest row the collator may emit. Default here:
      ``collator.block_size`` plus ``collator.input_block_size`` when that is a positive int.

    pad id and vocabulary size come from ``collator.tokenizer``. Class attributes: ``names`` (the batch
    keys), ``ignore_index`` (overrides that of ``names`` when set), ``role`` ("prediction" for a collator
    whose targets are kept apart from the prompt).
    """

    kind = "collator"
    ignore_index: int | None = None
    role: str | None = None

    @pytest.fixture
    def block_size(self, collator: Any) -> int | None:
        return cc.default_block_size(collator)

    def subject(self, request: pytest.FixtureRequest) -> cc.CollatorSubject:
        return cc.CollatorSubject(
            request.getfixturevalue("collator"),
            request.getfixturevalue("raw_examples"),
            request.getfixturevalue("block_size"),
            self.ignore_index,
            role=self.role,
            names=self.names,
        )


class BasePredictorTests(_Suite):
    """Predictor suite. Required fixtures:

    - ``predictor``: configured for *greedy* decoding (e.g. ARLM: sampling_method="sample_top_k", top_k=1);
    - ``batch``: one prediction batch it accepts;
    - ``vocab_size`` (optional; default ``len(predictor.tokenizer)``).

    Class attributes: ``names`` (``names.predicted_ids_key``: where ``predict()`` puts the generated ids),
    ``expected_output_keys`` / ``ids_key`` (override that when set).
    """

    kind = "predictor"
    expected_output_keys: tuple[str, ...] | None = None
    ids_key: str | None = None

    def subject(self, request: pytest.FixtureRequest) -> pc.PredictorSubject:
        return pc.PredictorSubject(
            request.getfixturevalue("predictor"),
            request.getfixturevalue("batch"),
            _optional(request, "vocab_size"),
            self.expected_output_keys,
            self.ids_key,
            names=self.names,
        )


for _cls in (BaseModelTests, BaseLossTests, BaseCollatorTests, BasePredictorTests):
    _add_tests(_cls)
