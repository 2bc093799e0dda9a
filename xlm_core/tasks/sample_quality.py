"""How good generated text is, by the two numbers diffusion-LM papers report for unconditional samples.

- :func:`generative_perplexity`: the samples scored by an autoregressive scorer of the same tokenizer,
  ``exp`` of the mean next-token NLL over every scored token (the first token of a sample, its BOS, is
  context only). Lower means text the scorer finds likelier, which repetitive text also is, so
- :func:`unigram_entropy`: each sample's entropy (nats) of its own token frequencies, averaged over the
  samples, always goes next to it: a low entropy flags degenerate, repetitive samples.
- :func:`load_scorer`: the network of a trained checkpoint (its stored config and weights), for the
  tokenizer of the run that scores with it.
- :class:`SampleQuality`: a ``post_hoc_evaluator`` that reports both for a run's prediction rows
  (``{split}/prediction/gen_ppl``, ``unigram_entropy``) with the scorer named by ``eval.scorer_checkpoint``;
  a row's sample is its generated tokens up to and including the first EOS, scored given its prompt.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Bool, Float, Integer
from torch import Tensor as TT

from xlm_core.config.checks import instantiate
from xlm_core.config.tools import to_plain_best_effort
from xlm_core.errors import UsageError
from xlm_core.kit.positions import positions_from_attention_mask
from xlm_core.run.checkpoints import checkpoint_config, config_differences, load_checkpoint
from xlm_core.training.runtime import model_runtime_kwargs

__all__ = [
    "Scorer",
    "unigram_entropy",
    "token_nlls",
    "generative_perplexity",
    "load_scorer",
    "sample_parts",
    "SampleQuality",
]

Scorer = Callable[[Integer[TT, "B L"], Bool[TT, "B L"], Integer[TT, "B L"]], Float[TT, "B L V"]]
"""A causal LM: ``scorer(ids, attention_mask, positions)`` -> next-token logits at every position."""


def unigram_entropy(samples: Sequence[Sequence[int]]) -> float:
    """Mean over ``samples`` of ``-sum_w p(w) log p(w)`` (nats), ``p`` a sample's own token frequencies."""
    entropies = []
    for sample in samples:
        if len(sample) == 0:
            raise ValueError("unigram_entropy: a sample has no tokens; drop empty samples before scoring.")
        n = len(sample)
        entropies.append(-sum(c / n * math.log(c / n) for c in Counter(sample).values()))
    if not entropies:
        raise ValueError("unigram_entropy: no samples given; pass at least one list of token ids.")
    return sum(entropies) / len(entropies)


@torch.no_grad()
def token_nlls(samples: Sequence[Sequence[int]], scorer: Scorer, batch_size: int = 16) -> list[list[float]]:
    """Per sample, ``-log p(x_i | x_<i)`` under ``scorer`` for every token after the first (right-padded batches)."""
    out: list[list[float]] = []
    for first in range(0, len(samples), batch_size):
        chunk = [list(s) for s in samples[first : first + batch_size]]
        if any(len(s) < 2 for s in chunk):
            raise ValueError(
                "token_nlls: a sample has fewer than 2 tokens; each needs a context token and one to score."
            )
        width = max(len(s) for s in chunk)
        ids = torch.zeros(len(chunk), width, dtype=torch.long)
        real = torch.zeros(len(chunk), width, dtype=torch.bool)
        for i, s in enumerate(chunk):
            ids[i, : len(s)] = torch.tensor(s)
            real[i, : len(s)] = True
        logits = scorer(ids, real, positions_from_attention_mask(real)).float()  # (B, L, V)
        nll = torch.nn.functional.cross_entropy(
            logits[:, :-1].transpose(1, 2), ids[:, 1:], reduction="none"
        )  # (B, L-1)
        out += [nll[i, : len(s) - 1].tolist() for i, s in enumerate(chunk)]
    return out


def generative_perplexity(samples: Sequence[Sequence[int]], scorer: Scorer, batch_size: int = 16) -> float:
    """``exp`` of the mean next-token NLL under ``scorer`` over every token after each sample's first."""
    nlls = [x for row in token_nlls(samples, scorer, batch_size) for x in row]
    if not nlls:
        raise ValueError("generative_perplexity: no samples given; pass at least one list of token ids.")
    return math.exp(sum(nlls) / len(nlls))


def load_scorer(
    checkpoint: str | Path, tokenizer: Any, tokenizer_config: dict[str, Any] | None = None
) -> torch.nn.Module:
    """The network of ``checkpoint`` (built from the config stored in it, weights loaded, eval mode).

    With ``tokenizer_config`` (the scoring run's ``tokenizer`` section) the checkpoint's must equal it: a
    scorer of another tokenizer would read the samples' ids as other tokens.
    """
    stored = checkpoint_config(checkpoint)
    if stored is None or not isinstance(stored.get("model"), dict):
        raise UsageError(
            f"scorer checkpoint {checkpoint} holds no xlm config; give a checkpoint an xlm training run wrote."
        )
    if tokenizer_config is not None:
        diffs = config_differences(stored, {"tokenizer": tokenizer_config}, ("tokenizer",))
        if diffs:
            raise UsageError(
                f"scorer checkpoint {checkpoint} has another tokenizer ({'; '.join(diffs[:3])}); "
                "give the checkpoint of a model trained with this run's tokenizer."
            )
    from hydra.utils import get_object

    model_cfg = {k: v for k, v in stored["model"].items() if k not in ("num_embeddings", "padding_idx", "mask_idx")}
    kwargs = model_runtime_kwargs(get_object(model_cfg["_target_"]), tokenizer)
    model = instantiate(model_cfg, "scorer model", **kwargs)
    state = load_checkpoint(checkpoint)["state_dict"]
    model.load_state_dict({k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")})
    return model.eval()


def sample_parts(
    row: dict[str, Any], pad_token_id: int | None, eos_token_id: int | None
) -> tuple[list[int], list[int]]:
    """A prediction row's ``(context, generated)``: its prompt tokens, and the tokens generated after them up
    to and including the first EOS (padding dropped from both)."""
    ids, start = list(row["ids"]), int(row["output_start_idx"])
    generated = [t for t in ids[start:] if t != pad_token_id]
    if eos_token_id is not None and eos_token_id in generated:
        generated = generated[: generated.index(eos_token_id) + 1]
    return [t for t in ids[:start] if t != pad_token_id], generated


class SampleQuality:
    """Post-hoc evaluator of text samples: ``unigram_entropy`` of the generated tokens, and ``gen_ppl`` under
    the scorer at ``scorer_checkpoint`` when one is named (module docstring)."""

    def __init__(
        self,
        scorer_checkpoint: str | None = None,
        tokenizer_config: Mapping[str, Any] | None = None,
        batch_size: int = 16,
    ) -> None:
        self.scorer_checkpoint = str(scorer_checkpoint) if scorer_checkpoint else None
        # the run's tokenizer section, given with _recursive_: false so that Hydra leaves it a config
        self.tokenizer_config = to_plain_best_effort(tokenizer_config) if tokenizer_config is not None else None
        self.batch_size = batch_size
        self._scorer: torch.nn.Module | None = None

    def eval(
        self, predictions: list[dict[str, Any]], tokenizer: Any = None, **kwargs: Any
    ) -> tuple[list[dict[str, Any]], dict[str, float]]:
        """Score ``predictions`` (rows with ``ids`` and ``output_start_idx``); returns (rows, metrics)."""
        rows = [dict(p) for p in predictions]
        parts = [sample_parts(r, tokenizer.pad_token_id, tokenizer.eos_token_id) for r in rows]
        kept = [i for i, (context, generated) in enumerate(parts) if context and generated]
        if not kept:
            return rows, {}
        metrics = {"unigram_entropy": unigram_entropy([parts[i][1] for i in kept])}
        if self.scorer_checkpoint:
            if self._scorer is None:
                self._scorer = load_scorer(self.scorer_checkpoint, tokenizer, self.tokenizer_config)
            nlls = token_nlls([parts[i][0] + parts[i][1] for i in kept], self._scorer, self.batch_size)
            flat: list[float] = []
            for i, row_nll in zip(kept, nlls):
                own = row_nll[-len(parts[i][1]) :]  # the generated tokens' NLLs (not the prompt's)
                rows[i]["sample_nll"] = sum(own) / len(own)
                flat += own
            metrics["gen_ppl"] = math.exp(sum(flat) / len(flat))
        return rows, metrics
