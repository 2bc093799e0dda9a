"""The ARLM on a CUDA device: KV cache == recomputation, CUDA-graph decoding == eager, fused SDPA, bf16.

Skipped without a GPU (CI has none); run on one with ``python -m pytest -q -m gpu tests/gpu``.
"""

from __future__ import annotations

import pytest
import torch
from torch.profiler import ProfilerActivity, profile

from xlm_arlm.loss_arlm import ARLMLoss, positions_from_attention_mask
from xlm_arlm.model_arlm import RotaryTransformerARLMModel
from xlm_arlm.predictor_arlm import ARLMPredictor

from tiny_models import NUMBERS, seeded_tiny_model

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

TOK = NUMBERS
PAD = TOK.pad_token_id
CUDA = torch.device("cuda")


def make_model(seed: int = 0, dtype: torch.dtype = torch.float32) -> RotaryTransformerARLMModel:
    """d_model 64, 2 layers, 4 heads (head_dim 16), dropout 0, on the GPU in eval mode."""
    model = seeded_tiny_model(
        RotaryTransformerARLMModel, seed, d_model=64, dim_feedforward=128, rotary_emb_dim=16, max_length=128
    )
    return model.to(device=CUDA, dtype=dtype).eval()


def left_padded(rows: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(map(len, rows))
    ids = torch.tensor([[PAD] * (width - len(r)) + r for r in rows], device=CUDA)
    mask = torch.tensor([[False] * (width - len(r)) + [True] * len(r) for r in rows], device=CUDA)
    return ids, mask


def right_padded_lm_batch(lengths: list[int], seq: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """A DefaultARLMCollator-style batch: target = input[1:] + [-100], padding -> PAD / -100."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.full((len(lengths), seq), PAD)
    targets = torch.full((len(lengths), seq), -100)
    for i, n in enumerate(lengths):
        row = torch.randint(7, len(TOK), (n,), generator=g)
        ids[i, :n] = row
        targets[i, : n - 1] = row[1:]
    return {"input_ids": ids.to(CUDA), "attention_mask": (ids != PAD).to(CUDA), "target_ids": targets.to(CUDA)}


PROMPTS = [[12, 30, 8, 9, 40], [9, 9], [56, 7, 33, 20]]


@pytest.mark.parametrize("dtype, atol", [(torch.float32, 1e-4), (torch.bfloat16, 6e-2)])
def test_kv_cache_incremental_equals_full_forward_on_cuda(dtype: torch.dtype, atol: float) -> None:
    model = make_model(dtype=dtype)
    ids, mask = left_padded(PROMPTS)
    g = torch.Generator().manual_seed(3)
    new = 6
    cont = torch.randint(7, len(TOK), (3, new), generator=g).to(CUDA)
    full_ids = torch.cat([ids, cont], 1)
    full_mask = torch.cat([mask, torch.ones_like(cont, dtype=torch.bool)], 1)
    pos = positions_from_attention_mask(full_mask)
    with torch.inference_mode():
        full = model(full_ids, full_mask, pos).float()
        P = ids.shape[1]
        model.set_kv_cache(batch_size=3, max_seq_length=P + new, device=CUDA)
        steps = [model(ids, mask, pos[:, :P])]
        for t in range(P, P + new):
            steps.append(model(full_ids[:, t : t + 1], full_mask[:, : t + 1], pos[:, t : t + 1]))
        model.clear_kv_cache()
    incremental = torch.cat(steps, 1).float()
    real = full_mask.unsqueeze(-1).expand_as(full)
    assert torch.isfinite(incremental).all()
    torch.testing.assert_close(incremental[real], full[real], rtol=0, atol=atol)


@pytest.mark.parametrize("seed", [0, 1])
def test_greedy_generation_with_cache_equals_recomputation_on_cuda(seed: int) -> None:
    model = make_model(seed)
    ids, mask = left_padded(PROMPTS)
    kw = dict(max_steps=24, max_length=None, tokenizer=TOK, sampling_method="sample_top_k", top_k=1, model=model)
    cached = ARLMPredictor(**kw).predict({"input_ids": ids, "attention_mask": mask})
    recomputed = ARLMPredictor(**kw, use_kv_cache=False).predict({"input_ids": ids, "attention_mask": mask})
    assert cached["ids"].device.type == "cuda"
    assert torch.equal(cached["ids"], recomputed["ids"])
    assert cached["text"] == recomputed["text"]
    assert model.kv_cache_length == 0


def _sdpa_kernels(fn) -> set[str]:
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize()
    return {e.key for e in prof.key_averages() if "scaled_dot_product" in e.key}


@pytest.mark.parametrize("lengths", [[32, 32, 32, 32], [32, 20, 9, 27]], ids=["unpadded", "right-padded"])
def test_bf16_training_step_uses_a_fused_sdpa_kernel_and_3d_mask_matches(lengths: list[int]) -> None:
    model = make_model().train()
    batch = right_padded_lm_batch(lengths, seq=32)
    losses = {}
    for use_3d in (False, True):
        loss_fn = ARLMLoss(model=model, use_3d_mask=use_3d)

        def step(loss_fn: ARLMLoss = loss_fn, use_3d: bool = use_3d) -> None:
            with torch.autocast("cuda", dtype=torch.bfloat16):
                loss = loss_fn(batch)["loss"]
            loss.backward()
            losses[use_3d] = loss.detach().float()

        kernels = _sdpa_kernels(step)
        assert any(k for k in kernels if "flash" in k or "efficient" in k or "cudnn" in k), kernels
        assert not any("math" in k for k in kernels), f"math SDPA fallback in {kernels}"
        model.zero_grad(set_to_none=True)
    assert torch.isfinite(losses[False])
    torch.testing.assert_close(losses[True], losses[False], rtol=0, atol=2e-2)


def test_bf16_adamw_steps_reduce_the_loss_on_cuda() -> None:
    model = make_model().train()
    batch = right_padded_lm_batch([32, 20, 9, 27], seq=32)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, fused=True)
    loss_fn = ARLMLoss(model=model)
    history = []
    for _ in range(30):
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = loss_fn(batch)["loss"]
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        history.append(loss.item())
    assert all(map(lambda v: v == v, history))
    assert history[-1] < 0.5 * history[0], history


def test_cuda_graph_decoding_equals_eager_decoding() -> None:
    model = make_model(seed=2)
    ids, mask = left_padded(PROMPTS)
    kw = dict(max_steps=40, max_length=None, tokenizer=TOK, sampling_method="sample_top_k", top_k=1, model=model)
    eager = ARLMPredictor(**kw, compile_decode=False).predict({"input_ids": ids, "attention_mask": mask})
    graph_predictor = ARLMPredictor(**kw, compile_decode=True)
    for _ in range(2):  # a graph is captured per call: the second must not replay the first call's cache
        out = graph_predictor.predict({"input_ids": ids, "attention_mask": mask})
        assert torch.equal(out["ids"], eager["ids"])
        assert torch.equal(out["attention_mask"], eager["attention_mask"])
    assert graph_predictor._decoder is not None and graph_predictor._decoder.backend == "cuda_graph"
    assert model.kv_cache_length == 0


def test_cuda_graph_step_under_bf16_autocast_matches_the_eager_step() -> None:
    from xlm_core.modules.decode_step import StaticDecoder, cache_slots

    model = make_model(seed=3)
    ids, mask = left_padded(PROMPTS)
    cont = torch.tensor([[20, 21, 22], [30, 31, 32], [40, 41, 42]], device=CUDA)
    full_mask = torch.cat([mask, torch.ones_like(cont, dtype=torch.bool)], 1)
    pos = positions_from_attention_mask(full_mask)
    P, S = ids.shape[1], cache_slots(ids.shape[1] + 3)
    key_mask = torch.zeros(3, S, dtype=torch.bool, device=CUDA)
    key_mask[:, : P + 3] = full_mask
    decoder = StaticDecoder(model, "cuda_graph")
    logits = {}
    with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16):
        for kind in ("eager", "graph"):
            model.set_kv_cache(3, S if kind == "graph" else P + 3, dtype=torch.bfloat16)
            model(ids, mask, pos[:, :P])
            out = []
            for t in range(3):
                if kind == "eager":
                    out.append(model(cont[:, t : t + 1], full_mask[:, : P + t + 1], pos[:, P + t : P + t + 1])[:, -1])
                    continue
                step_in = (cont[:, t : t + 1], pos[:, P + t : P + t + 1], torch.tensor(P + t, device=CUDA), key_mask)
                if t == 0:
                    decoder.begin(*step_in)
                out.append(decoder.step(*step_in).clone())
            decoder.end()
            model.clear_kv_cache()
            logits[kind] = torch.stack(out).float()
    torch.testing.assert_close(logits["graph"], logits["eager"], rtol=0, atol=5e-2)


@pytest.mark.parametrize("bf16", [False, True], ids=["fp32", "bf16-autocast"])
def test_fused_head_loss_equals_the_plain_path_on_cuda(bf16: bool) -> None:
    """The fused linear + cross-entropy (CUDA kernels, bf16 products under autocast) gives the plain
    logits path's loss and gradients."""
    model = make_model().train()
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(7, len(TOK), (3, 24), generator=g).to(CUDA)
    batch = {
        "input_ids": ids,
        "attention_mask": torch.ones_like(ids, dtype=torch.bool),
        "target_ids": torch.cat([ids[:, 1:], torch.full_like(ids[:, :1], -100)], dim=1),
    }
    results = []
    for fused in (True, False):
        model.zero_grad(set_to_none=True)
        with torch.autocast("cuda", torch.bfloat16, enabled=bf16):
            loss = ARLMLoss(model, None, fused=fused, chunk_size=16)(batch)["loss"]
        loss.backward()
        results.append((loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}))
    (fused_loss, fused_grads), (plain_loss, plain_grads) = results
    torch.testing.assert_close(fused_loss, plain_loss, rtol=1e-5, atol=1e-5)
    for name, grad in plain_grads.items():
        assert float((fused_grads[name] - grad).norm()) <= (2e-2 if bf16 else 1e-4) * float(grad.norm()), name
