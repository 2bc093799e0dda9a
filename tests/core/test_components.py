"""Components registered through the plugin: validation against the protocols, plugin isolation,
the listing, config targets of another family, and `xlm check` on good and broken families."""

from __future__ import annotations

import json
import sys
from importlib import metadata
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import torch
from omegaconf import OmegaConf

sys.path.append(str(Path(__file__).resolve().parents[1]))  # tests/: home of the testing_family package

from testing_family import broken  # noqa: E402
from testing_family.collator import TinyCollator, TinyPromptCollator  # noqa: E402
from testing_family.loss import TinyLoss  # noqa: E402
from testing_family.model import TinyCausalLM  # noqa: E402
from testing_family.predictor import TinyGreedyPredictor  # noqa: E402

from xlm_core.cli import main  # noqa: E402
from xlm_core.config.targets import check_component_targets
from xlm_core.plugin.components import Component, validate_components
from xlm_core.plugin.hookspecs import hookimpl
from xlm_core.plugin.manager import get_family, load_families
from xlm_core.plugin.protocols import ARLMModel
from xlm_core.testing.family_check import check_family, format_results  # noqa: E402

CAUSAL = {"causal", "kv_cache", "key_padding"}


def tiny_components(
    model: type = TinyCausalLM,
    loss: type = TinyLoss,
    predictor: type = TinyGreedyPredictor,
    collator: type = TinyCollator,
) -> dict[str, Any]:
    """Keyword arguments of register() for the tiny test family (with its tiny factories)."""
    return dict(
        models=[
            Component(model, tiny=lambda num_embeddings, padding_idx=None: model(num_embeddings), capabilities=CAUSAL)
        ],
        losses=[loss],
        collators=[
            Component(collator, role="lm", tiny=lambda tokenizer: collator(tokenizer, 6)),
            Component(TinyPromptCollator, role="prediction", tiny=dict(block_size=6)),
        ],
        predictors=[Component(predictor, tiny=lambda model, tokenizer: predictor(model, tokenizer, 4))],
    )


def plugin(name: str, config_dir: Path, **components: Any) -> ModuleType:
    @hookimpl
    def register_families(register):
        register(name=name, config_dir=str(config_dir), description="test family", **components)

    module = ModuleType(f"plugin_{name}")
    module.register_families = register_families
    return module


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    (tmp_path / "cfg" / "model").mkdir(parents=True)
    (tmp_path / "cfg" / "model" / "tiny.yaml").write_text("d_model: 8\n")
    return tmp_path / "cfg"


# --- validation at registration ------------------------------------------------------------------
def test_registered_components_are_listed_by_kind(config_dir: Path) -> None:
    reg = load_families(modules={"p": plugin("tiny", config_dir, **tiny_components())})
    assert reg.errors == ()
    comps = reg.get("tiny").components
    assert [c.target for c in comps.models] == ["testing_family.model.TinyCausalLM"]
    assert comps.models[0].capabilities == frozenset(CAUSAL)
    assert [c.role for c in comps.collators] == ["lm", "prediction"]
    assert set(comps.by_target()) == {
        "testing_family.model.TinyCausalLM",
        "testing_family.loss.TinyLoss",
        "testing_family.collator.TinyCollator",
        "testing_family.collator.TinyPromptCollator",
        "testing_family.predictor.TinyGreedyPredictor",
    }


class _NoDecaySplit(torch.nn.Module):
    def forward(self, x_t, attention_mask=None, positions=None):  # pragma: no cover - never called
        return x_t


class _TwoArgARLM(TinyCausalLM):
    def forward(self, x_t):  # type: ignore[override]  # drops the mask and positions
        return super().forward(x_t)


class _NoPredict:
    def to_dict(self, batch, preds, batch_idx=None, dataloader_idx=None, dataloader_name=None):
        return []


@pytest.mark.parametrize(
    "components, message",
    [
        (dict(models=[_NoDecaySplit]), "does not satisfy Model: it has no get_named_params_for_weight_decay()"),
        (
            dict(model_protocol=ARLMModel, models=[_TwoArgARLM]),
            "_TwoArgARLM.forward does not take the 4 positional argument(s) of ARLMModel.__call__",
        ),
        (
            dict(models=[Component(TinyCausalLM, capabilities={"bidirectional"})]),
            "unknown capabilities ['bidirectional']",
        ),
        (dict(predictors=[_NoPredict]), "does not satisfy Predictor: it has no predict()"),
        (dict(collators=[TinyCollator]), "role=None; give one of lm, seq2seq, prediction"),
        (dict(metrics=[lambda batch: {}]), "must take (batch, outputs, tokenizer=None)"),
        (dict(model_protocol=int), "model_protocol must be a typing.Protocol class"),
        (dict(lossses=[TinyLoss]), "unknown argument(s) ['lossses']"),
    ],
)
def test_a_component_breaking_its_protocol_is_a_plugin_error(config_dir: Path, components: dict, message: str) -> None:
    good = plugin("good", config_dir, **tiny_components())
    reg = load_families(modules={"bad": plugin("bad", config_dir, **components), "good": good})
    assert list(reg.families) == ["good"]  # the broken family is dropped, the other kept
    (error,) = reg.errors
    assert error.plugin == "bad" and error.error.startswith("family 'bad': ") and message in error.error


@pytest.mark.parametrize("where", ["import", "register"])
def test_a_plugin_calling_sys_exit_is_reported_and_others_keep_working(
    config_dir: Path, where: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if where == "import":
        sources = {"good": plugin("good", config_dir)}
        eps = [_entry_point(tmp_path, monkeypatch, "exits", "import sys\nsys.exit(3)\n")]
        reg = load_families(eps, modules=sources)
    else:

        @hookimpl
        def register_families(register):
            sys.exit("bye")

        module = ModuleType("exits")
        module.register_families = register_families
        reg = load_families(modules={"exits": module, "good": plugin("good", config_dir)})
    assert list(reg.families) == ["good"]
    (error,) = reg.errors
    assert error.plugin == "exits" and "SystemExit(" in error.error and "must not exit the process" in error.error


def test_keyboard_interrupt_in_a_plugin_is_not_swallowed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(KeyboardInterrupt):
        load_families([_entry_point(tmp_path, monkeypatch, "ctrl-c", "raise KeyboardInterrupt\n")])


def _entry_point(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, source: str) -> metadata.EntryPoint:
    """A real ``xlm`` entry point whose plugin module runs ``source`` when imported."""
    module = f"xlm_test_plugin_{name.replace('-', '_')}"
    (tmp_path / f"{module}.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    return metadata.EntryPoint(name=name, value=module, group="xlm")


def test_validate_components_accepts_the_arlm_registration() -> None:
    arlm = get_family("arlm").components
    assert arlm.model_protocol is ARLMModel and arlm.models[0].capabilities == frozenset(CAUSAL)
    assert validate_components(model_protocol=ARLMModel, models=arlm.models).models == arlm.models


# --- listing -----------------------------------------------------------------------------------------
def test_families_verbose_and_json_list_components(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["families", "--verbose"]) == 0
    out = capsys.readouterr().out
    block = out.split("arlm  (xlm-arlm", 1)[1]
    assert "  model protocol: ARLMModel" in block
    assert (
        "    xlm_arlm.model_arlm.RotaryTransformerARLMModel [capabilities=causal,key_padding,kv_cache; tiny]" in block
    )
    assert "    xlm_arlm.collators_arlm.ARLMSeq2SeqPredCollator [role=prediction; tiny]" in block
    assert main(["families", "--json", "--verbose"]) == 0
    (arlm,) = [f for f in json.loads(capsys.readouterr().out)["families"] if f["name"] == "arlm"]
    assert arlm["components"]["losses"] == ["xlm_arlm.loss_arlm.ARLMLoss"]
    assert "xlm_core.kit.metrics.exact_match_update_fn" in arlm["components"]["metrics"]
    assert "xlm_arlm.metrics_arlm.valid_tokens_metric_update_fn" in arlm["components"]["metrics"]


# --- config targets ----------------------------------------------------------------------------------
def test_a_target_of_another_family_is_an_error_and_an_unregistered_one_a_note(config_dir: Path) -> None:
    reg = load_families(modules={"p": plugin("tiny", config_dir, **tiny_components())})
    families = {"tiny": reg.get("tiny"), "arlm": get_family("arlm")}
    cfg = OmegaConf.create(
        {
            "model": {"_target_": "xlm_arlm.model_arlm.RotaryTransformerARLMModel"},
            "loss": {"_target_": "mypackage.MyLoss"},
            "predictor": {"_target_": "testing_family.predictor.TinyGreedyPredictor"},
            "collator": {"train": {"_target_": "xlm_core.somewhere.SharedCollator"}},
        }
    )
    errors, notes = check_component_targets(cfg, families["tiny"], families)
    assert errors == [
        "model._target_=xlm_arlm.model_arlm.RotaryTransformerARLMModel is a model of family 'arlm', "
        "not of family 'tiny'; use family=arlm or one of tiny's own models; family 'tiny' registers: "
        "testing_family.model.TinyCausalLM"
    ]
    assert notes == [
        "loss._target_=mypackage.MyLoss is not a registered component of family 'tiny' "
        "(`xlm families --verbose` lists them); it runs without `xlm check` having checked it"
    ]


def test_the_cli_refuses_a_model_of_another_family(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], install_mixing_family: None
) -> None:
    code = main(["family=mixer", "experiment=uses_arlm_model", f"paths.root_dir={tmp_path}"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith(
        "xlm: error: model._target_=xlm_arlm.model_arlm.RotaryTransformerARLMModel "
        "is a model of family 'arlm', not of family 'mixer'"
    )
    assert not (tmp_path / "outputs" / "uses_arlm_model" / "config.yaml").exists()


@pytest.fixture
def install_mixing_family(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, config_dir: Path) -> None:
    """A family 'mixer' whose experiment builds ARLM's model; registered through a real entry point."""
    (config_dir / "experiment").mkdir()
    (config_dir / "experiment" / "uses_arlm_model.yaml").write_text(
        "# @package _global_\nmodel: {_target_: xlm_arlm.model_arlm.RotaryTransformerARLMModel}\n"
    )
    site = tmp_path / "site"
    (site / "xlm_mixer-0.1.dist-info").mkdir(parents=True)
    (site / "xlm_mixer-0.1.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: xlm-mixer\nVersion: 0.1\n")
    (site / "xlm_mixer-0.1.dist-info" / "entry_points.txt").write_text("[xlm]\nmixer = xlm_mixer_plugin\n")
    (site / "xlm_mixer_plugin.py").write_text(
        f"import sys\nsys.path.append({str(Path(__file__).resolve().parents[1])!r})\n"
        "from xlm_core.plugin.hookspecs import hookimpl\nfrom testing_family.loss import TinyLoss\n"
        "@hookimpl\ndef register_families(register):\n"
        f"    register(name='mixer', config_dir={str(config_dir)!r}, losses=[TinyLoss], api_version='1.0')\n"
    )
    monkeypatch.syspath_prepend(str(site))
    from xlm_core.plugin.manager import reset_registry

    reset_registry()
    yield
    reset_registry()
    sys.modules.pop("xlm_mixer_plugin", None)


# --- xlm check -----------------------------------------------------------------------------------------
def test_check_family_passes_the_tiny_family_and_names_each_check(config_dir: Path) -> None:
    reg = load_families(modules={"p": plugin("tiny", config_dir, **tiny_components())})
    results = check_family(reg.get("tiny"), configs=False)
    assert {r.status for r in results} == {"passed"}
    assert {(r.kind, r.check) for r in results} >= {
        ("model", "check_causal"),
        ("model", "check_kv_cache_matches_full_forward"),
        ("loss", "check_loss_ignores_ignored_targets"),
        ("collator", "check_collator_padding"),
        ("predictor", "check_greedy_deterministic"),
    }
    assert format_results("tiny", results).endswith("-> OK")


def test_check_family_fails_a_broken_family_with_the_reason(config_dir: Path) -> None:
    comps = tiny_components(model=broken.FutureLeakingLM, loss=broken.IgnoredTargetScoringLoss)
    reg = load_families(modules={"p": plugin("leaky", config_dir, **comps)})
    failed = {r.check: r.message for r in check_family(reg.get("leaky"), configs=False) if r.status == "failed"}
    assert set(failed) == {"check_causal", "check_kv_cache_matches_full_forward", "check_loss_ignores_ignored_targets"}
    assert "sees the future" in failed["check_causal"]
    assert "scores ignored positions" in failed["check_loss_ignores_ignored_targets"]


def test_check_reports_a_component_it_cannot_build(config_dir: Path) -> None:
    reg = load_families(
        modules={"p": plugin("untiny", config_dir, models=[Component(TinyCausalLM)], losses=[TinyLoss])}
    )
    results = check_family(reg.get("untiny"), configs=False)
    assert all(r.status == "error" for r in results)
    assert "register it as Component(cls, tiny={...small kwargs...})" in results[0].message


def test_xlm_check_arlm_passes_and_exits_zero(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "arlm"]) == 0
    out = capsys.readouterr().out
    assert out.rstrip().endswith("0 failed, 0 error, 0 skipped -> OK")
    assert "config     experiment=star_hard_arlm" in out


def test_xlm_check_unknown_family_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "nope"]) == 2
    assert capsys.readouterr().err.startswith("xlm: error: unknown family 'nope'; installed families: ")
