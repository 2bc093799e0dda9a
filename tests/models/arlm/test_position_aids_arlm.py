"""ARLM with the shared architecture options on (absolute positions, causal neighbour mixing):
still causal, and the KV cache (eager chunks, the static decode_step, the compiled step, the
predictor) gives what a full recomputation gives."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

import xlm_core.modules.decode_step as decode_step_module
from xlm_arlm.loss_arlm import causal_attention_mask, positions_from_attention_mask
from xlm_arlm.predictor_arlm import ARLMPredictor
from xlm_core.data.simple_tokenizer import SimpleSpaceTokenizer
from xlm_core.modules.decode_step import cache_slots
from xlm_core.testing import BaseModelTests, make_lm_inputs
from xlm_core.testing.typecheck import unchecked

TOK = SimpleSpaceTokenizer.for_numbers(50)
PAD = TOK.pad_token_id
OPTIONS = dict(absolute_positions=True, neighbour_mixing="causal")
ATOL = 1e-5


class TestARLMModelWithOptionsConformance(BaseModelTests):
    """The shared model suite (check_causal, KV cache == full forward, key padding) with both options on."""

    causal = True
    kv_cache = True

    @pytest.fixture
    def model(self, make_arlm_model):
        return make_arlm_model(**OPTIONS).eval()

    @pytest.fixture
    def run_forward(self, model, vocab_size):
        def run(batch_size=2, seq_len=16, partial_mask=False, *, input_ids=None, attention_mask=None):
            if input_ids is None:
                input_ids, attention_mask = make_lm_inputs(batch_size, seq_len, vocab_size, partial_mask)
            return model(input_ids, attention_mask, positions_from_attention_mask(attention_mask))

        return run


@pytest.fixture
def model(make_arlm_model):
    return make_arlm_model(seed=1, **OPTIONS).eval()


def _left_padded(rows: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(map(len, rows))
    ids = torch.tensor([[PAD] * (width - len(r)) + r for r in rows])
    return ids, ids != PAD


PROMPTS = [[8, 9, 10, 11, 12], [16, 15], [37, 14, 14, 47]]


def test_options_register_the_mlm_keys_and_refuse_bidirectional_mixing(make_arlm_model) -> None:
    plain = set(make_arlm_model().state_dict())
    extra = set(make_arlm_model(**OPTIONS).state_dict()) - plain
    assert extra == {"embed_positions.weight", "neighbour_mixing.prev.weight"}  # the MLM's names
    with pytest.raises(ValueError, match=r"neighbour_mixing='bidirectional' is not supported by an ARLM"):
        make_arlm_model(neighbour_mixing="bidirectional")
    with pytest.raises(ValueError, match=r"neighbour_mixing=True is not supported by an ARLM"):
        make_arlm_model(neighbour_mixing=True)


def test_options_off_leave_weights_and_logits_unchanged(make_arlm_model) -> None:
    a, b = make_arlm_model(seed=4), make_arlm_model(seed=4, absolute_positions=False, neighbour_mixing="none")
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))


def test_the_options_are_applied_to_the_embeddings(model) -> None:
    """The forward equals the stack run by hand from ``embed + positions + W_prev * previous``."""
    ids, mask = _left_padded(PROMPTS)
    pos = positions_from_attention_mask(mask)
    h = model.embed_tokens(ids) + model.embed_positions(pos)
    prev = torch.cat([torch.zeros_like(h[:, :1]), h[:, :-1]], 1) * torch.cat(
        [torch.zeros_like(mask[:, :1]), mask[:, :-1]], 1
    ).unsqueeze(-1)
    x = h + model.neighbour_mixing.prev(prev)
    cos, sin = model.rotary_emb.cos_sin(pos)
    attn = causal_attention_mask(mask)[:, None] | torch.eye(5, dtype=torch.bool)  # padded queries see themselves
    for layer in model.layers:
        x = layer(x, cos, sin, attn_mask=attn)
    expected = model.final_layer(x)
    torch.testing.assert_close(model(ids, mask, pos)[mask], expected[mask], rtol=0, atol=ATOL)


def test_gradient_of_each_position_reaches_no_later_embedding(model) -> None:
    x = torch.randint(7, 57, (1, 6), generator=torch.Generator().manual_seed(0))
    emb = model.embed_tokens(x).detach().requires_grad_(True)
    h = emb + model.embed_positions(torch.arange(6)[None])
    h = model.neighbour_mixing(h)
    cos, sin = model.rotary_emb.cos_sin(torch.arange(6)[None])
    for layer in model.layers:
        h = layer(h, cos, sin, is_causal=True)
    logits = model.final_layer(h)
    for i in range(6):
        (grad,) = torch.autograd.grad(logits[0, i].sum(), emb, retain_graph=True)
        assert torch.count_nonzero(grad[0, i + 1 :]) == 0
        if i > 0:
            assert grad[0, i - 1].abs().sum() > 0


def test_kv_cache_chunks_and_single_tokens_equal_the_full_forward(model) -> None:
    ids, mask = _left_padded(PROMPTS)
    cont = torch.randint(7, 57, (3, 4), generator=torch.Generator().manual_seed(5))
    full_ids = torch.cat([ids, cont], 1)
    full_mask = torch.cat([mask, torch.ones_like(cont, dtype=torch.bool)], 1)
    pos = positions_from_attention_mask(full_mask)
    full = model(full_ids, full_mask, pos)
    model.set_kv_cache(3, 9)
    steps = [model(ids, mask, pos[:, :5])]
    for t in range(5, 9):
        steps.append(model(full_ids[:, t : t + 1], full_mask[:, : t + 1], pos[:, t : t + 1]))
    model.clear_kv_cache()
    assert model.neighbour_mixing.cache is None
    cached = torch.cat(steps, 1)
    torch.testing.assert_close(cached[full_mask], full[full_mask], rtol=0, atol=ATOL)
    model.set_kv_cache(3, 9)
    chunks = [
        model(full_ids[:, :3], full_mask[:, :3], pos[:, :3]),
        model(full_ids[:, 3:7], full_mask[:, :7], pos[:, 3:7]),
        model(full_ids[:, 7:], full_mask, pos[:, 7:]),
    ]
    model.clear_kv_cache()
    torch.testing.assert_close(torch.cat(chunks, 1)[full_mask], full[full_mask], rtol=0, atol=ATOL)


def test_decode_step_equals_the_cached_forward(model) -> None:
    """The static step reads the previous token's state from the cache, as the eager cached call does."""
    ids, mask = _left_padded(PROMPTS)
    cont = torch.tensor([[20, 21, 22], [30, 31, 32], [40, 41, 42]])
    full_mask = torch.cat([mask, torch.ones_like(cont, dtype=torch.bool)], 1)
    pos = positions_from_attention_mask(full_mask)
    S = cache_slots(8)
    key_mask = torch.zeros(3, S, dtype=torch.bool)
    key_mask[:, :8] = full_mask
    results = []
    for static in (False, True):
        out = []
        with torch.inference_mode():
            model.set_kv_cache(3, S)
            model(ids, mask, pos[:, :5])
            for t in range(3):
                token, position = cont[:, t : t + 1], pos[:, 5 + t : 6 + t]
                if static:
                    out.append(model.decode_step(token, position, torch.tensor(5 + t), key_mask))
                else:
                    out.append(model(token, full_mask[:, : 6 + t], position)[:, -1])
            model.clear_kv_cache()
        results.append(torch.stack(out))
    full = model(torch.cat([ids, cont], 1), full_mask, pos)[:, 5:].transpose(0, 1)
    torch.testing.assert_close(results[1], results[0], rtol=0, atol=ATOL)
    torch.testing.assert_close(results[0], full, rtol=0, atol=ATOL)


def _greedy(model, **kw) -> dict:
    predictor = ARLMPredictor(
        max_steps=16, max_length=None, tokenizer=TOK, sampling_method="sample_top_k", top_k=1, model=model, **kw
    )
    ids, mask = _left_padded(PROMPTS)
    return predictor.predict({"input_ids": ids, "attention_mask": mask})


def test_predictor_with_the_cache_equals_full_recomputation(model) -> None:
    cached, recomputed = _greedy(model, compile_decode=False), _greedy(model, use_kv_cache=False)
    assert torch.equal(cached["ids"], recomputed["ids"])


@pytest.fixture
def _compile_fast(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """aot_eager: Dynamo capture + functionalization of the in-place cache writes, no code generation;
    the suite's run-time annotation checks are Python Dynamo cannot trace."""
    monkeypatch.setitem(decode_step_module.COMPILE_OPTIONS, "backend", "aot_eager")
    with unchecked():
        yield


def test_compiled_decoding_equals_eager_decoding(_compile_fast, model) -> None:
    compiled, eager = _greedy(model, compile_decode=True), _greedy(model, compile_decode=False)
    assert torch.equal(compiled["ids"], eager["ids"])
    assert model.neighbour_mixing.cache is None and model.kv_cache_length == 0


@pytest.mark.parametrize("use_3d_mask", [False, True])
def test_loss_is_the_same_through_the_fused_head_and_either_mask(model, use_3d_mask: bool) -> None:
    """The options sit in forward_hidden, so the fused head + cross-entropy sees them as the logits path does;
    the (B, L, L) reference mask gives the same neighbours as the key-padding mask."""
    from xlm_arlm.collators_arlm import ARLMSeq2SeqCollator
    from xlm_arlm.loss_arlm import ARLMLoss

    rows = [{"prompt_ids": [10, 11, 12], "input_ids": [20, 21]}, {"prompt_ids": [13], "input_ids": [22, 23, 24]}]
    batch = ARLMSeq2SeqCollator(TOK, block_size=4, input_block_size=4, add_bos="output", add_eos=True)(rows)
    plain = ARLMLoss(model, TOK, fused=False)(batch)
    other = ARLMLoss(model, TOK, fused=True, use_3d_mask=use_3d_mask)(batch)
    torch.testing.assert_close(other["loss"], plain["loss"], rtol=0, atol=1e-5)
    torch.testing.assert_close(other["nlls"], plain["nlls"], rtol=0, atol=1e-5)
