"""Generation speed of ARLMPredictor with the KV cache vs. recomputing the whole prefix every step.

Model: RotaryTransformerARLMModel, d_model 256, 4 layers, 4 heads, vocab 1000 (random weights).
Workload: batch 8, 32-token prompts, 224 new tokens (greedy, EOS suppressed so every step runs).
Both variants run in this process on the same model and prompts and must produce the same ids.

    python benchmarks/kv_cache_generation.py [--threads 2] [--repeats 1] [--device cpu]
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn

from xlm_arlm.model_arlm import RotaryTransformerARLMModel
from xlm_arlm.predictor_arlm import ARLMPredictor
from xlm_core.data.simple_tokenizer import SimpleSpaceTokenizer


class NoEOS(nn.Module):
    """Wraps the model so EOS is never the argmax: every row generates all ``max_steps`` tokens."""

    def __init__(self, base: RotaryTransformerARLMModel, eos_id: int) -> None:
        super().__init__()
        self.base, self.eos_id = base, eos_id

    def forward(self, x_t, attention_mask=None, positions=None, token_type_ids=None):
        logits = self.base(x_t, attention_mask, positions)
        logits[..., self.eos_id] = float("-inf")
        return logits

    def set_kv_cache(self, *args, **kwargs) -> None:
        self.base.set_kv_cache(*args, **kwargs)

    def clear_kv_cache(self) -> None:
        self.base.clear_kv_cache()


def timed_generate(
    predictor: ARLMPredictor, batch: dict[str, torch.Tensor], repeats: int
) -> tuple[torch.Tensor, float]:
    """Best wall time over ``repeats`` runs (after one short warm-up) and the generated ids."""
    predictor.predict(batch, max_new_tokens=4)
    best, ids = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        ids = predictor.predict(batch)["ids"]
        best = min(best, time.perf_counter() - start)
    return ids, best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--prompt-len", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=224)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    tokenizer = SimpleSpaceTokenizer.for_numbers(993)  # 7 special tokens + 993 words = 1000 ids
    base = (
        RotaryTransformerARLMModel(
            num_embeddings=len(tokenizer),
            d_model=256,
            num_layers=4,
            nhead=4,
            padding_idx=tokenizer.pad_token_id,
            dropout=0.0,
            rotary_emb_dim=64,
            max_length=args.prompt_len + args.new_tokens,
        )
        .to(args.device)
        .eval()
    )
    model = NoEOS(base, tokenizer.eos_token_id)
    g = torch.Generator().manual_seed(1)
    input_ids = torch.randint(7, len(tokenizer), (args.batch_size, args.prompt_len), generator=g).to(args.device)
    batch = {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids, dtype=torch.bool)}

    results = {}
    for name, use_cache in (("kv_cache", True), ("recompute", False)):
        predictor = ARLMPredictor(
            args.new_tokens,
            None,
            tokenizer,
            sampling_method="sample_top_k",
            top_k=1,
            model=model,
            use_kv_cache=use_cache,
        )
        ids, seconds = timed_generate(predictor, batch, args.repeats)
        new_tokens = (ids.shape[1] - args.prompt_len) * args.batch_size
        results[name] = (ids, seconds, new_tokens)
        print(f"{name:>10}: {new_tokens} tokens in {seconds:.2f} s -> {new_tokens / seconds:,.0f} tokens/s")

    same = torch.equal(results["kv_cache"][0], results["recompute"][0])
    speedup = results["recompute"][1] / results["kv_cache"][1]
    print(
        f"config: d_model 256, 4 layers, 4 heads, vocab 1000, batch {args.batch_size}, "
        f"prompt {args.prompt_len}, new tokens {args.new_tokens}, threads {args.threads}, device {args.device}"
    )
    print(f"identical ids: {same}")
    print(f"speed-up of the KV cache over full recomputation: {speedup:.1f}x")
    if not same:
        raise SystemExit("KV-cache and recomputed generations differ")


if __name__ == "__main__":
    main()
