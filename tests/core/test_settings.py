"""RunSettings: a job's precision, clipping, monitor and resume command resolved once from the config."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from xlm_core.run.invocation import record_invocation
from xlm_core.training import precision as P
from xlm_core.training.settings import Monitor, lightning_precision, run_settings

REPO = Path(__file__).resolve().parents[2]


def _cfg(tmp_path: Path, **over: object) -> object:
    base = {
        "trainer": {"precision": "auto", "accelerator": "cpu", "gradient_clip_val": 1.0},
        "paths": {"run_dir": str(tmp_path / "run")},
        "monitor": "val/lm/loss",
        "monitor_mode": "min",
    }
    return OmegaConf.merge(OmegaConf.create(base), OmegaConf.create(dict(over)))


@pytest.mark.parametrize(
    "native, precision, dtype, clipping",
    [
        (True, "bf16-mixed", torch.bfloat16, "trainer.precision=bf16-mixed with trainer.gradient_clip_val=1.0"),
        (False, "32-true", None, None),
    ],
)
def test_auto_precision_is_resolved_once_with_what_follows_from_it(
    monkeypatch, tmp_path, native, precision, dtype, clipping
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(P, "cpu_has_native_bf16", lambda: native)
    s = run_settings(_cfg(tmp_path))
    assert (s.precision, s.autocast_dtype, s.amp_clipping, s.device_type) == (precision, dtype, clipping, "cpu")
    assert s.precision_note == f"{precision} (auto: {'native' if native else 'no native'} bf16 on this CPU)"
    assert s.run_dir == tmp_path / "run"


@pytest.mark.parametrize(
    "given, named",
    [(32, "32-true"), ("32", "32-true"), ("bf16", "bf16-mixed"), ("16-mixed", "16-mixed"), ("64", "64-true")],
)
def test_explicit_precisions_get_lightnings_names(given, named) -> None:
    assert lightning_precision(given) == named


def test_no_clipping_no_amp_clipping(tmp_path) -> None:
    s = run_settings(_cfg(tmp_path, trainer={"precision": "bf16-mixed", "gradient_clip_val": None}))
    assert s.precision == "bf16-mixed" and s.gradient_clip_val is None and s.amp_clipping is None


def test_monitor_and_mode(tmp_path) -> None:
    assert run_settings(_cfg(tmp_path, monitor="val/prediction/exact_match", monitor_mode="max")).monitor == Monitor(
        "val/prediction/exact_match", "max"
    )
    assert run_settings(_cfg(tmp_path, monitor=None)).monitor is None


def test_the_resume_command_is_the_recorded_invocation(monkeypatch, tmp_path) -> None:
    monkeypatch.delenv("XLM_INVOCATION", raising=False)
    assert run_settings(_cfg(tmp_path)).resume_command == "the same xlm command"
    record_invocation(["family=arlm", "job_name=my run"])
    assert run_settings(_cfg(tmp_path)).resume_command == "xlm family=arlm 'job_name=my run'"


def test_no_job_imports_the_cli() -> None:
    """Jobs run under the CLI; importing it back would make them depend on their caller."""
    for path in sorted((REPO / "xlm_core" / "jobs").glob("*.py")):
        tree = ast.parse(path.read_text())
        imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        assert not {m for m in imported if m == "xlm_core.cli" or m.startswith("xlm_core.cli.")}, path


def test_unused_path_never_names_an_existing_file(tmp_path) -> None:
    from xlm_core.run.fileio import unused_path

    f = tmp_path / "best.val_lm_loss-min.ckpt"
    assert unused_path(f) == f
    f.write_text("x")
    (tmp_path / "best.val_lm_loss-min-2.ckpt").write_text("x")
    assert unused_path(f) == tmp_path / "best.val_lm_loss-min-3.ckpt"
    d = tmp_path / "run.replaced-20261203-120000"
    d.mkdir()
    assert unused_path(d, keep_suffix=False) == tmp_path / "run.replaced-20261203-120000-2"
