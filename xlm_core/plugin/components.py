"""What a family registers besides its configs: its components, validated against the protocols.

A plugin passes its classes and functions to ``register(...)`` (see ``xlm_core.plugin.hookspecs``)::

    register(
        name="arlm", config_dir=files("xlm_arlm") / "configs", description="...",
        model_protocol=ARLMModel,
        models=[Component(RotaryTransformerARLMModel, tiny={"d_model": 32, ...},
                          capabilities={"causal", "kv_cache", "key_padding"})],
        losses=[ARLMLoss],
        collators=[Component(ARLMSeq2SeqCollator, role="seq2seq", tiny={...}), ...],
        predictors=[Component(ARLMPredictor, tiny={...greedy...})],
        metrics=[seq2seq_exact_match_update_fn, ...],
        exporters={"hf": export_hf},
    )

The core checks each component against its protocol when the plugin loads (a mismatch is a plugin
error, like an import error), lists them in ``xlm families --verbose``, builds small instances from
``tiny`` for ``xlm check``, and tells a config whose ``_target_`` belongs to another family.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Iterator, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field, replace
from typing import Any

import torch

from xlm_core.config.tools import qualified_name

__all__ = [
    "Component",
    "FamilyComponents",
    "COMPONENT_KINDS",
    "COLLATOR_ROLES",
    "CAPABILITIES",
    "validate_components",
    "protocol_methods",
    "describe_component",
]

COMPONENT_KINDS: tuple[str, ...] = ("model", "loss", "collator", "predictor", "metric", "exporter")
# lm: {input_ids} rows for language modelling; seq2seq: {prompt_ids, input_ids} rows for teacher-forced
# training; prediction: {prompt_ids, input_ids} rows turned into generation batches (gold kept apart).
COLLATOR_ROLES: tuple[str, ...] = ("lm", "seq2seq", "prediction")
# causal: output at i ignores inputs after i; kv_cache: has set_kv_cache/clear_kv_cache (docs/architecture.md);
# key_padding: ids at padded positions (attention_mask False) never change outputs at real positions.
CAPABILITIES: frozenset[str] = frozenset({"causal", "kv_cache", "key_padding"})

RunForward = Callable[[torch.nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Component:
    """One class or function a family registers, and how ``xlm check`` builds a small instance of it.

    - ``tiny``: constructor kwargs for a small instance (the core adds the runtime ones:
      ``num_embeddings``/``padding_idx`` (and ``mask_token_id`` when the constructor takes it) for models,
      ``model``/``tokenizer`` for losses and predictors, ``tokenizer`` for collators), or a factory taking
      those same kwargs.
      Predictors must be configured for greedy decoding.
    - ``role`` (collators): one of ``lm``, ``seq2seq``, ``prediction``.
    - ``capabilities`` (models): any of ``causal``, ``kv_cache``, ``key_padding``.
    - ``run_forward`` (models): ``fn(model, input_ids, attention_mask) -> logits`` when the model is
      not called as ``model(input_ids, attention_mask, positions)``.
    """

    obj: Any
    tiny: Mapping[str, Any] | Callable[..., Any] | None = None
    role: str | None = None
    capabilities: AbstractSet[str] = frozenset()  # stored as a frozenset
    run_forward: RunForward | None = None
    kind: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "capabilities", frozenset(self.capabilities))

    @property
    def target(self) -> str:
        """The dotted path a config's ``_target_`` uses for this component."""
        return qualified_name(self.obj)

    @property
    def name(self) -> str:
        return getattr(self.obj, "__name__", self.target)

    def build(self, **runtime: Any) -> Any:
        """A small instance: ``tiny`` kwargs (or factory) plus the runtime kwargs."""
        if callable(self.tiny):
            return self.tiny(**runtime)
        return self.obj(**{**dict(self.tiny or {}), **runtime})


@dataclass(frozen=True)
class FamilyComponents:
    """A family's registered components, by kind."""

    model_protocol: type | None = None
    models: tuple[Component, ...] = ()
    losses: tuple[Component, ...] = ()
    collators: tuple[Component, ...] = ()
    predictors: tuple[Component, ...] = ()
    metrics: tuple[Component, ...] = ()
    exporters: Mapping[str, Component] = field(default_factory=dict)

    def __iter__(self) -> Iterator[Component]:
        yield from (
            *self.models,
            *self.losses,
            *self.collators,
            *self.predictors,
            *self.metrics,
            *self.exporters.values(),
        )

    def __bool__(self) -> bool:
        return any(True for _ in self)

    def by_target(self) -> dict[str, Component]:
        """Every component by the dotted path configs name it with."""
        return {c.target: c for c in self}

    def collators_for(self, role: str) -> list[Component]:
        """The collators registered for ``role``."""
        return [c for c in self.collators if c.role == role]


def describe_component(component: Component) -> str:
    """One line for listings: ``target [role=..., capabilities=...]``."""
    extras = []
    if component.role:
        extras.append(f"role={component.role}")
    if component.capabilities:
        extras.append("capabilities=" + ",".join(sorted(component.capabilities)))
    if component.tiny is not None:
        extras.append("tiny")
    return component.target + (f" [{'; '.join(extras)}]" if extras else "")


def protocol_methods(protocol: type) -> dict[str, Callable[..., Any]]:
    """The methods a ``typing.Protocol`` declares (``__call__`` included), by name."""
    methods: dict[str, Callable[..., Any]] = {}
    for base in reversed(protocol.__mro__):
        if base is object or base.__name__ in ("Protocol", "Generic"):
            continue
        for name, value in vars(base).items():
            if callable(value) and (not name.startswith("_") or name == "__call__"):
                methods[name] = value
    return methods


def _defines(cls: type, name: str) -> bool:
    """True when ``cls`` (not just ``object``) defines attribute ``name``."""
    return any(name in vars(k) for k in cls.__mro__ if k is not object)


def _positional_count(fn: Callable[..., Any]) -> int:
    """Positional parameters of an (unbound) protocol method, ``self`` excluded."""
    params = list(inspect.signature(fn).parameters.values())[1:]
    return sum(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in params)


def _accepts_positional(fn: Any, count: int, bound: bool) -> bool:
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return True  # builtins without a signature: nothing to check
    args = ([None] if not bound else []) + [None] * count
    try:
        sig.bind(*args)
    except TypeError:
        return False
    return True


def _check_protocol(cls: type, protocol: type, what: str) -> None:
    """Every method of ``protocol`` exists on ``cls`` and takes the protocol's positional arguments."""
    for name, spec in protocol_methods(protocol).items():
        impl_name = "forward" if name == "__call__" and issubclass(cls, torch.nn.Module) else name
        if not _defines(cls, impl_name):
            raise ValueError(
                f"{what} {qualified_name(cls)} does not satisfy {protocol.__name__}: it has no {impl_name}(); add it"
            )
        n = _positional_count(spec)
        if not _accepts_positional(getattr(cls, impl_name), n, bound=False):
            raise ValueError(
                f"{what} {qualified_name(cls)}.{impl_name} does not take the {n} positional argument(s) "
                f"of {protocol.__name__}.{name}{inspect.signature(spec)}; match that signature"
            )


def _as_component(item: Any, kind: str) -> Component:
    component = item if isinstance(item, Component) else Component(item)
    return replace(component, kind=kind)


def _validate_model(c: Component, model_protocol: type | None) -> None:
    from xlm_core.plugin.protocols import Model

    if not (inspect.isclass(c.obj) and issubclass(c.obj, torch.nn.Module)):
        raise ValueError(f"model {c.target} is not a torch.nn.Module subclass")
    _check_protocol(c.obj, Model, "model")
    if model_protocol is not None:
        _check_protocol(c.obj, model_protocol, "model")
    unknown = c.capabilities - CAPABILITIES
    if unknown:
        raise ValueError(f"model {c.target}: unknown capabilities {sorted(unknown)}; known: {sorted(CAPABILITIES)}")
    if "kv_cache" in c.capabilities and not all(_defines(c.obj, m) for m in ("set_kv_cache", "clear_kv_cache")):
        raise ValueError(f"model {c.target} declares kv_cache but lacks set_kv_cache()/clear_kv_cache()")


def _validate_class(c: Component, protocol_name: str) -> None:
    from xlm_core.plugin import protocols

    if not inspect.isclass(c.obj):
        raise ValueError(f"{c.kind} {c.target} must be a class, got {type(c.obj).__name__}")
    _check_protocol(c.obj, getattr(protocols, protocol_name), c.kind)


def _validate_collator(c: Component) -> None:
    _validate_class(c, "Collator")
    if c.role not in COLLATOR_ROLES:
        raise ValueError(
            f"collator {c.target}: role={c.role!r}; give one of {', '.join(COLLATOR_ROLES)} (Component(cls, role=...))"
        )


def _validate_metric(c: Component) -> None:
    if not callable(c.obj) or inspect.isclass(c.obj):
        raise ValueError(f"metric {c.target} must be an update function fn(batch, outputs, tokenizer=None) -> dict")
    try:
        inspect.signature(c.obj).bind({}, {}, tokenizer=None)
    except TypeError:
        raise ValueError(f"metric {c.target} must take (batch, outputs, tokenizer=None)") from None
    except ValueError:
        pass


def validate_components(
    model_protocol: type | None = None,
    models: Iterable[Any] = (),
    losses: Iterable[Any] = (),
    collators: Iterable[Any] = (),
    predictors: Iterable[Any] = (),
    metrics: Iterable[Any] = (),
    exporters: Mapping[str, Any] | None = None,
) -> FamilyComponents:
    """Wrap and check what a plugin registered; raises ValueError naming the first bad component."""
    if model_protocol is not None and not getattr(model_protocol, "_is_protocol", False):
        raise ValueError(f"model_protocol must be a typing.Protocol class, got {model_protocol!r}")
    out = FamilyComponents(
        model_protocol=model_protocol,
        models=tuple(_as_component(m, "model") for m in models or ()),
        losses=tuple(_as_component(x, "loss") for x in losses or ()),
        collators=tuple(_as_component(x, "collator") for x in collators or ()),
        predictors=tuple(_as_component(x, "predictor") for x in predictors or ()),
        metrics=tuple(_as_component(x, "metric") for x in metrics or ()),
        exporters={str(k): _as_component(v, "exporter") for k, v in (exporters or {}).items()},
    )
    for c in out.models:
        _validate_model(c, model_protocol)
    for c in out.losses:
        _validate_class(c, "LossFunction")
    for c in out.collators:
        _validate_collator(c)
    for c in out.predictors:
        _validate_class(c, "Predictor")
    for c in out.metrics:
        _validate_metric(c)
    for fmt, c in out.exporters.items():
        if not callable(c.obj):
            raise ValueError(f"exporter {fmt!r} ({c.target}) is not callable")
    for c in out:
        if c.tiny is not None and not (callable(c.tiny) or isinstance(c.tiny, Mapping)):
            raise ValueError(
                f"{c.kind} {c.target}: tiny must be a dict of kwargs or a factory, got {type(c.tiny).__name__}"
            )
    return out
