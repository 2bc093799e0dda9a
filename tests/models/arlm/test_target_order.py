"""target_order: reverse writes the answer last to first in training rows, keeps the reference forward in
prediction batches, and the predictor turns generated answers back, so metrics compare forward answers."""

from __future__ import annotations

from importlib.resources import files

import hydra
import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from xlm_arlm.collators_arlm import ARLMSeq2SeqCollator, ARLMSeq2SeqPredCollator
from xlm_arlm.metrics_arlm import seq2seq_exact_match_update_fn
from xlm_arlm.predictor_arlm import ARLMPredictor
from xlm_core.data.simple_tokenizer import SimpleSpaceTokenizer
from xlm_core.kit.metrics import ExactMatch
from xlm_core.testing.typecheck import unchecked

TOK = SimpleSpaceTokenizer.for_numbers(50)
PAD, EOS, BOS = TOK.pad_token_id, TOK.eos_token_id, TOK.bos_token_id  # 0, 3, 4
X = -100
ROWS = [{"prompt_ids": [10, 11], "input_ids": [20, 21, 22]}, {"prompt_ids": [12], "input_ids": [30]}]
KW = dict(add_bos="output", add_eos=True, input_block_size=3, block_size=5)


def test_reverse_training_rows_hold_the_answer_last_to_first() -> None:
    batch = ARLMSeq2SeqCollator(TOK, target_order="reverse", **KW)(ROWS)
    assert batch["input_ids"].tolist() == [[10, 11, BOS, 22, 21, 20, EOS, PAD], [PAD, 12, BOS, 30, EOS, PAD, PAD, PAD]]
    assert batch["target_ids"].tolist() == [[X, X, 22, 21, 20, EOS, X, X], [X, X, 30, EOS, X, X, X, X]]
    forward = ARLMSeq2SeqCollator(TOK, **KW)(ROWS)
    assert forward["input_ids"][0].tolist() == [10, 11, BOS, 20, 21, 22, EOS, PAD]
    for key in ("attention_mask", "token_type_ids"):
        assert torch.equal(batch[key], forward[key])


def test_reverse_prediction_batches_keep_the_reference_forward_and_record_the_order() -> None:
    batch = ARLMSeq2SeqPredCollator(TOK, target_order="reverse", **KW)(ROWS)
    forward = ARLMSeq2SeqPredCollator(TOK, **KW)(ROWS)
    assert torch.equal(batch["input_ids"], forward["input_ids"])
    assert batch["target_ids"].tolist() == [[20, 21, 22, EOS, X], [30, EOS, X, X, X]]
    assert batch["metadata"] == {"target_order": ["reverse", "reverse"]}
    assert "metadata" not in forward


def test_bad_target_order_is_one_line() -> None:
    with unchecked(), pytest.raises(ValueError, match=r"^target_order='backwards' is not supported; use 'forward'"):
        ARLMSeq2SeqCollator(TOK, target_order="backwards", **KW)
    with unchecked(), pytest.raises(ValueError, match=r"^target_order must be 'forward' or 'reverse', got 'up'\.$"):
        ARLMPredictor(max_steps=4, max_length=None, tokenizer=TOK, target_order="up")


class Scripted(nn.Module):
    """Emits ``script[row][k]`` as the k-th generated token of each row (from the prompt length), then PAD-free EOS."""

    def __init__(self, script: list[list[int]], prompt_len: int) -> None:
        super().__init__()
        self.script, self.prompt_len = script, prompt_len
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, x_t, attention_mask=None, positions=None, token_type_ids=None):
        step = x_t.shape[1] - self.prompt_len  # full recomputation: the prefix grows by one per step
        tokens = torch.tensor([row[min(step, len(row) - 1)] for row in self.script])
        logits = torch.zeros(x_t.shape[0], x_t.shape[1], len(TOK))
        logits[:, -1] = nn.functional.one_hot(tokens, len(TOK)).float() * 10.0
        return logits


def test_predictor_turns_reversed_answers_back_so_exact_match_sees_the_forward_answer() -> None:
    batch = ARLMSeq2SeqPredCollator(TOK, target_order="reverse", **KW)(ROWS)
    # Row 0 generates the reversed answer then EOS; row 1 a wrong token and no EOS within 4 steps.
    model = Scripted([[22, 21, 20, EOS], [31, 30, 40, 41]], prompt_len=3)
    kw = dict(
        max_steps=4,
        max_length=None,
        tokenizer=TOK,
        sampling_method="sample_top_k",
        top_k=1,
        model=model,
        use_kv_cache=False,
    )
    out = ARLMPredictor(target_order="reverse", **kw).predict(batch)
    assert out["ids"][:, 3:].tolist() == [[20, 21, 22, EOS], [41, 40, 30, 31]]  # row 1: no EOS, all turned back
    assert out["text"][0] == "13 14 15"  # words 13..15 are ids 20..22
    metric = ExactMatch()
    metric.update(**seq2seq_exact_match_update_fn(batch, out, TOK))
    assert float(metric.compute()) == 0.5  # row 0 right (forward against the forward reference), row 1 wrong
    rows = ARLMPredictor(target_order="reverse", **kw).to_dict(batch, out)
    assert rows[0]["target_order"] == "reverse" and rows[0]["target"] == "13 14 15"
    with pytest.raises(
        ValueError,
        match=r"collated with target_order=reverse but the predictor has "
        r"target_order=forward; set both with the top-level key target_order=",
    ):
        ARLMPredictor(**kw).predict(batch)
    forward_batch = ARLMSeq2SeqPredCollator(TOK, **KW)(ROWS)
    with pytest.raises(
        ValueError, match=r"collated with target_order=forward but the predictor has target_order=reverse"
    ):
        ARLMPredictor(target_order="reverse", **kw).predict(forward_batch)


def test_the_top_level_key_reaches_the_collators_and_the_predictor() -> None:
    root = files("xlm_arlm") / "configs"
    model_type = OmegaConf.create((root / "model_type" / "arlm_seq2seq.yaml").read_text())
    assert model_type.target_order == "forward"
    cfg = OmegaConf.merge({"block_size": 5, "input_block_size": 3}, model_type, {"target_order": "reverse"})
    for name in ("seq2seq_arlm", "seq2seq_pred_arlm"):
        node = OmegaConf.merge(cfg, {"c": OmegaConf.create((root / "collator" / f"{name}.yaml").read_text())}).c
        assert hydra.utils.instantiate(node, tokenizer=TOK).target_order == "reverse"
    assert hydra.utils.instantiate(cfg.predictor, tokenizer=TOK).target_order == "reverse"
    alone = OmegaConf.merge(
        {"block_size": 5, "input_block_size": 3},
        {"c": OmegaConf.create((root / "collator" / "seq2seq_arlm.yaml").read_text())},
    )
    assert hydra.utils.instantiate(alone.c, tokenizer=TOK).target_order == "forward"  # no top-level key: forward
