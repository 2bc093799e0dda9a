"""Typing contracts between the components of xlm.

Every family implements these Protocols; the core (harness, CLI, conformance suites) only ever
talks to a family through them. They are structural: a class conforms by having the members,
no inheritance needed.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Protocol, runtime_checkable

import torch
from jaxtyping import Bool, Float, Integer
from torch import Tensor as TT

__all__ = [
    "Tokenizer",
    "Model",
    "LossFunction",
    "Predictor",
    "Collator",
    "NoiseSchedule",
    "ARLMModel",
    "MLMModel",
    "PREDICTION_TEXT_KEY",
]

PREDICTION_TEXT_KEY = "text"
"""Key of the generated text in every prediction row (``Predictor.to_dict``); the generate job prints it."""


@runtime_checkable
class Tokenizer(Protocol):
    """The subset of Hugging Face's tokenizer API that xlm uses."""

    pad_token_id: int | None
    eos_token_id: int | None
    bos_token_id: int | None
    mask_token_id: int | None
    cls_token_id: int | None
    unk_token_id: int | None
    pad_token: str | None
    eos_token: str | None
    bos_token: str | None

    @property
    def vocab_size(self) -> int: ...

    def __len__(self) -> int: ...

    def encode(self, text: str, add_special_tokens: bool = True, **kwargs: Any) -> list[int]: ...

    def decode(self, token_ids: Sequence[int] | TT, skip_special_tokens: bool = False, **kwargs: Any) -> str: ...

    def batch_decode(
        self, sequences: Sequence[Sequence[int]] | TT, skip_special_tokens: bool = False, **kwargs: Any
    ) -> list[str]: ...

    def convert_tokens_to_ids(self, tokens: str | list[str]) -> int | list[int]: ...

    def convert_ids_to_tokens(self, ids: int | list[int]) -> str | list[str]: ...

    def save_pretrained(self, save_directory: str, **kwargs: Any) -> tuple[str, ...]: ...


@runtime_checkable
class Model(Protocol):
    """A family's network: an ``nn.Module`` that says which parameters get weight decay."""

    def parameters(self, recurse: bool = True) -> Iterator[torch.nn.Parameter]: ...

    def named_parameters(self, *args: Any, **kwargs: Any) -> Iterator[tuple[str, torch.nn.Parameter]]: ...

    def get_named_params_for_weight_decay(self) -> Iterator[tuple[str, torch.nn.Parameter]]:
        """Parameters that AdamW should decay (matrices of linear layers)."""
        ...

    def get_named_params_for_no_weight_decay(self) -> Iterator[tuple[str, torch.nn.Parameter]]:
        """Parameters that AdamW must not decay (biases, norms, embeddings)."""
        ...


@runtime_checkable
class NoiseSchedule(Protocol):
    """A masked-diffusion noise schedule: how much of a sequence is masked at time ``t in [0, 1]``.

    ``alpha(t)`` is the probability that a token is still clean at time ``t`` (1 at ``t = 0``, 0 at ``t = 1``,
    decreasing). A masked-diffusion loss weights the masked cross-entropy at time ``t`` by ``weight(t)``
    (``-alpha'(t) / (1 - alpha(t))``) and draws training times from ``[eps, 1]``; a sampler going from time
    ``t`` to an earlier ``s`` reveals each masked token with ``reveal_probability(t, s)``. The core's
    schedules are ``xlm_core.kit.noise.LogLinearSchedule`` and ``CosineSchedule`` (with ``sample_times``
    for the training times). No component of the core takes one: a family that needs a schedule takes it
    in its own loss, collator and predictor configs (docs/plugins.md, "A noise schedule").
    """

    eps: float
    """The smallest training time: weights grow like ``1/t`` near 0, so times are drawn from ``[eps, 1]``."""

    def alpha(self, t: Float[TT, " *batch"]) -> Float[TT, " *batch"]:
        """Probability that a token is still clean at time ``t``."""
        ...

    def alpha_prime(self, t: Float[TT, " *batch"]) -> Float[TT, " *batch"]:
        """``d alpha / d t`` (negative)."""
        ...

    def mask_probability(self, t: Float[TT, " *batch"]) -> Float[TT, " *batch"]:
        """``1 - alpha(t)``, computed without cancellation near ``t = 0``."""
        ...

    def weight(self, t: Float[TT, " *batch"]) -> Float[TT, " *batch"]:
        """The NELBO weight ``-alpha'(t) / (1 - alpha(t))``, finite for every ``t`` (``t`` clamped to ``eps``)."""
        ...

    def t_of_alpha(self, alpha: Float[TT, " *batch"]) -> Float[TT, " *batch"]:
        """The time at which the clean probability is ``alpha`` (the inverse of :meth:`alpha`)."""
        ...

    def reveal_probability(self, t: Float[TT, " *batch"], s: Float[TT, " *batch"]) -> Float[TT, " *batch"]:
        """Probability that a token masked at time ``t`` is clean at the earlier time ``s <= t``."""
        ...


@runtime_checkable
class LossFunction(Protocol):
    """Computes a family's training loss for one batch of an "lm" dataloader."""

    model: Any
    tokenizer: Any

    def __call__(
        self,
        batch: dict[str, Any],
        batch_idx: int | None = None,
        dataloader_idx: int | None = None,
        dataloader_name: str | None = None,
    ) -> dict[str, Any]:
        """Return a dict holding at least a scalar ``"loss"`` tensor."""
        ...


@runtime_checkable
class Predictor(Protocol):
    """Generates from a batch of a "prediction" dataloader."""

    tokenizer: Any
    model: Any

    def predict(
        self,
        batch: dict[str, Any],
        batch_idx: int | None = None,
        dataloader_idx: int | None = None,
        dataloader_name: str | None = None,
    ) -> dict[str, Any]:
        """Return the generated ids, under the key the family declared (``FamilyNames.predicted_ids_key``,
        default ``"ids"``), and whatever else the family reports for ``batch``."""
        ...

    def to_dict(
        self,
        batch: dict[str, Any],
        preds: dict[str, Any],
        batch_idx: int | None = None,
        dataloader_idx: int | None = None,
        dataloader_name: str | None = None,
    ) -> list[dict[str, Any]]:
        """One JSON-serialisable row per example, for the predictions file.

        Every row holds ``"text"`` (:data:`PREDICTION_TEXT_KEY`): the generated text as a string, which
        ``xlm job_type=generate`` prints. Families add what else they report (ids, target, timing ...);
        scalar fields of the dataset row that the collator passed on as ``batch["metadata"]`` (e.g. a
        gold ``answer``) belong in the row too, so post-hoc evaluators can score it.
        """
        ...


@runtime_checkable
class Collator(Protocol):
    """Turns a list of dataset examples into a padded batch of tensors."""

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]: ...


@runtime_checkable
class ARLMModel(Protocol):
    """The auto-regressive family's model: next-token logits for every position.

    ``attention_mask`` is either (B, L) key padding (the model stays causal) or a (B, L, L) mask used
    as given; ``positions`` are the rotary positions of the tokens (default ``0..L-1``). With a KV
    cache the mask covers every filled slot too: key_len = cached + L.
    """

    def __call__(
        self,
        x_t: Integer[TT, " batch seq_len"],
        attention_mask: Bool[TT, " batch seq_len key_len"] | Bool[TT, " batch key_len"] | None = None,
        positions: Integer[TT, " batch seq_len"] | None = None,
        token_type_ids: Integer[TT, " batch seq_len"] | None = None,
    ) -> Float[TT, " batch seq_len vocab_size"]: ...

    def get_named_params_for_weight_decay(self) -> Iterator[tuple[str, torch.nn.Parameter]]: ...

    def get_named_params_for_no_weight_decay(self) -> Iterator[tuple[str, torch.nn.Parameter]]: ...


@runtime_checkable
class MLMModel(Protocol):
    """The masked family's model contract: bidirectional logits for every position.

    ``attention_mask`` (B, L) is key padding only (True = real token): every real token sees every
    real token in both directions.
    """

    def __call__(
        self,
        x_t: Integer[TT, " *batch seq_len"],
        attention_mask: Bool[TT, " *batch seq_len"] | None = None,
        positions: Integer[TT, " *batch seq_len"] | None = None,
    ) -> Float[TT, " *batch seq_len vocab_size"]: ...

    def get_named_params_for_weight_decay(self) -> Iterator[tuple[str, torch.nn.Parameter]]: ...

    def get_named_params_for_no_weight_decay(self) -> Iterator[tuple[str, torch.nn.Parameter]]: ...
