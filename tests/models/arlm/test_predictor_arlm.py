"""ARLMPredictor: KV-cache generation equals full recomputation; stopping, padding, sampling, output."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from xlm_arlm.collators_arlm import ARLMSeq2SeqPredCollator
from xlm_arlm.predictor_arlm import ARLMPredictor
from xlm_core.data.simple_tokenizer import SimpleSpaceTokenizer
from xlm_core.testing import BasePredictorTests
from xlm_core.testing.typecheck import unchecked

TOK = SimpleSpaceTokenizer.for_numbers(50)
PAD, EOS, BOS = TOK.pad_token_id, TOK.eos_token_id, TOK.bos_token_id  # 0, 3, 4
NEVER = 10**6


def word(k: int) -> int:
    """Id of the word ``str(k)`` in ``SimpleSpaceTokenizer.for_numbers(50)``."""
    return k + 7


def left_padded(rows: list[list[int]], pad: int = PAD) -> dict[str, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.tensor([[pad] * (width - len(r)) + r for r in rows])
    mask = torch.tensor([[False] * (width - len(r)) + [True] * len(r) for r in rows])
    return {"input_ids": ids, "attention_mask": mask}


# Prompts of 5, 2 and 4 real tokens (EOS-free), left-padded to 5.
PROMPTS = [[word(1), word(2), word(3), word(4), word(5)], [word(9), word(8)], [word(30), word(7), word(7), word(40)]]


class EOSAtPosition(nn.Module):
    """A real ARLM whose EOS logit is forced: EOS is the token at position ``stop_pos``, never before.

    The query at position q predicts the token at q + 1, so every row emits EOS exactly when its
    next position is ``stop_pos``; ``stop_pos=NEVER`` forbids EOS. Cache calls are delegated.
    """

    def __init__(self, base: nn.Module, eos_id: int, stop_pos: int) -> None:
        super().__init__()
        self.base, self.eos_id, self.stop_pos = base, eos_id, stop_pos

    def forward(self, x_t, attention_mask=None, positions=None, token_type_ids=None):
        logits = self.base(x_t, attention_mask, positions).clone()
        logits[..., self.eos_id] = torch.where(positions + 1 >= self.stop_pos, 1e4, -1e4).to(logits.dtype)
        return logits

    def set_kv_cache(self, *args, **kwargs):
        self.base.set_kv_cache(*args, **kwargs)

    def clear_kv_cache(self):
        self.base.clear_kv_cache()

    @property
    def kv_cache_length(self) -> int:
        return self.base.kv_cache_length


class CountingModel(nn.Module):
    """Hand-built logits: the query at position q predicts the word ``str(q + 1)``; EOS at ``stop_pos``.

    It only looks at ``positions``, so it reveals exactly which positions the predictor passes.
    No ``set_kv_cache``: the predictor must fall back to full recomputation.
    """

    def __init__(self, vocab: int, stop_pos: int = NEVER) -> None:
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(()))
        self.vocab, self.stop_pos = vocab, stop_pos

    def forward(self, x_t, attention_mask=None, positions=None, token_type_ids=None):
        target = torch.where(positions + 1 >= self.stop_pos, EOS, word(0) + positions + 1)
        return nn.functional.one_hot(target, self.vocab).float() * 10.0


class FixedLogits(nn.Module):
    """Every position gets the same hand-built logits (no cache support)."""

    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("logits", logits)

    def forward(self, x_t, attention_mask=None, positions=None, token_type_ids=None):
        return self.logits.expand(*x_t.shape, -1)


def reference_greedy(model, batch, steps: int) -> torch.Tensor:
    """Greedy decoding that reruns the whole prefix every step with a (B, L) key-padding mask."""
    ids, mask = batch["input_ids"].clone(), batch["attention_mask"].clone()
    with torch.no_grad():
        for _ in range(steps):
            positions = (mask.long().cumsum(1) - 1).clamp_min(0)
            nxt = model(ids, mask, positions)[:, -1].argmax(-1)
            ids = torch.cat([ids, nxt[:, None]], dim=1)
            mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
    return ids


def expected_after_eos(ids: torch.Tensor, prompt_len: int, eos: int, pad: int) -> torch.Tensor:
    """PAD after each row's first generated EOS; drop columns past the last EOS when every row has one."""
    ids = ids.clone()
    ends = []
    for row in ids:
        gen = row[prompt_len:].tolist()
        if eos in gen:
            stop = gen.index(eos)
            row[prompt_len + stop + 1 :] = pad
            ends.append(stop + 1)
        else:
            ends.append(None)
    if all(e is not None for e in ends):
        ids = ids[:, : prompt_len + max(ends)]
    return ids


def greedy(model, max_steps: int = 20, max_length: int | None = 64, tokenizer=TOK, **kw) -> ARLMPredictor:
    return ARLMPredictor(max_steps, max_length, tokenizer, sampling_method="sample_top_k", top_k=1, model=model, **kw)


# ---------------------------------------------------------------- conformance suite
class TestARLMPredictorConformance(BasePredictorTests):
    @pytest.fixture
    def predictor(self, tiny_arlm_model, simple_tokenizer):
        return greedy(tiny_arlm_model, max_steps=8, tokenizer=simple_tokenizer)

    @pytest.fixture
    def batch(self):
        return left_padded(PROMPTS)


# ---------------------------------------------------------------- KV cache == recomputation
@pytest.mark.parametrize("seed", [0, 1])
def test_kv_cache_greedy_equals_full_recomputation(seed: int, make_arlm_model) -> None:
    base = make_arlm_model(seed).eval()
    batch = left_padded(PROMPTS)
    expected = expected_after_eos(reference_greedy(base, batch, 20), 5, EOS, PAD)
    cached = greedy(base).predict(batch)
    recomputed = greedy(base, use_kv_cache=False).predict(batch)
    assert torch.equal(cached["ids"], expected)
    assert torch.equal(recomputed["ids"], expected)
    assert base.kv_cache_length == 0 and all(layer.kv_cache is None for layer in base.layers)


def test_kv_cache_equals_recomputation_over_long_generation(make_arlm_model) -> None:
    base = make_arlm_model(3).eval()
    model = EOSAtPosition(base, EOS, NEVER)  # no EOS: all 40 steps run
    batch = left_padded(PROMPTS)
    expected = reference_greedy(model, batch, 40)
    out = greedy(model, max_steps=40).predict(batch)
    assert out["ids"].shape == (3, 45)
    assert torch.equal(out["ids"], expected)
    assert out["attention_mask"][:, 5:].all()
    assert torch.equal(out["attention_mask"][:, :5], batch["attention_mask"])


@pytest.mark.parametrize("use_kv_cache", [True, False])
def test_left_padded_prompts_get_their_own_positions(use_kv_cache: bool) -> None:
    # Row lengths 5, 2, 4: the first generated token is at position 5, 2, 4 respectively.
    model = CountingModel(len(TOK), stop_pos=8)
    if use_kv_cache:  # same hand-built model, with no-op cache methods: the cache path feeds 1 token/step
        model.set_kv_cache = lambda *a, **k: None
        model.clear_kv_cache = lambda: None
    out = greedy(model, max_steps=30, use_kv_cache=use_kv_cache).predict(left_padded(PROMPTS))
    assert out["text"] == ["5 6 7", "2 3 4 5 6 7", "4 5 6 7"]
    assert out["output_start_idx"] == 5
    # widths: longest row generates 6 words + EOS = 7 tokens
    assert out["ids"].shape == (3, 12)
    gen = out["ids"][:, 5:].tolist()
    assert gen[0] == [word(5), word(6), word(7), EOS, PAD, PAD, PAD]
    assert gen[1] == [word(2), word(3), word(4), word(5), word(6), word(7), EOS]
    assert gen[2] == [word(4), word(5), word(6), word(7), EOS, PAD, PAD]
    assert out["attention_mask"][:, 5:].long().tolist() == [[1, 1, 1, 1, 0, 0, 0], [1] * 7, [1, 1, 1, 1, 1, 0, 0]]
    assert out["positions"][1].tolist() == [0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8]
    assert out["positions"][0, 5:].tolist() == [5, 6, 7, 8, 0, 0, 0]


# ---------------------------------------------------------------- stopping and padding
@pytest.mark.parametrize("interval", [1, 3, 8, 100])
def test_stops_early_when_every_row_emits_eos_and_pads_finished_rows(interval: int, make_arlm_model) -> None:
    base = make_arlm_model(0).eval()
    model = EOSAtPosition(base, EOS, stop_pos=8)
    batch = left_padded(PROMPTS)
    out = greedy(model, max_steps=30, stop_check_interval=interval).predict(batch)
    expected = expected_after_eos(reference_greedy(model, batch, 30), 5, EOS, PAD)
    # Rows with 5, 2, 4 real tokens generate 3, 6, 4 words and then EOS: 7 columns, not 30.
    assert expected.shape == (3, 12)
    assert torch.equal(out["ids"], expected)
    gen = out["ids"][:, 5:]
    eos_at = [row.index(EOS) for row in gen.tolist()]
    assert eos_at == [3, 6, 4]
    for r, k in enumerate(eos_at):
        assert (gen[r, k + 1 :] == PAD).all()
        assert (gen[r, :k] != EOS).all() and (gen[r, :k] != PAD).all()
        assert out["attention_mask"][r, 5:].tolist() == [True] * (k + 1) + [False] * (6 - k)


def test_max_length_caps_generation(make_arlm_model) -> None:
    model = EOSAtPosition(make_arlm_model(0).eval(), EOS, NEVER)
    out = greedy(model, max_steps=30, max_length=9).predict(left_padded(PROMPTS))
    assert out["ids"].shape == (3, 9)
    out = greedy(model, max_steps=2, max_length=None).predict(left_padded(PROMPTS))
    assert out["ids"].shape == (3, 7)


def test_eos_inside_the_prompt_does_not_stop_generation(make_arlm_model) -> None:
    model = EOSAtPosition(make_arlm_model(0).eval(), EOS, NEVER)
    rows = [[word(1), EOS, word(2)], [word(5), EOS], [EOS]]  # EOS mid-prompt and as the last token
    batch = left_padded(rows)
    out = greedy(model, max_steps=6).predict(batch)
    assert out["ids"].shape == (3, 9)
    gen = out["ids"][:, 3:]
    assert (gen != PAD).all() and (gen != EOS).all()
    assert out["attention_mask"][:, 3:].all()
    assert torch.equal(out["ids"], reference_greedy(model, batch, 6))


def pad_is_eos_tokenizer():
    """A real Hugging Face word-level tokenizer whose pad token is its EOS token."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<eos>": 0, "<unk>": 1, **{w: i + 2 for i, w in enumerate("a b c d e f g h".split())}}
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=core, eos_token="<eos>", pad_token="<eos>", unk_token="<unk>")


def test_tokenizer_with_pad_equal_to_eos(make_arlm_model) -> None:
    tok = pad_is_eos_tokenizer()
    assert tok.pad_token_id == tok.eos_token_id == 0
    base = make_arlm_model(0, num_embeddings=len(tok), padding_idx=None).eval()
    model = EOSAtPosition(base, tok.eos_token_id, stop_pos=5)
    rows = [[2, 3, 4], [5], [6, 7]]  # left padding is EOS: it must not count as a finished row
    batch = left_padded(rows, pad=tok.pad_token_id)
    out = greedy(model, max_steps=10, tokenizer=tok).predict(batch)
    gen = out["ids"][:, 3:].tolist()
    # rows with 3, 1, 2 real tokens: 2, 4, 3 words then EOS(=PAD) -> 5 columns
    assert [len([t for t in g if t != 0]) for g in gen] == [2, 4, 3]
    assert out["ids"].shape == (3, 8)
    assert out["attention_mask"][:, 3:].long().tolist() == [[1, 1, 1, 0, 0], [1] * 5, [1, 1, 1, 1, 0]]
    assert torch.equal(out["ids"], expected_after_eos(reference_greedy(model, batch, 10), 3, 0, 0))
    texts = greedy(model, max_steps=10, tokenizer=tok).generate(["a b c", "d", "e f"])
    assert texts == out["text"]
    assert [len(t.split()) for t in texts] == [2, 4, 3]


# ---------------------------------------------------------------- sampling
def test_top_k_and_top_p_sampling_stay_in_support() -> None:
    probs = torch.full((len(TOK),), 1e-4)
    probs[word(3)], probs[word(9)], probs[word(20)] = 0.5, 0.3, 0.2
    model = FixedLogits(probs.log())
    batch = left_padded([[word(1)]] * 64)
    for method, kw, support in [
        ("sample_top_k", {"top_k": 2}, {word(3), word(9)}),
        ("sample_top_p", {"top_p": 0.6}, {word(3), word(9)}),  # 0.5 < 0.6: the crossing token is kept
        ("sample_top_p", {"top_p": 0.85}, {word(3), word(9), word(20)}),
    ]:
        pred = ARLMPredictor(8, None, TOK, sampling_method=method, model=model, seed=0, **kw)
        gen = pred.predict(batch)["ids"][:, 1:]
        assert set(gen.flatten().tolist()) == support, (method, kw)


def test_the_old_option_names_top_and_p_still_work_with_a_warning() -> None:
    with pytest.warns(DeprecationWarning, match=r"ARLMPredictor\(top=\.\.\.\) is deprecated .* write top_k=2"):
        pred = ARLMPredictor(8, None, TOK, sampling_method="sample_top_k", top=2)
    assert pred.top_k == 2 and pred.top_p == 0.9
    with pytest.warns(DeprecationWarning, match=r"write top_p=0.5 \(in a config: predictor.top_p\)"):
        assert ARLMPredictor(8, None, TOK, sampling_method="sample_top_p", p=0.5).top_p == 0.5
    with pytest.warns(DeprecationWarning), pytest.raises(ValueError, match="sample_top_k needs an integer top_k >= 1"):
        ARLMPredictor(8, None, TOK, sampling_method="sample_top_k", top=0)  # an old name is checked like the new


def test_fixed_seed_reproduces_samples(make_arlm_model) -> None:
    model = make_arlm_model(0).eval()
    batch = left_padded(PROMPTS)

    def run(seed, **kw):
        return ARLMPredictor(12, 64, TOK, sampling_method="sample", model=model, seed=seed, **kw).predict(batch)["ids"]

    a, b, c = run(7), run(7), run(8)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    # The same seeded stream gives the same samples with and without the cache.
    assert torch.equal(a, run(7, use_kv_cache=False))
    # An explicit generator overrides the predictor's seed.
    pred = ARLMPredictor(12, 64, TOK, model=model, seed=None)
    d = pred.predict(batch, generator=torch.Generator().manual_seed(7))["ids"]
    assert torch.equal(a, d)


def test_temperature_is_applied() -> None:
    logits = torch.zeros(len(TOK))
    logits[word(3)] = 2.0
    model = FixedLogits(logits)
    batch = left_padded([[word(1)]] * 32)
    cold = ARLMPredictor(4, None, TOK, model=model, temperature=0.01, seed=0).predict(batch)["ids"][:, 1:]
    assert (cold == word(3)).all()
    hot = ARLMPredictor(4, None, TOK, model=model, temperature=1.0, seed=0).predict(batch)["ids"][:, 1:]
    assert len(set(hot.flatten().tolist())) > 10


# ---------------------------------------------------------------- outputs
def test_time_taken_and_to_dict_rows() -> None:
    collate = ARLMSeq2SeqPredCollator(TOK, block_size=6, input_block_size=4, add_bos="output", add_eos=True)
    batch = collate(
        [
            {"prompt_ids": [word(1), word(2)], "input_ids": [word(3), word(4)]},
            {"prompt_ids": [word(5)], "input_ids": [word(6)]},
        ]
    )
    assert batch["input_ids"].tolist() == [[PAD, word(1), word(2), BOS], [PAD, PAD, word(5), BOS]]
    model = CountingModel(len(TOK), stop_pos=5)
    pred = greedy(model, max_steps=6, max_length=None)
    preds = pred.predict(batch)
    assert all(isinstance(t, float) and t > 0 for t in preds["time_taken"])
    assert len(preds["time_taken"]) == 2
    rows = pred.to_dict(batch, preds, 0, 0, "prediction")
    json.dumps(rows)
    assert [r["text"] for r in rows] == ["3 4", "2 3 4"]
    assert [r["prompt"] for r in rows] == ["1 2", "5"]
    assert [r["target"] for r in rows] == ["3 4", "6"]
    assert rows[0]["ids"] == [PAD, word(1), word(2), BOS, word(3), word(4), EOS, PAD]
    assert rows[1]["ids"] == [PAD, PAD, word(5), BOS, word(2), word(3), word(4), EOS]
    assert rows[0]["text_with_spl_tokens"] == "[PAD] 1 2 [BOS] 3 4 [EOS] [PAD]"
    assert all(r["output_start_idx"] == 4 and r["time_taken"] > 0 for r in rows)
    # Without target_ids the rows carry no target.
    no_target = {k: v for k, v in batch.items() if k != "target_ids"}
    assert "target" not in pred.to_dict(no_target, preds)[0]


def test_to_dict_copies_row_metadata_such_as_the_gold_answer() -> None:
    collate = ARLMSeq2SeqPredCollator(TOK, block_size=6, input_block_size=4, add_bos="output", add_eos=True)
    batch = collate(
        [
            {"prompt_ids": [word(1), word(2)], "input_ids": [], "answer": "12"},
            {"prompt_ids": [word(5)], "input_ids": [], "answer": "7.5"},
        ]
    )
    pred = greedy(CountingModel(len(TOK), stop_pos=5), max_steps=6, max_length=None)
    rows = pred.to_dict(batch, pred.predict(batch), 0, 0, "prediction")
    assert [r["answer"] for r in rows] == ["12", "7.5"]
    assert [r["text"] for r in rows] == ["3 4", "2 3 4"]  # predictor-owned fields are not overwritten


def test_predictions_feed_the_seq2seq_metrics() -> None:
    from xlm_core.kit.metrics import ExactMatch, TokenAccuracy
    from xlm_core.kit.metrics import exact_match_update_fn as seq2seq_exact_match_update_fn
    from xlm_core.kit.metrics import token_accuracy_update_fn as seq2seq_token_accuracy_update_fn

    collate = ARLMSeq2SeqPredCollator(TOK, block_size=4, input_block_size=4, add_bos="output", add_eos=True)
    batch = collate(
        [
            {"prompt_ids": [word(1), word(2)], "input_ids": [word(3), word(4)]},  # generated "3 4 EOS": right
            {"prompt_ids": [word(5)], "input_ids": [word(6)]},  # generated "2 3 4 EOS" vs "6 EOS": wrong
        ]
    )
    preds = greedy(CountingModel(len(TOK), stop_pos=5), max_steps=4, max_length=None).predict(batch)
    em, acc = ExactMatch(), TokenAccuracy()
    em.update(**seq2seq_exact_match_update_fn(batch, preds, TOK))
    acc.update(**seq2seq_token_accuracy_update_fn(batch, preds, TOK))
    assert em.compute().item() == 0.5
    assert acc.compute().item() == pytest.approx(3 / 5)  # 3 + 0 of 3 + 2 target tokens (EOS included)


def test_generate_round_trip() -> None:
    model = CountingModel(len(TOK), stop_pos=6)
    pred = greedy(model, max_steps=10)
    assert pred.generate(["1 2 3", "7"]) == ["3 4 5", "1 2 3 4 5"]
    assert pred.generate(["1 2 3", "7"], max_new_tokens=2) == ["3 4", "1 2"]
    assert pred.generate(["1 2 3", "7", "8 9"], batch_size=2) == ["3 4 5", "1 2 3 4 5", "2 3 4 5"]
    assert pred.generate([""], add_bos=True) == ["1 2 3 4 5"]


def test_generate_with_real_model_matches_predict(make_arlm_model) -> None:
    model = make_arlm_model(2).eval()
    pred = greedy(model, max_steps=10)
    texts = pred.generate(["1 2 3 4 5", "9 8"])
    batch = left_padded([[word(1), word(2), word(3), word(4), word(5)], [word(9), word(8)]])
    assert texts == pred.predict(batch)["text"]
    assert all(all(w.isdigit() for w in t.split()) for t in texts)


def test_model_mode_restored_and_cache_cleared_on_error(make_arlm_model) -> None:
    base = make_arlm_model(0).train()

    class Boom(EOSAtPosition):
        calls = 0

        def forward(self, *args, **kwargs):
            self.calls += 1
            if self.calls == 3:
                raise RuntimeError("boom")
            return super().forward(*args, **kwargs)

    model = Boom(base, EOS, NEVER).train()
    with pytest.raises(RuntimeError, match="boom"):
        greedy(model).predict(left_padded(PROMPTS))
    assert base.kv_cache_length == 0 and all(layer.kv_cache is None for layer in base.layers)
    assert model.training and base.training


# ---------------------------------------------------------------- validation
def test_invalid_arguments() -> None:
    with unchecked(), pytest.raises(ValueError, match="sampling_method"):
        ARLMPredictor(4, 8, TOK, sampling_method="beam")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="top_k >= 1"):
        ARLMPredictor(4, 8, TOK, sampling_method="sample_top_k", top_k=0)
    with pytest.raises(ValueError, match="0 < top_p <= 1"):
        ARLMPredictor(4, 8, TOK, sampling_method="sample_top_p", top_p=1.5)
    with pytest.raises(ValueError, match="temperature"):
        ARLMPredictor(4, 8, TOK, temperature=0.0)
    with pytest.raises(ValueError, match="model is None"):
        ARLMPredictor(4, 8, TOK).predict(left_padded(PROMPTS))


def test_right_padded_or_empty_prompts_rejected(make_arlm_model) -> None:
    pred = greedy(make_arlm_model(0).eval())
    batch = left_padded(PROMPTS)
    right = {"input_ids": batch["input_ids"].flip(1), "attention_mask": batch["attention_mask"].flip(1)}
    with pytest.raises(ValueError, match="left-padded"):
        pred.predict(right)
    empty = {"input_ids": torch.zeros(2, 0, dtype=torch.long), "attention_mask": torch.zeros(2, 0, dtype=torch.bool)}
    with pytest.raises(ValueError, match="BOS"):
        pred.predict(empty)
    with pytest.raises(ValueError, match="add_bos"):
        pred.generate([""])


# ---------------------------------------------------------------- model_type configs
@pytest.mark.parametrize(
    "name,prediction_metrics,top",
    [("arlm", set(), 1000), ("arlm_seq2seq", {"exact_match", "token_accuracy"}, 1), ("arlm_tinygsm_seq2seq", set(), 1)],
)
def test_model_type_configs_build(name: str, prediction_metrics: set[str], top: int, make_arlm_model) -> None:
    from importlib.resources import files

    import hydra
    from omegaconf import OmegaConf

    from xlm_arlm.loss_arlm import ARLMLoss
    from xlm_core.training.reported_metrics import build_metrics

    text = (files("xlm_arlm") / "configs" / "model_type" / f"{name}.yaml").read_text()
    assert text.startswith("# @package _global_")
    cfg = OmegaConf.merge({"block_size": 12, "input_block_size": 4}, OmegaConf.create(text))
    model = make_arlm_model(0).eval()
    loss = hydra.utils.instantiate(cfg.loss, model=model, tokenizer=TOK)
    assert isinstance(loss, ARLMLoss)
    pred = hydra.utils.instantiate(cfg.predictor, model=model, tokenizer=TOK)
    assert isinstance(pred, ARLMPredictor) and pred.max_steps == 12 and pred.top_k == top
    out = pred.predict(left_padded(PROMPTS))
    assert out["ids"].shape[1] <= 5 + 12
    metrics = build_metrics(cfg.reported_metrics, {"val": [("lm", "lm"), ("prediction", "prediction")]})
    names = {w.name for key, w in metrics.items() if key.startswith("val|1|")}
    assert names == prediction_metrics
    lm_metrics = {"accumulated_loss", "perplexity"} if name == "arlm" else {"accumulated_loss"}
    assert {w.name for key, w in metrics.items() if key.startswith("val|0|")} == lm_metrics
    if name == "arlm_tinygsm_seq2seq":
        from xlm_core.tasks.code_exec.evaluator import Gsm8kCodeEval

        # Opt-in: the evaluator is built only when execute_generated_code=true, else it is None.
        assert hydra.utils.instantiate(cfg.post_hoc_evaluator) is None
        opted_in = OmegaConf.merge(cfg, {"execute_generated_code": True})
        evaluator = hydra.utils.instantiate(opted_in.post_hoc_evaluator)
        assert isinstance(evaluator, Gsm8kCodeEval) and evaluator.allow_code_execution
