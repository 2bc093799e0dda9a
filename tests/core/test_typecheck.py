"""Annotations are checked at run time: the suite's switch, TypedDict fields, and ``xlm check --jaxtyping``."""

# No ``from __future__ import annotations``: the TypedDict below must see its NotRequired field.
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any, NotRequired, TypedDict

import pytest
import torch
from jaxtyping import Bool, Integer, TypeCheckError, jaxtyped
from torch import Tensor as TT

from xlm_core.cli import main
from xlm_core.modules import build_attention_mask
from xlm_core.testing.typecheck import checker, unchecked


def test_the_suite_runs_with_annotations_checked(request: pytest.FixtureRequest) -> None:
    if not request.config.getoption("--typecheck-packages"):
        pytest.skip("checking is off (--typecheck-packages=)")
    float_mask = torch.ones(2, 3)
    with pytest.raises(TypeCheckError, match="attention_mask"):
        build_attention_mask(float_mask, 3)
    with unchecked():
        mask, _ = build_attention_mask(float_mask, 3)  # the function itself accepts any 0/1 mask
    assert mask.dtype == torch.bool


class _Batch(TypedDict):
    input_ids: Integer[TT, "batch seq_len"]
    attention_mask: Bool[TT, "batch seq_len"]
    metadata: NotRequired[dict[str, list[Any]]]


def _collate(ids: TT, mask: TT, **extra: Any) -> _Batch:
    return {"input_ids": ids, "attention_mask": mask, **extra}


def _first_ids(batch: _Batch | None, n: int) -> Integer[TT, "batch n"]:
    return (batch or {"input_ids": torch.zeros(1, n, dtype=torch.long)})["input_ids"][:, :n]


collate = jaxtyped(_collate, typechecker=checker)
first_ids = jaxtyped(_first_ids, typechecker=checker)
IDS, MASK = torch.zeros(2, 3, dtype=torch.long), torch.ones(2, 3, dtype=torch.bool)


def _reason(exc: pytest.ExceptionInfo[TypeCheckError]) -> str:
    """Our one-line reason, which jaxtyping's error carries as its cause."""
    return str(exc.value.__cause__)


def test_typed_dict_fields_are_checked_with_shared_dimensions() -> None:
    assert collate(IDS, MASK)["input_ids"] is IDS
    assert "metadata" in collate(IDS, MASK, metadata={"answer": ["1", "2"]})
    with pytest.raises(TypeCheckError) as exc:
        collate(IDS, MASK.long())
    assert "_Batch['attention_mask'] is Tensor torch.int64[2, 3]" in _reason(exc)
    with pytest.raises(TypeCheckError) as exc:
        collate(IDS, torch.ones(2, 4, dtype=torch.bool))  # seq_len 3 for input_ids, 4 for the mask
    assert "_Batch['attention_mask']" in _reason(exc)
    with pytest.raises(TypeCheckError) as exc:
        collate_without_mask(IDS)
    assert "_Batch lacks key(s) ['attention_mask']" in _reason(exc)


def _collate_without_mask(ids: TT) -> _Batch:
    return {"input_ids": ids}  # type: ignore[typeddict-item]


collate_without_mask = jaxtyped(_collate_without_mask, typechecker=checker)


def test_typed_dict_arguments_share_dimensions_with_the_return_value() -> None:
    assert first_ids({"input_ids": IDS, "attention_mask": MASK}, 2).shape == (2, 2)
    assert first_ids(None, 2).shape == (1, 2)
    with pytest.raises(TypeCheckError, match="parameter 'batch'"):
        first_ids({"input_ids": IDS, "attention_mask": torch.ones(3, 3, dtype=torch.bool)}, 2)


# --- xlm check --jaxtyping ------------------------------------------------------------------------
def test_xlm_check_jaxtyping_passes_on_arlm(capfd: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "arlm", "--jaxtyping"]) == 0
    out = capfd.readouterr().out
    assert out.rstrip().endswith("0 failed, 0 error, 0 skipped -> OK")
    assert "config     experiment=star_hard_arlm" in out


_SHAPEBUG_PLUGIN = '''
"""A family whose model mislabels its token ids as float: only a checked run notices."""
from importlib.resources import files

from jaxtyping import Float
from torch import Tensor as TT

from xlm_arlm.model_arlm import RotaryTransformerARLMModel
from xlm_core.plugin.components import Component
from xlm_core.plugin.hookspecs import hookimpl


class MislabelledModel(RotaryTransformerARLMModel):
    def forward(self, x_t: Float[TT, "batch seq_len"], attention_mask=None, positions=None, **kwargs):
        return super().forward(x_t, attention_mask, positions, **kwargs)


@hookimpl
def register_families(register):
    tiny = dict(d_model=16, num_layers=1, nhead=2, dim_feedforward=32, dropout=0.0, rotary_emb_dim=8, max_length=32)
    register(name="shapebug", config_dir=files("xlm_shapebug") / "configs",
             models=[Component(MislabelledModel, tiny=tiny, capabilities={"causal", "kv_cache", "key_padding"})])
'''


@pytest.mark.slow  # three interpreters importing torch and lightning
@pytest.mark.integration
def test_xlm_check_jaxtyping_finds_what_the_plain_check_misses(tmp_path: Path) -> None:
    site = tmp_path / "site"
    package = site / "xlm_shapebug"
    (package / "configs" / "model").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "plugin.py").write_text(textwrap.dedent(_SHAPEBUG_PLUGIN))
    (package / "configs" / "model" / "mislabelled.yaml").write_text("d_model: 16\n")
    info = site / "xlm_shapebug-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: xlm-shapebug\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text("[xlm]\nshapebug = xlm_shapebug.plugin\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}

    def xlm_check(*flags: str) -> subprocess.CompletedProcess[str]:
        code = "import sys; from xlm_core.cli import main; sys.exit(main(sys.argv[1:]))"
        return subprocess.run(
            [sys.executable, "-c", code, "check", "shapebug", "--no-configs", *flags],
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )

    plain = xlm_check()
    assert plain.returncode == 0, plain.stdout + plain.stderr
    checked = xlm_check("--jaxtyping")
    assert checked.returncode == 1, checked.stdout + checked.stderr
    assert "ERROR check_forward_output_shape" in checked.stdout
    assert "MislabelledModel.forward" in checked.stdout and "parameter 'x_t'" in checked.stdout
