"""`xlm new-family`: the scaffolded package is complete, refuses bad names and existing directories, and its
components pass `xlm check`, train and generate through the CLI (in-process, on the debug data). Installed from
wheels, with evaluation and the family's own tests: tests/integration/test_scaffold_family.py."""

from __future__ import annotations

import json
import re
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml

from xlm_core.cli import main
from xlm_core.errors import UsageError
from xlm_core.plugin.manager import reset_registry
from xlm_core.scaffold import placeholders, render_files, scaffold_family

NAME = "scaffoldtest"
PACKAGE = f"xlm_{NAME}"
EXPECTED_FILES = {
    "README.md",
    "conftest.py",
    "pyproject.toml",
    f"tests/test_{NAME}.py",
    *(f"{PACKAGE}/{m}.py" for m in ("__init__", "collators", "loss", "model", "plugin", "predictor")),
    *(
        f"{PACKAGE}/configs/{c}.yaml"
        for c in (
            f"collator/prediction_{NAME}",
            f"collator/seq2seq_{NAME}",
            f"experiment/star_easy_{NAME}",
            f"model/rotary_transformer_{NAME}",
            f"model_type/{NAME}",
        )
    ),
}


@pytest.fixture
def family_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The family scaffolded into tmp and importable (its modules are forgotten afterwards)."""
    root = scaffold_family(NAME, tmp_path / f"xlm-{NAME}")
    monkeypatch.syspath_prepend(str(root))
    yield root
    for module in [m for m in sys.modules if m == PACKAGE or m.startswith(f"{PACKAGE}.")]:
        del sys.modules[module]


def test_the_package_holds_every_file_with_the_placeholders_filled(family_root: Path) -> None:
    written = {p.relative_to(family_root).as_posix() for p in family_root.rglob("*") if p.is_file()}
    assert written == EXPECTED_FILES
    for relative in written:
        text = (family_root / relative).read_text()
        assert not re.search(r"__[A-Z][A-Z_]*__", text), f"{relative} keeps a placeholder"
        if relative.endswith(".py"):
            compile(text, relative, "exec")
        elif relative.endswith(".yaml"):
            yaml.safe_load(text)
    project = tomllib.loads((family_root / "pyproject.toml").read_text())
    assert project["project"]["name"] == f"xlm-{NAME}"
    assert project["project"]["entry-points"]["xlm"] == {NAME: f"{PACKAGE}.plugin"}
    assert project["project"]["dependencies"] == [placeholders(NAME)["__CORE_REQUIREMENT__"]]


def test_class_names_are_camel_case_of_the_family_name() -> None:
    assert placeholders("my_lm")["__CLASS__"] == "MyLm"
    assert "class MyLmModel(RotaryNetwork):" in render_files("my_lm")["xlm_my_lm/model.py"]


@pytest.mark.parametrize("name", ["", "MyLM", "1lm", "my-lm", "my lm", "x" * 33, "core", "arlm"])
def test_bad_or_taken_names_are_one_line_usage_errors(name: str, tmp_path: Path) -> None:
    with pytest.raises(UsageError) as info:
        scaffold_family(name, tmp_path / "out")
    assert repr(name) in str(info.value) or f"xlm_{name}" in str(info.value)
    assert "\n" not in str(info.value) and not (tmp_path / "out").exists()


def test_an_existing_directory_is_never_overwritten(tmp_path: Path) -> None:
    target = tmp_path / "taken"
    target.mkdir()
    (target / "mine.txt").write_text("keep")
    with pytest.raises(UsageError, match="already exists"):
        scaffold_family(NAME, target)
    assert [p.name for p in target.iterdir()] == ["mine.txt"]


def test_new_family_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["new-family", NAME, "--dir", str(tmp_path / "fam")]) == 0
    out = capsys.readouterr().out
    assert f"Created family '{NAME}' in {tmp_path / 'fam'}" in out and f"xlm check {NAME}" in out
    assert (tmp_path / "fam" / PACKAGE / "plugin.py").is_file()
    assert main(["new-family", "Bad-Name"]) == 2
    assert capsys.readouterr().err.startswith("xlm: error: invalid family name 'Bad-Name'")


@pytest.fixture
def installed(family_root: Path) -> Iterator[Path]:
    """The scaffolded family seen as an installed distribution (a dist-info with its entry point)."""
    info = family_root / f"{PACKAGE}-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: xlm-{NAME}\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text(f"[xlm]\n{NAME} = {PACKAGE}.plugin\n")
    reset_registry()
    yield family_root
    reset_registry()


def test_the_scaffolded_family_passes_xlm_check(installed: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", NAME]) == 0
    out = capsys.readouterr().out
    assert out.rstrip().endswith("-> OK") and f"experiment=star_easy_{NAME}" in out
    assert main(["check", NAME, "--json", "--no-configs"]) == 0
    results = json.loads(capsys.readouterr().out)["results"]
    assert len(results) >= 20 and {r["status"] for r in results} == {"passed"}
    assert not [r for r in results if r["kind"] == "config"]


def test_the_scaffolded_family_trains_and_generates(installed: Path, tmp_path: Path) -> None:
    run = [
        f"family={NAME}",
        f"experiment=star_easy_{NAME}",
        "debug=overfit",
        f"paths.root_dir={tmp_path}",
        "model.d_model=32",
        "model.dim_feedforward=64",
        "trainer.max_steps=2",
        "trainer.val_check_interval=2",
        "checkpointing.every_n_steps=2",
        "predictor.max_new_tokens=3",
    ]
    assert main(run) == 0
    run_dir = tmp_path / "outputs" / f"star_easy_{NAME}"
    assert {p.name for p in (run_dir / "checkpoints").iterdir()} >= {"best.ckpt", "last.ckpt"}
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert {"val/lm/loss", "val/prediction/exact_match", "val/prediction/token_accuracy"} <= set(metrics)
    assert main([*run, "job_type=generate", '+prompts=["0 1 1 2 0 3"]']) == 0
    (generation,) = (run_dir / "generate").iterdir()
    (row,) = [json.loads(line) for line in (generation / "predictions/predict/prompts/step_2.jsonl").open()]
    assert row["prompt"] == "0 1 1 2 0 3" and isinstance(row["text"], str)


def test_the_scaffolded_model_stays_causal_with_both_position_aids(family_root: Path) -> None:
    """The scaffold's model is a RotaryNetwork: with absolute positions and causal neighbour mixing on, a later
    token still changes no earlier logit, and the logits are lm_head(forward_hidden) (the fused loss's input)."""
    from xlm_scaffoldtest.model import ScaffoldtestModel

    torch.manual_seed(0)
    model = ScaffoldtestModel(
        12, d_model=16, num_layers=2, nhead=2, max_length=8, absolute_positions=True, neighbour_mixing="causal"
    ).eval()
    assert model.embed_positions is not None and model.neighbour_mixing is not None
    x = torch.tensor([[3, 4, 5, 6, 7]])
    changed = x.clone()
    changed[0, 3] = 9
    logits, logits_changed = model(x), model(changed)
    torch.testing.assert_close(logits[:, :3], logits_changed[:, :3])
    assert not torch.allclose(logits[:, 3:], logits_changed[:, 3:])
    torch.testing.assert_close(logits, model.lm_head(model.forward_hidden(x)))
    with pytest.raises(ValueError, match="bidirectional"):
        ScaffoldtestModel(12, d_model=16, nhead=2, neighbour_mixing="bidirectional")


def test_the_scaffolded_loss_is_the_mean_next_token_cross_entropy(family_root: Path) -> None:
    """The loss (through the fused head, the model having forward_hidden) is the hand-computed mean NLL of the
    scored tokens, and equals the cross-entropy of the model's logits."""
    from xlm_scaffoldtest.loss import ScaffoldtestLoss
    from xlm_scaffoldtest.model import ScaffoldtestModel

    torch.manual_seed(0)
    model = ScaffoldtestModel(12, d_model=16, num_layers=1, nhead=2, max_length=8)
    batch = {
        "input_ids": torch.tensor([[1, 3, 4, 5], [1, 6, 7, 0]]),
        "attention_mask": torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]]),
        "target_ids": torch.tensor([[-100, 4, 5, 2], [-100, 7, 2, -100]]),
    }
    logits = model(batch["input_ids"], batch["attention_mask"].bool()).float()
    expected = [-logits.log_softmax(-1)[r, i, t] for r, i, t in ((0, 1, 4), (0, 2, 5), (0, 3, 2), (1, 1, 7), (1, 2, 2))]
    out = ScaffoldtestLoss(model=model)(batch)
    torch.testing.assert_close(out["loss"], torch.stack(expected).mean())
    torch.testing.assert_close(out["nlls"], torch.stack(expected).detach())
    torch.testing.assert_close(out["batch_loss"], torch.stack([sum(expected[:3]) / 3, sum(expected[3:]) / 2]))
    unfused = F.cross_entropy(logits.transpose(1, 2), batch["target_ids"], ignore_index=-100)
    torch.testing.assert_close(out["loss"], unfused)
