"""Conformance checks for a family's loss function (the ``LossFunction`` protocol)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

from xlm_core.modules.linear_cross_entropy import HiddenStateModel
from xlm_core.plugin.names import FamilyNames
from xlm_core.testing.batch_utils import assert_batch_unchanged, clone_batch
from xlm_core.testing.model_checks import eval_mode
from xlm_core.testing.registry import NotApplicable, register

__all__ = [
    "LossSubject",
    "check_loss_output",
    "check_loss_reaches_model",
    "check_loss_changes_with_targets",
    "check_loss_ignores_padding",
    "check_loss_ignores_ignored_targets",
]


@dataclass
class LossSubject:
    """What the loss checks need: the loss, one batch it accepts, and the keys of that batch.

    ``names``: the family's declared keys (``register(names=FamilyNames(...))``); ``target_key`` and
    ``ignore_index`` override its ``target_key`` / ``ignore_index`` when given. ``vocab_size`` None:
    ``len(loss_fn.tokenizer)``, else the last dimension of the model's output.
    """

    loss_fn: Any
    batch: dict[str, Any]
    vocab_size: int | None = None
    target_key: str | None = None
    ignore_index: int | None = None
    names: FamilyNames = field(default_factory=FamilyNames)

    def __post_init__(self) -> None:
        if self.target_key is None:
            self.target_key = self.names.target_key
        if self.ignore_index is None:
            self.ignore_index = self.names.ignore_index
        if self.vocab_size is None:
            tokenizer = getattr(self.loss_fn, "tokenizer", None)
            self.vocab_size = len(tokenizer) if tokenizer is not None else _output_width(self)


def _output_width(s: LossSubject) -> int:
    """The last dimension of what the loss's model returns (its vocabulary size)."""
    model = _model(s)
    if isinstance(model, HiddenStateModel) and isinstance(getattr(model, "lm_head", None), torch.nn.Linear):
        return int(model.lm_head.out_features)  # a fused loss may never call the model's forward
    widths: list[int] = []
    handle = _model(s).register_forward_hook(
        lambda m, a, out: widths.append(out.shape[-1]) if torch.is_tensor(out) else None
    )
    try:
        with eval_mode(_model(s)), torch.no_grad():
            _loss(s, s.batch)
    finally:
        handle.remove()
    assert widths, "the loss never called loss_fn.model, so the vocabulary size is unknown; pass vocab_size."
    return int(widths[0])


def _loss(s: LossSubject, batch: dict[str, Any]) -> torch.Tensor:
    out = s.loss_fn(batch, 0, 0, "train")
    assert isinstance(out, dict) and "loss" in out, (
        f"the loss function must return a dict with a 'loss' key; got {type(out).__name__} "
        f"{sorted(out) if isinstance(out, dict) else ''}."
    )
    return out["loss"]


def _model(s: LossSubject) -> torch.nn.Module:
    model = getattr(s.loss_fn, "model", None)
    assert isinstance(model, torch.nn.Module), "the loss function must expose the model it trains as .model."
    return model


def _targets(s: LossSubject) -> torch.Tensor:
    """The batch's targets under the declared key; a batch without them fails saying how to declare the key."""
    targets = s.batch.get(s.target_key)
    assert isinstance(targets, torch.Tensor), (
        f"the batch has no tensor {s.target_key!r} (keys: {sorted(s.batch)}); declare the key of the batch's targets "
        "with register(..., names=FamilyNames(target_key=...))."
    )
    return targets


@register("loss")
def check_loss_output(s: LossSubject) -> None:
    """The loss is a finite floating scalar tensor that requires grad; the batch is not modified."""
    before = clone_batch(s.batch)
    loss = _loss(s, s.batch)
    assert isinstance(loss, torch.Tensor), f"'loss' must be a tensor; got {type(loss).__name__}."
    assert loss.dim() == 0, f"'loss' must be a scalar (0-dim) tensor; got shape {tuple(loss.shape)}."
    assert loss.is_floating_point(), f"'loss' must be floating point; got {loss.dtype}."
    assert torch.isfinite(loss), f"'loss' is not finite: {loss.item()}."
    assert loss.requires_grad, "'loss' does not require grad: it is detached from the model."
    assert_batch_unchanged(before, s.batch, "the batch given to the loss")


@register("loss")
def check_loss_reaches_model(s: LossSubject) -> None:
    """Backpropagating the loss gives the model finite gradients, not all zero."""
    model = _model(s)
    model.zero_grad(set_to_none=True)
    _loss(s, s.batch).backward()
    grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    assert grads, "after loss.backward() no model parameter has a gradient: the loss does not reach the model."
    bad = [n for n, g in grads.items() if not torch.isfinite(g).all()]
    assert not bad, f"non-finite gradients in {bad}."
    assert any(g.any() for g in grads.values()), "after loss.backward() every model gradient is exactly zero."


@register("loss")
def check_loss_changes_with_targets(s: LossSubject) -> None:
    """Changing every non-ignored target changes the loss (the loss reads the targets)."""
    targets = _targets(s)
    valid = targets != s.ignore_index
    assert valid.any(), f"every {s.target_key} entry is the ignore index {s.ignore_index}; use a batch with targets."
    changed = dict(s.batch)
    changed[s.target_key] = torch.where(valid, (targets + 1) % s.vocab_size, targets)
    with eval_mode(_model(s)), torch.no_grad():
        a, b = _loss(s, s.batch), _loss(s, changed)
    assert not torch.isclose(a, b, rtol=0.0, atol=1e-7), (
        f"the loss stayed {a.item():.6g} when every target changed: it ignores batch[{s.target_key!r}]."
    )


@register("loss")
def check_loss_ignores_padding(s: LossSubject) -> None:
    """Changing the token ids at padded positions (mask 0) leaves the loss unchanged."""
    token_key, mask_key = s.names.token_key, s.names.mask_key
    mask = s.batch.get(mask_key)
    if mask is None or token_key not in s.batch or bool(mask.bool().all()):
        raise NotApplicable(f"the batch has no padding ({mask_key} == 0); give a batch with padded rows.")
    ids = s.batch[token_key]
    changed = dict(s.batch)
    changed[token_key] = torch.where(mask.bool(), ids, (ids + 1) % s.vocab_size)
    with eval_mode(_model(s)), torch.no_grad():
        a, b = _loss(s, s.batch), _loss(s, changed)
    assert torch.isclose(a, b, rtol=0.0, atol=1e-5), (
        f"the loss changed from {a.item():.6g} to {b.item():.6g} when only padded input ids "
        f"(batch[{token_key!r}]) changed."
    )


@contextlib.contextmanager
def _perturbed_hidden_states(model: torch.nn.Module, perturb: Callable[..., Any]) -> Iterator[None]:
    """Pass ``forward_hidden``'s output through ``perturb`` too (a fused loss reads the hidden states, not
    the logits; ``xlm_core.modules.HiddenStateModel``). No-op for other models."""
    if not isinstance(model, HiddenStateModel):
        yield
        return
    original = model.forward_hidden

    def forward_hidden(*args: Any, **kwargs: Any) -> Any:
        out = original(*args, **kwargs)
        changed = perturb(model, args, out)
        return out if changed is None else changed

    model.forward_hidden = forward_hidden  # type: ignore[method-assign]
    try:
        yield
    finally:
        del model.forward_hidden


@register("loss")
def check_loss_ignores_ignored_targets(s: LossSubject) -> None:
    """Logits (or, for a fused loss, hidden states) at positions whose target is -100 do not change the loss."""
    targets = _targets(s)
    ignored = targets == s.ignore_index
    if not ignored.any():
        raise NotApplicable(f"no {s.target_key} entry is the ignore index {s.ignore_index}; give a batch with some.")
    model = _model(s)
    aligned: list[bool] = []
    gen = torch.Generator().manual_seed(0)

    def perturb(module: Any, args: Any, output: Any) -> Any:
        ok = isinstance(output, torch.Tensor) and output.dim() == 3 and tuple(output.shape[:2]) == tuple(targets.shape)
        aligned.append(ok)
        if not ok:
            return None
        noise = 10.0 * torch.randn(output.shape, generator=gen).to(output)
        return torch.where(ignored.to(output.device).unsqueeze(-1), output + noise, output)

    with eval_mode(model), torch.no_grad():
        a = _loss(s, s.batch)
        handle = model.register_forward_hook(perturb)
        try:
            with _perturbed_hidden_states(model, perturb):
                b = _loss(s, s.batch)
        finally:
            handle.remove()
    if not any(aligned):
        raise NotApplicable(
            f"the model's output is not (batch, seq_len, vocab) aligned with {s.target_key}, so "
            "the logits at ignored positions cannot be told apart."
        )
    assert torch.isclose(a, b, rtol=1e-5, atol=1e-5), (
        f"the loss changed from {a.item():.6g} to {b.item():.6g} when only the logits at positions whose target "
        f"is {s.ignore_index} changed: it scores ignored positions."
    )
