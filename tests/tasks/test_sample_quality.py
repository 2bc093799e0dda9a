"""Sample quality: unigram entropy against its closed form, generative perplexity against the scorer's own
forward pass worked through by hand, a scorer loaded from a checkpoint, and the post-hoc evaluator's rows."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from xlm_arlm.model_arlm import RotaryTransformerARLMModel
from xlm_core.data.simple_tokenizer import SimpleSpaceTokenizer
from xlm_core.errors import UsageError
from xlm_core.run.checkpoints import CONFIG_KEY
from xlm_core.tasks.sample_quality import (
    SampleQuality,
    generative_perplexity,
    load_scorer,
    sample_parts,
    token_nlls,
    unigram_entropy,
)

TOK = SimpleSpaceTokenizer.for_numbers(20)  # [PAD]=0 [MASK]=2 [EOS]=3 [BOS]=4, word k = id k + 7
PAD, EOS, BOS = TOK.pad_token_id, TOK.eos_token_id, TOK.bos_token_id
MODEL_CFG = dict(d_model=16, num_layers=1, nhead=2, dim_feedforward=32, dropout=0.0, rotary_emb_dim=4, max_length=32)


def scorer(seed: int = 0) -> RotaryTransformerARLMModel:
    torch.manual_seed(seed)
    return RotaryTransformerARLMModel(num_embeddings=len(TOK), padding_idx=PAD, **MODEL_CFG).eval()


def test_unigram_entropy_is_the_closed_form() -> None:
    # [7, 7, 8, 9]: p = 1/2, 1/4, 1/4 -> -(1/2 ln 1/2 + 2 * 1/4 ln 1/4) = 1.5 ln 2; [5, 5, 5]: 0
    assert unigram_entropy([[7, 7, 8, 9]]) == pytest.approx(1.5 * math.log(2))
    assert unigram_entropy([[7, 7, 8, 9], [5, 5, 5]]) == pytest.approx(0.75 * math.log(2))
    assert unigram_entropy([list(range(8))]) == pytest.approx(math.log(8))  # uniform over 8 words
    with pytest.raises(ValueError, match="no tokens"):
        unigram_entropy([[]])


def test_generative_perplexity_is_exp_of_the_mean_nll_by_hand() -> None:
    model = scorer()
    samples = [[BOS, 10, 11, 12, EOS], [BOS, 9, 9]]
    by_hand: list[float] = []
    for sample in samples:  # one sequence at a time, no padding: -log softmax(logits[i - 1])[x_i]
        with torch.no_grad():
            logits = model(torch.tensor([sample]))[0]  # (L, V), causal
        by_hand += [-float(logits[i - 1].log_softmax(-1)[sample[i]]) for i in range(1, len(sample))]
    assert len(by_hand) == 6
    assert generative_perplexity(samples, model) == pytest.approx(math.exp(sum(by_hand) / 6), rel=1e-5)
    # batching (right padding) changes nothing: one batch of two equals two batches of one
    assert generative_perplexity(samples, model, batch_size=1) == pytest.approx(generative_perplexity(samples, model))
    assert [len(r) for r in token_nlls(samples, model)] == [4, 2]


def test_a_scorer_loads_from_a_checkpoint_and_checks_the_tokenizer(tmp_path: Path) -> None:
    model = scorer(seed=3)
    tokenizer_cfg = {"_target_": "xlm_core.data.simple_tokenizer.SimpleSpaceTokenizer.for_numbers", "n": 20}
    model_cfg = {
        "_target_": "xlm_arlm.model_arlm.RotaryTransformerARLMModel",
        "num_embeddings": "???",
        "padding_idx": None,
        **MODEL_CFG,
    }
    path = tmp_path / "scorer.ckpt"
    torch.save(
        {
            "global_step": 5,
            "state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
            CONFIG_KEY: {"tokenizer": tokenizer_cfg, "model": model_cfg},
        },
        path,
    )
    loaded = load_scorer(path, TOK, tokenizer_cfg)
    ids = torch.tensor([[BOS, 10, 11, 12]])
    assert torch.equal(loaded(ids), model(ids)) and not loaded.training
    with pytest.raises(UsageError, match="another tokenizer"):
        load_scorer(path, TOK, {**tokenizer_cfg, "n": 30})


def test_the_evaluator_scores_the_generated_tokens_up_to_eos(tmp_path: Path) -> None:
    model = scorer(seed=1)
    path = tmp_path / "scorer.ckpt"
    model_cfg = {"_target_": "xlm_arlm.model_arlm.RotaryTransformerARLMModel", **MODEL_CFG}
    torch.save(
        {"state_dict": {f"model.{k}": v for k, v in model.state_dict().items()}, CONFIG_KEY: {"model": model_cfg}}, path
    )
    # left padding, [BOS], then the sample; what follows the first EOS is not part of it
    row = {"ids": [PAD, BOS, 10, 10, 11, EOS, 12, 13], "output_start_idx": 2}
    assert sample_parts(row, PAD, EOS) == ([BOS], [10, 10, 11, EOS])
    rows, metrics = SampleQuality(scorer_checkpoint=str(path)).eval([row], tokenizer=TOK)
    assert metrics["unigram_entropy"] == pytest.approx(unigram_entropy([[10, 10, 11, EOS]]))
    assert metrics["gen_ppl"] == pytest.approx(generative_perplexity([[BOS, 10, 10, 11, EOS]], model), rel=1e-5)
    assert rows[0]["sample_nll"] == pytest.approx(math.log(metrics["gen_ppl"]), rel=1e-5)
    # a prompt's own tokens are context, not scored: prompt "10" then the sample "11 EOS"
    prompted = {"ids": [BOS, 10, 11, EOS], "output_start_idx": 2}
    _, only = SampleQuality(scorer_checkpoint=str(path)).eval([prompted], tokenizer=TOK)
    nll = token_nlls([[BOS, 10, 11, EOS]], model)[0][1:]
    assert only["gen_ppl"] == pytest.approx(math.exp(sum(nll) / 2), rel=1e-5)
    # no scorer: entropy only
    assert set(SampleQuality().eval([row], tokenizer=TOK)[1]) == {"unigram_entropy"}
