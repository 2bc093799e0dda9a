"""``xlm check FAMILY``: run the conformance checks on a family's registered components.

Like scikit-learn's ``check_estimator``: the author writes no test file. Each registered component is
built small (its ``tiny`` kwargs or factory plus the runtime objects), fed inputs made with a core
tokenizer, and every check of its kind that its capabilities allow runs on it. Losses are checked
on a batch of the family's own training collator, predictors on one of its prediction collator, both
read through the keys the family declared (``register(names=FamilyNames(...))``), and every experiment
of the family is composed and its component targets compared with the registry.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import Any, Literal

import torch

from xlm_core.data.simple_tokenizer import SimpleSpaceTokenizer
from xlm_core.kit.positions import positions_from_attention_mask
from xlm_core.plugin.components import Component
from xlm_core.plugin.manager import FamilyInfo
from xlm_core.testing.collator_checks import CollatorSubject, default_block_size
from xlm_core.testing.inputs import make_lm_inputs
from xlm_core.testing.loss_checks import LossSubject
from xlm_core.testing.model_checks import ModelSubject
from xlm_core.testing.predictor_checks import PredictorSubject
from xlm_core.testing.registry import NotApplicable
from xlm_core.testing.suite import checks_for
from xlm_core.training.runtime import model_runtime_kwargs

__all__ = ["CheckResult", "check_family", "format_results", "default_run_forward", "example_rows"]

Status = Literal["passed", "failed", "skipped", "error"]
_SEED = 0


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one check on one component."""

    kind: str
    component: str
    check: str
    status: Status
    message: str = ""

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


class _BuildError(Exception):
    """A component (or an input for it) could not be built; every check of it is reported as an error."""


def default_run_forward(model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """``model(input_ids, attention_mask, positions)`` with the core's positions
    (:func:`xlm_core.kit.positions.positions_from_attention_mask`)."""
    return model(input_ids, attention_mask, positions_from_attention_mask(attention_mask))


def _run_forward_fixture(model: torch.nn.Module, component: Component, vocab_size: int, pad: int) -> Callable[..., Any]:
    call = component.run_forward or default_run_forward

    def run_forward(
        batch_size: int = 2,
        seq_len: int = 16,
        partial_mask: bool = False,
        *,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if input_ids is None or attention_mask is None:
            input_ids, attention_mask = make_lm_inputs(batch_size, seq_len, vocab_size, partial_mask, pad_token_id=pad)
        return call(model, input_ids, attention_mask)

    return run_forward


def example_rows(tokenizer: Any, role: str) -> list[dict[str, list[int]]]:
    """Dataset rows of different lengths (one long enough to be truncated) for a collator ``role``: the rows
    the core's datamodules hand collators (``{input_ids}`` for ``lm``, else ``{prompt_ids, input_ids}``)."""
    gen = torch.Generator().manual_seed(_SEED)
    first, last = len(tokenizer) - 50, len(tokenizer)  # ordinary (non-special) tokens of the core tokenizer

    def ids(n: int) -> list[int]:
        return torch.randint(first, last, (n,), generator=gen).tolist()

    if role == "lm":
        return [{"input_ids": ids(n)} for n in (20, 3, 6)]
    return [{"prompt_ids": ids(p), "input_ids": ids(t)} for p, t in ((9, 3), (2, 10), (4, 5))]


def _build(component: Component, **runtime: Any) -> Any:
    torch.manual_seed(_SEED)
    try:
        return component.build(**runtime)
    except Exception as exc:  # the family's constructor may raise anything
        hint = "" if component.tiny is not None else " (register it as Component(cls, tiny={...small kwargs...}))"
        raise _BuildError(
            f"could not build a small {component.kind} {component.target}: {type(exc).__name__}: {exc}{hint}"
        ) from exc


def _first(components: tuple[Component, ...] | list[Component], what: str) -> Component:
    if not components:
        raise _BuildError(f"the family registers no {what}")
    return components[0]


class _Context:
    """Runtime objects shared by every check: the core tokenizer and the family's declared names."""

    def __init__(self, family: FamilyInfo) -> None:
        self.family = family
        self.names = family.names
        self.tokenizer = SimpleSpaceTokenizer.for_numbers(50)
        self.vocab_size = len(self.tokenizer)

    def model(self, component: Component | None = None) -> torch.nn.Module:
        component = component or _first(self.family.components.models, "model")
        return _build(component, **model_runtime_kwargs(component.obj, self.tokenizer))

    def collator(self, component: Component) -> Any:
        return _build(component, tokenizer=self.tokenizer)

    def batch(self, roles: tuple[str, ...]) -> dict[str, Any]:
        for role in roles:
            found = self.family.components.collators_for(role)
            if found:
                try:
                    return self.collator(found[0])(example_rows(self.tokenizer, role))
                except _BuildError:
                    raise
                except Exception as exc:
                    raise _BuildError(
                        f"collator {found[0].target} failed on example rows: {type(exc).__name__}: {exc}"
                    ) from exc
        raise _BuildError(f"the family registers no collator with role {' or '.join(roles)} to make a batch")

    def subjects(self) -> Iterator[tuple[str, Component, Callable[[], Any], frozenset[str]]]:
        """``(kind, component, make_subject, capabilities)`` for every registered component."""
        comps = self.family.components
        for c in comps.models:

            def model_subject(c: Component = c) -> ModelSubject:
                model = self.model(c)
                pad = self.tokenizer.pad_token_id
                return ModelSubject(
                    model, _run_forward_fixture(model, c, self.vocab_size, pad), self.vocab_size, pad_token_id=pad
                )

            yield "model", c, model_subject, c.capabilities
        for c in comps.losses:

            def loss_subject(c: Component = c) -> LossSubject:
                loss_fn = _build(c, model=self.model(), tokenizer=self.tokenizer)
                return LossSubject(loss_fn, self.batch(("seq2seq", "lm")), self.vocab_size, names=self.names)

            yield "loss", c, loss_subject, frozenset()
        for c in comps.collators:

            def collator_subject(c: Component = c) -> CollatorSubject:
                collator = self.collator(c)
                return CollatorSubject(
                    collator,
                    example_rows(self.tokenizer, c.role or "lm"),
                    default_block_size(collator),
                    vocab_size=self.vocab_size,
                    role=c.role,
                    names=self.names,
                )

            yield "collator", c, collator_subject, frozenset()
        for c in comps.predictors:

            def predictor_subject(c: Component = c) -> PredictorSubject:
                predictor = _build(c, model=self.model(), tokenizer=self.tokenizer)
                return PredictorSubject(predictor, self.batch(("prediction",)), self.vocab_size, names=self.names)

            yield "predictor", c, predictor_subject, frozenset()


def _run_one(check: Any, make_subject: Callable[[], Any]) -> tuple[Status, str]:
    try:
        check(make_subject())
    except NotApplicable as exc:
        return "skipped", str(exc)
    except AssertionError as exc:
        return "failed", str(exc) or "assertion failed"
    except _BuildError as exc:
        return "error", str(exc)
    except Exception as exc:  # a component crashing inside a check is a failure of that component
        frame = traceback.extract_tb(exc.__traceback__)[-1]
        return "error", f"{type(exc).__name__}: {exc} (at {frame.filename}:{frame.lineno})"
    return "passed", ""


def _config_results(family: FamilyInfo, families: dict[str, FamilyInfo]) -> Iterator[CheckResult]:
    from xlm_core.config.compose import compose_config
    from xlm_core.config.targets import check_component_targets

    for experiment in family.experiments:
        try:
            cfg = compose_config(family, [f"experiment={experiment}"])
        except Exception as exc:  # Hydra composition errors of the family's own configs
            yield CheckResult(
                "config",
                f"experiment={experiment}",
                "check_experiment_composes",
                "failed",
                f"{type(exc).__name__}: {str(exc).splitlines()[0]}",
            )
            continue
        errors, notes = check_component_targets(cfg, family, families)
        status: Status = "failed" if errors else "passed"
        yield CheckResult(
            "config", f"experiment={experiment}", "check_experiment_targets", status, "; ".join(errors or notes)
        )


def check_family(
    family: FamilyInfo, families: dict[str, FamilyInfo] | None = None, configs: bool = True
) -> list[CheckResult]:
    """Run every applicable check on every registered component of ``family`` (and its experiments)."""
    results: list[CheckResult] = []
    if not family.components:
        return [
            CheckResult(
                "family",
                family.name,
                "check_components_registered",
                "failed",
                "the family registers no components; pass models=, losses=, collators=, predictors= "
                "to register() (docs/plugins.md)",
            )
        ]
    ctx = _Context(family)
    quiet = logging.getLogger("xlm_core.data.padding")  # the tiny inputs are truncated on purpose
    level, quiet.level = quiet.level, logging.ERROR
    try:
        for kind, component, make_subject, caps in ctx.subjects():
            for check in checks_for(kind, caps):  # type: ignore[arg-type]
                status, message = _run_one(check, make_subject)
                results.append(CheckResult(kind, component.target, check.name, status, message))
    finally:
        quiet.setLevel(level)
    if configs:
        results.extend(_config_results(family, families or {family.name: family}))
    return results


def format_results(family: str, results: list[CheckResult]) -> str:
    """A summary table (one line per check), the failure messages, and a count line."""
    width = max([len(r.component) for r in results] + [9])
    lines = [f"xlm check {family}", f"{'kind':<10} {'component':<{width}} {'check':<40} result"]
    for r in results:
        lines.append(f"{r.kind:<10} {r.component:<{width}} {r.check:<40} {r.status.upper()}")
    problems = [r for r in results if r.status in ("failed", "error")]
    if problems:
        lines.append("")
        lines += [f"{r.status.upper()} {r.check} on {r.component}: {r.message}" for r in problems]
    counts = {s: sum(r.status == s for r in results) for s in ("passed", "failed", "error", "skipped")}
    lines.append("")
    lines.append(", ".join(f"{n} {s}" for s, n in counts.items()) + (" -> FAILED" if problems else " -> OK"))
    return "\n".join(lines)
