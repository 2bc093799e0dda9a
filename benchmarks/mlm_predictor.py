"""Is the MLM predictor the slow part of evaluating star_easy_mlm? Times, on the same batches in one process:

- the masked-token loss forward of a validation batch (what the "lm" dataloader costs), and
- ``MLMPredictor.predict`` on the prediction batches of the same graphs (one model forward per
  unmasking step, 14 steps for the 14-position answer slot),

and reports predictor steps/s, generated answer tokens/s and the predictor / loss time ratio. The model
is ``star_easy_mlm_cpu``'s (0.17M parameters) with random weights, or a trained checkpoint with
``--checkpoint`` (a trained model reveals the same number of positions per step, so the cost is the same).

    python benchmarks/mlm_predictor.py [--threads 2] [--graphs 1024] [--batch-size 64] [--checkpoint PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import time

import torch

from xlm_core.config.checks import instantiate
from xlm_core.config.compose import compose_config
from xlm_core.tasks.star_graphs import star_graph_preprocess, star_graph_split
from xlm_core.training.runtime import model_runtime_kwargs
from xlm_mlm.model_mlm import RotaryTransformerMLMModel


def _best(fn, repeats: int) -> float:
    fn()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--graphs", type=int, default=1024, help="test graphs to evaluate")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--checkpoint", default=None, help="a star_easy_mlm_cpu checkpoint (default: random weights)")
    parser.add_argument("--json", default=None, help="also write the results to this file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    cfg = compose_config("mlm", ["experiment=star_easy_mlm_cpu"])
    tokenizer = instantiate(cfg.tokenizer, "tokenizer")
    model = instantiate(cfg.model, "model", **model_runtime_kwargs(RotaryTransformerMLMModel, tokenizer)).eval()
    if args.checkpoint:
        state = torch.load(args.checkpoint, map_location="cpu", weights_only=True)["state_dict"]
        model.load_state_dict({k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")})
    loss_fn = instantiate(cfg.loss, "loss", model=model, tokenizer=tokenizer)
    predictor = instantiate(cfg.predictor, "predictor", model=model, tokenizer=tokenizer)
    val_collator = instantiate(cfg.collator.val, "collator.val", tokenizer=tokenizer)
    pred_collator = instantiate(cfg.collator.prediction, "collator.prediction", tokenizer=tokenizer)

    rows = [star_graph_preprocess(r, tokenizer) for r in star_graph_split("easy", "test")[: args.graphs]]
    chunks = [rows[i : i + args.batch_size] for i in range(0, len(rows), args.batch_size)]
    loss_batches = [val_collator(c) for c in chunks]
    pred_batches = [pred_collator(c) for c in chunks]

    def evaluate_loss() -> None:
        with torch.inference_mode():
            for batch in loss_batches:
                loss_fn(batch)

    steps: list[int] = []

    def predict() -> None:
        steps.clear()
        for batch in pred_batches:
            steps.append(max(predictor.predict(batch)["steps_taken"]))

    loss_s = _best(evaluate_loss, args.repeats)
    pred_s = _best(predict, args.repeats)
    total_steps = sum(steps)
    slot_tokens = len(rows) * int(cfg.block_size)
    result = {
        "graphs": len(rows),
        "batch_size": args.batch_size,
        "threads": args.threads,
        "load_avg_1min": os.getloadavg()[0],
        "loss_eval_s": loss_s,
        "predict_s": pred_s,
        "predictor_over_loss": pred_s / loss_s,
        "unmasking_steps": total_steps,
        "predictor_steps_per_s": total_steps / pred_s,
        "answer_tokens_per_s": slot_tokens / pred_s,
        "graphs_per_s": len(rows) / pred_s,
    }
    print(
        f"star_easy_mlm evaluation of {len(rows)} test graphs (batch {args.batch_size}, {args.threads} threads, "
        f"load {result['load_avg_1min']:.1f}):"
    )
    print(f"  loss forward (lm dataloader):  {loss_s:.3f} s")
    print(
        f"  predictor (prediction loader): {pred_s:.3f} s = {result['predictor_over_loss']:.1f}x the loss forward; "
        f"{total_steps} unmasking steps -> {result['predictor_steps_per_s']:.1f} steps/s, "
        f"{result['answer_tokens_per_s']:,.0f} answer tokens/s, {result['graphs_per_s']:,.0f} graphs/s"
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
