"""A family that names its batch keys, its prediction output and its metric group its own way (the "r2l" test
family: ``tokens`` / ``loss_mask`` / ``labels``, ``predict()["seq"]``, metrics under ``{split}/r2l/...``) passes
``xlm check`` and trains through the real CLI, because it declared those names when it registered."""

from __future__ import annotations

import json
import types
from collections.abc import Callable
from pathlib import Path

import pytest

from xlm_core.cli import main
from xlm_core.plugin.hookspecs import hookimpl
from xlm_core.plugin.manager import load_families
from xlm_core.testing.family_check import check_family

R2L = ["family=r2l", "experiment=r2l_star", "debug=overfit"]


def test_xlm_check_passes_with_the_declared_names(
    install_families: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    install_families("xlm-clitest-r2l")
    assert main(["check", "r2l"]) == 0, capsys.readouterr().out
    out = capsys.readouterr().out
    for check in (
        "check_loss_changes_with_targets",
        "check_collator_padding",
        "check_predictor_ids_in_vocab",
        "check_greedy_deterministic",
        "check_experiment_targets",
    ):
        assert any(check in line and line.endswith("PASSED") for line in out.splitlines()), out
    assert "-> OK" in out
    assert main(["families", "--verbose"]) == 0
    assert (
        "  names: token_key=tokens, mask_key=loss_mask, target_key=labels, predicted_ids_key=seq, ignore_index=-100"
        in capsys.readouterr().out
    )


def test_without_the_declared_names_the_checks_fail_saying_how_to_declare_them(
    install_families: Callable[..., Path],
) -> None:
    install_families()
    from xlm_clitest import r2l_plugin

    @hookimpl
    def register_families(register):  # the same family, registered without names=
        r2l_plugin.register_families(lambda names, **kwargs: register(**kwargs))

    module = types.ModuleType("undeclared")
    module.register_families = register_families
    registry = load_families(modules={"undeclared": module})
    results = check_family(registry.get("r2l"), configs=False)
    assert not [r for r in results if r.status == "error"]  # failed with a message, not crashed with a KeyError
    failures = {(r.check, r.component.rsplit(".", 1)[1]): r.message for r in results if r.status == "failed"}
    assert "FamilyNames(target_key=...)" in failures[("check_loss_changes_with_targets", "R2LLoss")]
    assert "FamilyNames(token_key=...)" in failures[("check_collator_shapes", "R2LCollator")]
    for check in ("check_predictor_ids_in_vocab", "check_greedy_deterministic"):
        assert "predict() output has no 'ids'" in failures[(check, "R2LPredictor")]
        assert "FamilyNames(predicted_ids_key=...)" in failures[(check, "R2LPredictor")]


def test_trains_with_its_own_names_metric_group_and_a_real_throughput(
    install_families: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    install_families("xlm-clitest-r2l")
    assert main([*R2L, f"paths.root_dir={tmp_path}", "progress_every_n_steps=1"]) == 0
    out = capsys.readouterr().out
    metrics = json.loads((tmp_path / "outputs" / "r2l_star" / "metrics.json").read_text())
    assert metrics["step"] == 4
    assert {"val/r2l/exact_match", "val/r2l/token_accuracy", "val/r2l/token_nll", "val/lm/loss"} <= set(metrics)
    assert not [k for k in metrics if "/prediction/" in k]
    assert metrics["tokens_per_second"] > 0
    assert "throughput: n/a" not in out and " 0 tok/s" not in out
    assert (tmp_path / "outputs" / "r2l_star" / "checkpoints" / "best.ckpt").is_file()  # monitor: val/r2l/...


@pytest.mark.parametrize(
    "override, message",
    [
        (
            "reported_metrics.r2l.exact_match.kind=r2l",
            "reported_metrics.r2l.exact_match.kind: 'r2l' is not a dataloader kind; use kind: prediction",
        ),
        (
            "~reported_metrics.r2l.exact_match.kind",
            "reported_metrics.r2l.exact_match: group 'r2l' is not a dataloader kind, so say which dataloaders feed it",
        ),
    ],
)
def test_a_bad_metric_kind_is_a_one_line_config_error(
    install_families: Callable[..., Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    override: str,
    message: str,
) -> None:
    install_families("xlm-clitest-r2l")
    assert main([*R2L, f"paths.root_dir={tmp_path}", override]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"xlm: error: {message}"), err
    assert "bug" not in err[0] and not (tmp_path / "outputs" / "r2l_star" / "checkpoints").exists()
