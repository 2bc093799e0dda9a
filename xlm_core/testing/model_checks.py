"""Conformance checks for a family's model (an ``nn.Module`` that maps token ids to vocabulary logits)."""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import torch
from jaxtyping import Bool, Float, Integer
from torch import Tensor as TT

from xlm_core.kit.positions import positions_from_attention_mask
from xlm_core.testing.inputs import left_padded_mask, make_lm_inputs, right_padded_mask
from xlm_core.testing.registry import NotApplicable, register

__all__ = [
    "RunForward",
    "ModelSubject",
    "accepts_inputs",
    "check_forward_output_shape",
    "check_logits_depend_on_input_ids",
    "check_partial_mask_handled",
    "check_padding_ids_ignored",
    "check_batch_independence",
    "check_gradients_reach_parameters",
    "check_weight_decay_split",
    "check_causal",
    "check_kv_cache_matches_full_forward",
]


@runtime_checkable
class RunForward(Protocol):
    """The family's glue from (ids, key-padding mask) to logits ``(batch, seq_len, vocab_size)``.

    Called without ``input_ids``/``attention_mask``, it builds its own inputs (e.g. with
    ``xlm_core.testing.make_lm_inputs(batch_size, seq_len, vocab_size, partial_mask)``). The checks that
    need controlled inputs pass ``input_ids`` (long) and ``attention_mask`` (bool, True = real token;
    padding on the right or, prompt-style, on the left) and expect exactly those to be used; a
    ``run_forward(batch_size, seq_len, partial_mask)`` without those keywords runs the other checks,
    and those skip with a reason.
    """

    def __call__(
        self,
        batch_size: int = 2,
        seq_len: int = 16,
        partial_mask: bool = False,
        *,
        input_ids: Integer[TT, "batch seq_len"] | None = None,
        attention_mask: Bool[TT, "batch seq_len"] | None = None,
    ) -> Float[TT, "batch seq_len vocab_size"]: ...


def accepts_inputs(run_forward: Any) -> bool:
    """Whether ``run_forward`` takes ``input_ids=`` and ``attention_mask=`` keywords (controlled inputs)."""
    try:
        params = inspect.signature(run_forward).parameters
    except (TypeError, ValueError):
        return False
    if any(p.kind == p.VAR_KEYWORD for p in params.values()):
        return True
    return "input_ids" in params and "attention_mask" in params


@dataclass
class ModelSubject:
    """What the model checks need. ``params_without_grad`` names parameters allowed to get no gradient.

    ``vocab_size`` None: read from the logits' last dimension.
    """

    model: torch.nn.Module
    run_forward: RunForward
    vocab_size: int | None = None
    batch_size: int = 3
    seq_len: int = 12
    pad_token_id: int = 0
    params_without_grad: frozenset[str] = field(default_factory=frozenset)
    atol: float = 1e-5

    def __post_init__(self) -> None:
        if self.vocab_size is None:
            with eval_mode(self.model), torch.no_grad():
                logits = self.run_forward(self.batch_size, self.seq_len, False)
            assert isinstance(logits, torch.Tensor) and logits.dim() == 3, (
                f"run_forward(batch_size, seq_len, partial_mask) must return (batch, seq_len, vocab_size) logits; "
                f"got {type(logits).__name__} {tuple(getattr(logits, 'shape', ()))}."
            )
            self.vocab_size = int(logits.shape[-1])

    @property
    def controlled(self) -> bool:
        """True when run_forward takes the suite's own input_ids/attention_mask."""
        return accepts_inputs(self.run_forward)

    def require_controlled_inputs(self, check: str) -> None:
        """Skip ``check`` for a run_forward that cannot take given inputs, saying what to add."""
        if not self.controlled:
            raise NotApplicable(
                f"{check} needs controlled inputs: give run_forward keyword arguments input_ids=None and "
                "attention_mask=None and use them when given (xlm_core.testing.model_checks.RunForward)."
            )


@contextlib.contextmanager
def eval_mode(module: Any) -> Iterator[None]:
    """Switch ``module`` (if it is an nn.Module) to eval for the block, then restore its mode."""
    if not isinstance(module, torch.nn.Module):
        yield
        return
    was_training = module.training
    module.eval()
    try:
        yield
    finally:
        module.train(was_training)


def _forward(s: ModelSubject, ids: TT, mask: TT) -> TT:
    logits = s.run_forward(
        ids.shape[0], ids.shape[1], partial_mask=not bool(mask.all()), input_ids=ids, attention_mask=mask
    )
    assert isinstance(logits, torch.Tensor), f"run_forward must return the logits tensor; got {type(logits).__name__}."
    expected = (ids.shape[0], ids.shape[1], s.vocab_size)
    assert tuple(logits.shape) == expected, (
        f"logits have shape {tuple(logits.shape)}; expected (batch, seq_len, vocab_size) = {expected}."
    )
    return logits


def _inputs(s: ModelSubject, partial_mask: bool, seed: int = 0) -> tuple[TT, TT]:
    return make_lm_inputs(s.batch_size, s.seq_len, s.vocab_size, partial_mask, seed=seed, pad_token_id=s.pad_token_id)


def _padded_masks(s: ModelSubject) -> list[tuple[str, TT]]:
    return [("right", right_padded_mask(s.batch_size, s.seq_len)), ("left", left_padded_mask(s.batch_size, s.seq_len))]


def _max_diff(a: TT, b: TT) -> float:
    return (a.float() - b.float()).abs().max().item() if a.numel() else 0.0


@register("model")
def check_forward_output_shape(s: ModelSubject) -> None:
    """Logits are floating ``(batch, seq_len, vocab_size)`` for run_forward's own inputs."""
    with eval_mode(s.model), torch.no_grad():
        logits = s.run_forward(s.batch_size, s.seq_len, False)
    assert isinstance(logits, torch.Tensor), f"run_forward must return the logits tensor; got {type(logits).__name__}."
    assert tuple(logits.shape) == (s.batch_size, s.seq_len, s.vocab_size), (
        f"run_forward(batch_size={s.batch_size}, seq_len={s.seq_len}) returned shape {tuple(logits.shape)}; "
        f"expected {(s.batch_size, s.seq_len, s.vocab_size)}."
    )
    assert logits.is_floating_point(), f"logits must be floating point; got {logits.dtype}."


@register("model")
def check_logits_depend_on_input_ids(s: ModelSubject) -> None:
    """Logits change when every input id changes (run_forward uses the ids it is given)."""
    s.require_controlled_inputs("check_logits_depend_on_input_ids")
    with eval_mode(s.model), torch.no_grad():
        ids, mask = _inputs(s, partial_mask=False)
        a = _forward(s, ids, mask)
        b = _forward(s, (ids + 1) % s.vocab_size, mask)
    assert _max_diff(a, b) > s.atol, (
        "logits did not change when every input id changed: run_forward ignores the input_ids it is given "
        "(or the model ignores its input)."
    )


@register("model")
def check_partial_mask_handled(s: ModelSubject) -> None:
    """With right or left padding the model runs and every real position gets finite logits."""
    if not s.controlled:  # run_forward pads as it likes; then every position must be finite
        with eval_mode(s.model), torch.no_grad():
            logits = s.run_forward(s.batch_size, s.seq_len, True)
        assert bool(torch.isfinite(logits).all()), "run_forward(partial_mask=True) returned non-finite logits."
        return
    for layout, mask in _padded_masks(s):
        ids = _inputs(s, partial_mask=False)[0].masked_fill(~mask, s.pad_token_id)
        with eval_mode(s.model), torch.no_grad():
            logits = _forward(s, ids, mask)
        bad = ~torch.isfinite(logits[mask]).all(dim=-1)
        assert not bad.any(), f"{int(bad.sum())} real positions have non-finite logits under a {layout}-padded mask."


@register("model", requires=["key_padding"])
def check_padding_ids_ignored(s: ModelSubject) -> None:
    """Changing the ids at padded positions (right or left padding) leaves real positions' logits unchanged."""
    s.require_controlled_inputs("check_padding_ids_ignored")
    for layout, mask in _padded_masks(s):
        ids = _inputs(s, partial_mask=False)[0].masked_fill(~mask, s.pad_token_id)
        other = torch.where(mask, ids, (ids + 1 + torch.arange(s.seq_len)) % s.vocab_size)
        with eval_mode(s.model), torch.no_grad():
            a = _forward(s, ids, mask)[mask]
            b = _forward(s, other, mask)[mask]
        diff = _max_diff(a, b)
        assert diff <= s.atol, (
            f"with {layout} padding, logits at real positions changed by {diff:.3g} when only padded ids "
            "changed: the attention mask is not applied as key padding."
        )


@register("model")
def check_batch_independence(s: ModelSubject) -> None:
    """Each row's logits are the same whether it is run alone or inside a padded batch."""
    s.require_controlled_inputs("check_batch_independence")
    ids, mask = _inputs(s, partial_mask=True)
    with eval_mode(s.model), torch.no_grad():
        batched = _forward(s, ids, mask)
        for i in range(s.batch_size):
            alone = _forward(s, ids[i : i + 1], mask[i : i + 1])[0]
            diff = _max_diff(batched[i][mask[i]], alone[mask[i]])
            assert diff <= max(s.atol, 1e-4), f"row {i} differs by {diff:.3g} between batched and single-row forward."


@register("model")
def check_gradients_reach_parameters(s: ModelSubject) -> None:
    """A loss on the logits gives every trainable parameter a finite, non-zero gradient."""
    s.model.zero_grad(set_to_none=True)
    if s.controlled:
        ids, mask = _inputs(s, partial_mask=True)
        logits = _forward(s, ids, mask)
    else:
        logits = s.run_forward(s.batch_size, s.seq_len, True)
        mask = torch.ones(logits.shape[:2], dtype=torch.bool, device=logits.device)
    assert logits.requires_grad, "logits do not require grad: the forward pass is detached from the parameters."
    weights = torch.randn(logits.shape, generator=torch.Generator().manual_seed(1))
    (logits * weights.to(logits.dtype))[mask].sum().backward()
    missing, zero, non_finite = [], [], []
    for name, p in s.model.named_parameters():
        if not p.requires_grad or name in s.params_without_grad:
            continue
        if p.grad is None:
            missing.append(name)
        elif not torch.isfinite(p.grad).all():
            non_finite.append(name)
        elif not p.grad.any():
            zero.append(name)
    s.model.zero_grad(set_to_none=True)
    assert not missing, f"parameters without a gradient: {missing} (list intended ones in params_without_grad)."
    assert not non_finite, f"parameters with non-finite gradients: {non_finite}."
    assert not zero, f"parameters whose gradient is exactly zero: {zero}."


@register("model")
def check_weight_decay_split(s: ModelSubject) -> None:
    """The decay / no-decay groups are disjoint, exhaustive and hold the model's own parameters."""
    decay = list(s.model.get_named_params_for_weight_decay())
    no_decay = list(s.model.get_named_params_for_no_weight_decay())
    named = dict(s.model.named_parameters())
    for group, items in (("weight decay", decay), ("no weight decay", no_decay)):
        names = [n for n, _ in items]
        dupes = sorted({n for n in names if names.count(n) > 1})
        assert not dupes, f"the {group} group lists {dupes} more than once."
        foreign = [n for n, p in items if n not in named or named[n] is not p]
        assert not foreign, f"the {group} group holds {foreign}, which are not the model's named_parameters()."
    overlap = sorted({n for n, _ in decay} & {n for n, _ in no_decay})
    assert not overlap, f"parameters in both the decay and no-decay groups: {overlap}."
    left_out = sorted(set(named) - {n for n, _ in decay} - {n for n, _ in no_decay})
    assert not left_out, f"parameters in neither weight-decay group (the optimizer would skip them): {left_out}."


@register("model", requires=["causal"])
def check_causal(s: ModelSubject) -> None:
    """Changing the token at position t never changes logits before t (and does change them at t)."""
    s.require_controlled_inputs("check_causal")
    ids, mask = _inputs(s, partial_mask=False)
    with eval_mode(s.model), torch.no_grad():
        base = _forward(s, ids, mask)
        for t in sorted({1, s.seq_len // 2, s.seq_len - 1}):
            changed = ids.clone()
            changed[:, t] = (changed[:, t] + 1) % s.vocab_size
            out = _forward(s, changed, mask)
            past = _max_diff(base[:, :t], out[:, :t])
            assert past <= s.atol, (
                f"changing the token at position {t} changed the logits at earlier positions by {past:.3g}: "
                "the model sees the future."
            )
            assert _max_diff(base[:, t], out[:, t]) > s.atol, (
                f"changing the token at position {t} did not change the logits at position {t}."
            )


@register("model", requires=["kv_cache"])
def check_kv_cache_matches_full_forward(s: ModelSubject) -> None:
    """Prefill + one-token steps with the KV cache give the logits of one full forward pass.

    Uses the cache contract of docs/architecture.md: ``model(x_t, attention_mask, positions)`` with a
    (B, S) mask over all slots; left-padded rows exercise the mask.
    """
    model = s.model
    for attr in ("set_kv_cache", "clear_kv_cache"):
        assert callable(getattr(model, attr, None)), f"the model has no {attr}() but was declared kv_cache capable."
    ids, _ = _inputs(s, partial_mask=False)
    mask = left_padded_mask(s.batch_size, s.seq_len)
    ids = ids.masked_fill(~mask, s.pad_token_id)
    positions = positions_from_attention_mask(mask)
    prefill = max(1, s.seq_len // 2)
    with eval_mode(model), torch.no_grad():
        full = model(ids, mask, positions)
        try:
            model.set_kv_cache(s.batch_size, s.seq_len)
            steps = [model(ids[:, :prefill], mask[:, :prefill], positions[:, :prefill])]
            assert model.kv_cache_length == prefill, (
                f"after a prefill of {prefill} tokens kv_cache_length is {model.kv_cache_length}."
            )
            for t in range(prefill, s.seq_len):
                steps.append(model(ids[:, t : t + 1], mask[:, : t + 1], positions[:, t : t + 1]))
            assert model.kv_cache_length == s.seq_len, (
                f"after {s.seq_len} tokens kv_cache_length is {model.kv_cache_length}."
            )
        finally:
            model.clear_kv_cache()
        cached = torch.cat(steps, dim=1)
        again = model(ids, mask, positions)
    diff = _max_diff(full[mask], cached[mask])
    assert diff <= max(s.atol, 1e-4), f"KV-cached logits differ from the full forward by {diff:.3g} at real positions."
    assert _max_diff(full[mask], again[mask]) <= s.atol, "after clear_kv_cache() a full forward no longer matches."
