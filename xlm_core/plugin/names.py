"""The names a family's batches and predictions use, declared once when the family registers.

Generic code never assumes a family's key names. It reads them from the family's :class:`FamilyNames`:

- the harness counts the tokens of each training batch with :meth:`FamilyNames.count_tokens_in` (the
  throughput the progress line and the end-of-training summary report);
- ``xlm_core.kit.batch_checks.training_tensors`` takes a loss's tensors by these keys;
- the conformance checks ``xlm check`` runs (``xlm_core.testing``) read tokens, mask and targets of the
  family's batches and the generated ids of its ``predict()`` output by these keys.

Today's names are the defaults, so a family that uses them declares nothing::

    register(name="r2l", ..., names=FamilyNames(token_key="tokens", mask_key="loss_mask",
                                                target_key="labels", predicted_ids_key="seq"))
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any

import torch
from jaxtyping import Integer
from torch import Tensor as TT

__all__ = ["FamilyNames", "TokenCounter", "as_family_names"]

TokenCounter = Callable[[Mapping[str, Any]], Any]
"""``fn(batch) -> int | 0-d tensor | None``: how many tokens a training batch holds (None: not counted)."""


@dataclass(frozen=True)
class FamilyNames:
    """Keys of a family's batches and predictions, and how its training batches count tokens.

    Attributes:
        token_key: the (batch, seq_len) integer token ids of every batch the family's collators make.
        mask_key: the (batch, seq_len) key-padding mask of those batches (bool or 0/1; True = real token).
        target_key: the targets of a training batch (``ignore_index`` wherever nothing is scored); in a
            prediction batch, the reference the metrics compare the generated tokens with.
        predicted_ids_key: the key of the generated (batch, length) ids in the dict ``predict()`` returns.
        ignore_index: the target value that is not scored.
        count_tokens: ``fn(batch)`` giving the tokens of a training batch for throughput; None counts the real
            tokens (True entries of ``mask_key``), or every entry of ``token_key`` when a batch has no mask.
    """

    token_key: str = "input_ids"
    mask_key: str = "attention_mask"
    target_key: str = "target_ids"
    predicted_ids_key: str = "ids"
    ignore_index: int = -100
    count_tokens: TokenCounter | None = None

    def __post_init__(self) -> None:
        keys = {
            "token_key": self.token_key,
            "mask_key": self.mask_key,
            "target_key": self.target_key,
            "predicted_ids_key": self.predicted_ids_key,
        }
        for field_name, value in keys.items():
            if not isinstance(value, str) or not value:
                raise ValueError(f"FamilyNames({field_name}={value!r}): give the key as a non-empty str")
        batch_keys = [self.token_key, self.mask_key, self.target_key]
        if len(set(batch_keys)) != 3:
            raise ValueError(f"FamilyNames: token_key, mask_key and target_key must differ, got {batch_keys}")
        if isinstance(self.ignore_index, bool) or not isinstance(self.ignore_index, int):
            raise ValueError(f"FamilyNames(ignore_index={self.ignore_index!r}): give an int (usually -100)")
        if self.count_tokens is not None and not callable(self.count_tokens):
            raise ValueError(f"FamilyNames(count_tokens={self.count_tokens!r}): give a function fn(batch) or None")

    def count_tokens_in(self, batch: Any) -> Integer[TT, ""] | None:
        """The tokens of one training batch as a 0-d integer tensor (on the batch's device), or None."""
        if self.count_tokens is not None:
            counted = self.count_tokens(batch)
            if counted is None:
                return None
            return counted.detach().reshape(()).long() if isinstance(counted, TT) else torch.tensor(int(counted))
        if not isinstance(batch, Mapping):
            return None
        mask = batch.get(self.mask_key)
        if isinstance(mask, TT):
            return mask.detach().bool().sum()
        ids = batch.get(self.token_key)
        if isinstance(ids, TT):
            return torch.tensor(ids.numel(), device=ids.device)
        return None


def as_family_names(value: Any, family: str) -> FamilyNames:
    """What ``register(names=...)`` got as :class:`FamilyNames` (a mapping of its fields is accepted too);
    anything else is a ValueError naming the family and the fix."""
    if value is None:
        return FamilyNames()
    if isinstance(value, FamilyNames):
        return value
    if isinstance(value, Mapping):
        known = {f.name for f in fields(FamilyNames)}
        unknown = sorted(set(value) - known)
        if unknown:
            raise ValueError(
                f"family '{family}': names has unknown field(s) {unknown}; FamilyNames has {', '.join(sorted(known))}"
            )
        return FamilyNames(**value)
    raise ValueError(
        f"family '{family}': names={value!r}; pass xlm_core.plugin.names.FamilyNames(...) (or a dict of its fields)"
    )
