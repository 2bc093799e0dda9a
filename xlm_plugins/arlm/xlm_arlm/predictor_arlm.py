"""Left-to-right generation for ARLM (docs/arlm.md, "Predictor").

One forward over the (left-padded) prompt fills the model's key/value cache; then each step feeds
only the newly sampled token. A model without ``set_kv_cache`` (or ``use_kv_cache=False``) is
handled by recomputing the whole prefix every step, which produces the same ids. With
``compile_decode`` the steps run through the model's static-shape ``decode_step``, compiled on the
CPU or captured as a CUDA graph on a GPU (``xlm_core.modules.decode_step``).
"""

from __future__ import annotations

import inspect
import time
import warnings
from collections.abc import Callable
from typing import Any, Literal

import torch
from jaxtyping import Bool, Float, Integer
from torch import Tensor as TT

from xlm_arlm.collators_arlm import prepare_prefix_ids_arlm
from xlm_arlm.types_arlm import ARLMPredictionDict
from xlm_core.kit.positions import positions_from_attention_mask
from xlm_core.kit.prediction import prediction_rows
from xlm_core.kit.sampling import SeededGenerators, sample_from_logits, sample_from_top_k, sample_from_top_p
from xlm_core.modules.decode_step import StaticDecoder, cache_slots, decode_backend
from xlm_core.training.precision import autocast_dtype, inference_autocast, inference_grad_mode

__all__ = ["ARLMPredictor", "SAMPLING_METHODS", "COMPILE_BREAK_EVEN_STEPS"]

SAMPLING_METHODS = ("sample", "sample_top_k", "sample_top_p")
# compile_decode="auto": decoding steps run eagerly before compiling pays off, per (device type,
# "fp32" | "mixed" = under autocast). benchmarks/decode_step.py measures compile cost / time saved per
# step; the CPU values sit between its warm- and cold-cache break-evens (docs/performance.md); CUDA's
# is an estimate (a capture costs about three eager steps) until measured on a GPU.
COMPILE_BREAK_EVEN_STEPS = {
    ("cpu", "mixed"): 20_000,
    ("cpu", "fp32"): 100_000,
    ("cuda", "mixed"): 16,
    ("cuda", "fp32"): 16,
}


class ARLMPredictor:
    """Generates a continuation of each prompt with a KV cache, one token per step.

    Args:
        max_steps: most tokens generated per prompt.
        max_length: cap on prompt (with its left padding) + generated length; ``None`` for no cap.
        tokenizer: supplies ``eos_token_id`` (stops a row) and ``pad_token_id`` (fills finished rows;
            EOS is used when the tokenizer has no pad token) and decodes the output.
        sampling_method: "sample" (full distribution), "sample_top_k" (``top_k`` most likely;
            ``top_k=1`` is greedy) or "sample_top_p" (nucleus with mass ``top_p``).
        top_k: the k of sample_top_k.
        top_p: the probability mass of sample_top_p.
        model: the ARLM model (may be assigned later as ``predictor.model``); any callable
            ``model(ids, attention_mask, positions) -> logits`` works, with ``set_kv_cache`` /
            ``clear_kv_cache`` and ``logits_to_keep`` used when it has them.
        temperature: logits are divided by it before sampling.
        seed: when set, sampling draws from a generator seeded with it, so runs are reproducible.
        use_kv_cache: False recomputes the whole prefix each step (reference / benchmark path).
        stop_check_interval: steps between checks that every row has finished (each check
            synchronises with the device; the output does not depend on this value).
        compile_decode: run the decoding steps through the model's static-shape ``decode_step``,
            torch.compile'd on the CPU or replayed as a CUDA graph on a GPU. ``True``: always (the
            model must have ``decode_step``); ``False``: the eager path; ``"auto"``: eagerly until this
            predictor has decoded ``COMPILE_BREAK_EVEN_STEPS[(device type, precision)]`` steps (as
            many as the compile or capture costs), compiled from then on. Greedy ids are the eager path's (tested); under bf16
            autocast, rounding may differ in rare near-ties.
        target_order: the order the model was trained to write answers in (the seq2seq collators'
            ``target_order``). With "reverse" the generated tokens before EOS are turned back, so
            ``ids``, ``text`` and the metrics see the answer forward, as the reference is.
        top: the name ``top_k`` had before xlm-arlm 0.2; still accepted, with a DeprecationWarning, until 0.3.
        p: the name ``top_p`` had before xlm-arlm 0.2; likewise.
    """

    def __init__(
        self,
        max_steps: int,
        max_length: int | None,
        tokenizer: Any,
        sampling_method: Literal["sample", "sample_top_k", "sample_top_p"] = "sample",
        top_k: int = 1000,
        top_p: float = 0.9,
        model: Callable[..., Any] | None = None,
        temperature: float = 1.0,
        seed: int | None = None,
        use_kv_cache: bool = True,
        stop_check_interval: int = 8,
        compile_decode: bool | Literal["auto"] = "auto",
        target_order: Literal["forward", "reverse"] = "forward",
        *,
        top: int | None = None,
        p: float | None = None,
    ) -> None:
        top_k, top_p = _renamed_sampling_options(top_k, top_p, top, p)
        if tokenizer is None:
            raise ValueError("ARLMPredictor needs a tokenizer (for EOS/PAD ids and decoding).")
        if not isinstance(max_steps, int) or max_steps < 0:
            raise ValueError(f"max_steps must be an int >= 0, got {max_steps!r}.")
        if max_length is not None and (not isinstance(max_length, int) or max_length < 1):
            raise ValueError(f"max_length must be an int >= 1 or None (no cap), got {max_length!r}.")
        if sampling_method not in SAMPLING_METHODS:
            raise ValueError(f"Unknown sampling_method {sampling_method!r}; use one of {', '.join(SAMPLING_METHODS)}.")
        if sampling_method == "sample_top_k" and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
            raise ValueError(f"sample_top_k needs an integer top_k >= 1, got {top_k!r}.")
        if sampling_method == "sample_top_p" and not 0.0 < top_p <= 1.0:
            raise ValueError(f"sample_top_p needs 0 < top_p <= 1, got {top_p!r}.")
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature!r}; use sample_top_k with top_k=1 for greedy.")
        if not isinstance(stop_check_interval, int) or stop_check_interval < 1:
            raise ValueError(f"stop_check_interval must be an int >= 1, got {stop_check_interval!r}.")
        if compile_decode not in (True, False, "auto"):
            raise ValueError(f"compile_decode must be true, false or 'auto', got {compile_decode!r}.")
        if target_order not in ("forward", "reverse"):
            raise ValueError(f"target_order must be 'forward' or 'reverse', got {target_order!r}.")
        eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
        if pad is None and eos is None:
            raise ValueError("The tokenizer has neither a pad nor an EOS token; ARLMPredictor needs one to pad rows.")
        self.max_steps = max_steps
        self.max_length = max_length
        self.tokenizer = tokenizer
        self.sampling_method = sampling_method
        self.top_k = top_k
        self.top_p = top_p
        self.model = model
        self.temperature = float(temperature)
        self.seed = seed
        self.use_kv_cache = use_kv_cache
        self.stop_check_interval = stop_check_interval
        self.compile_decode = compile_decode
        self.target_order = target_order
        self.eos_token_id: int | None = eos
        self.pad_token_id: int = pad if pad is not None else eos
        self._generators = SeededGenerators(seed)
        self._decoder: StaticDecoder | None = None
        self._eager_steps: dict[tuple[str, str], int] = {}  # decoding steps run eagerly so far

    # ------------------------------------------------------------------ sampling
    def sample(
        self, logits: Float[TT, "batch vocab"], generator: torch.Generator | None = None
    ) -> Integer[TT, " batch"]:
        """Draw the next token of each row with the configured method and temperature."""
        if self.sampling_method == "sample_top_k":
            return sample_from_top_k(self.top_k, logits, self.temperature, generator)
        if self.sampling_method == "sample_top_p":
            return sample_from_top_p(self.top_p, logits, self.temperature, generator)
        return sample_from_logits(logits, self.temperature, generator)

    # ------------------------------------------------------------------ generation
    def _require_model(self) -> Any:
        if self.model is None:
            raise ValueError("ARLMPredictor.model is None; pass model= or set predictor.model before predicting.")
        return self.model

    @staticmethod
    def _check_prompt(input_ids: TT, attention_mask: TT) -> None:
        if input_ids.dim() != 2 or attention_mask.shape != input_ids.shape:
            raise ValueError(
                f"input_ids and attention_mask must both be (batch, prompt_len); got {tuple(input_ids.shape)} "
                f"and {tuple(attention_mask.shape)}."
            )
        if input_ids.shape[1] == 0:
            raise ValueError("Empty prompts (prompt_len 0): give every row at least one token, e.g. a BOS.")
        # Left padding: each row is False* True+ (non-decreasing, last column real).
        left_padded = bool((attention_mask[:, 1:] >= attention_mask[:, :-1]).all() & attention_mask[:, -1].all())
        if not left_padded:
            raise ValueError(
                "Prompts must be left-padded with at least one real token per row (attention_mask rows like "
                "0..0 1..1); use ARLMSeq2SeqPredCollator, or add a BOS token to empty prompts."
            )

    def _static_decoder(self, model: Any, device: torch.device, num_new: int) -> StaticDecoder | None:
        """The compiled / graph-captured decoder for this call, or None for the eager steps."""
        if self.compile_decode is False:
            return None
        backend = decode_backend(device)
        usable = backend is not None and hasattr(model, "decode_step")
        if self.compile_decode is True and not usable:
            raise ValueError(
                f"compile_decode=true needs a model with decode_step on a CPU or CUDA device; got "
                f"{type(model).__name__} on {device}. Set compile_decode to false or 'auto'."
            )
        if self.compile_decode == "auto":
            key = _break_even_key(device)
            break_even = COMPILE_BREAK_EVEN_STEPS.get(key)
            if not usable or break_even is None or self._eager_steps.get(key, 0) + num_new < break_even:
                return None
        assert backend is not None
        if self._decoder is None or self._decoder.model is not model or self._decoder.backend != backend:
            self._decoder = StaticDecoder(model, backend)
        return self._decoder

    def _num_new_tokens(self, prompt_len: int, max_new_tokens: int | None) -> int:
        steps = self.max_steps if max_new_tokens is None else max_new_tokens
        if self.max_length is not None:
            steps = min(steps, self.max_length - prompt_len)
        return max(steps, 0)

    def _generate(
        self,
        model: Any,
        prompt_ids: Integer[TT, "batch prompt_len"],
        prompt_mask: Bool[TT, "batch prompt_len"],
        num_new: int,
        generator: torch.Generator | None,
    ) -> tuple[Integer[TT, "batch out_len"], Bool[TT, "batch out_len"]]:
        """Generate up to ``num_new`` tokens after each prompt; return ids and real-token mask."""
        batch_size, prompt_len = prompt_ids.shape
        device = prompt_ids.device
        total = prompt_len + num_new
        ids = torch.full((batch_size, total), self.pad_token_id, dtype=torch.long, device=device)
        ids[:, :prompt_len] = prompt_ids
        feed_mask = torch.ones((batch_size, total), dtype=torch.bool, device=device)
        feed_mask[:, :prompt_len] = prompt_mask
        prompt_positions = positions_from_attention_mask(prompt_mask)
        num_real = prompt_mask.long().sum(dim=1)
        if num_new == 0:
            return ids, feed_mask

        eos = self.eos_token_id
        finished = torch.zeros(batch_size, dtype=torch.bool, device=device)
        finish_step = torch.full((batch_size,), num_new, dtype=torch.long, device=device)
        use_cache = self.use_kv_cache and hasattr(model, "set_kv_cache")
        decoder = self._static_decoder(model, device, num_new) if use_cache and num_new > 1 else None
        # The last generated token is never fed back, so the cache needs total - 1 slots.
        slots = cache_slots(total - 1) if decoder is not None else total - 1
        steps_done = 0
        if use_cache:
            # Under autocast keys/values are computed in its dtype: store them so (None: the model's dtype).
            model.set_kv_cache(batch_size, slots, device=device, dtype=autocast_dtype(device.type))
        last_only = {"logits_to_keep": 1} if _accepts_keyword(model, "logits_to_keep") else {}
        try:
            logits = model(prompt_ids, prompt_mask, prompt_positions, **last_only)
            if decoder is not None:
                key_mask = torch.zeros((batch_size, slots), dtype=torch.bool, device=device)
                key_mask[:, : total - 1] = feed_mask[:, : total - 1]
                slot_of_step = torch.arange(prompt_len, total - 1, device=device)
            for step in range(num_new):
                token = self.sample(logits[:, -1], generator)
                token = torch.where(finished, self.pad_token_id, token)
                ids[:, prompt_len + step] = token
                if eos is not None:
                    newly = ~finished & (token == eos)
                    finish_step = torch.where(newly, step, finish_step)
                    finished |= newly
                steps_done = step + 1
                if steps_done == num_new:
                    break
                if eos is not None and steps_done % self.stop_check_interval == 0 and bool(finished.all()):
                    break
                cur = prompt_len + steps_done
                if decoder is not None:
                    step_in = (ids[:, cur - 1 : cur], (num_real + step).unsqueeze(1), slot_of_step[step], key_mask)
                    if step == 0:
                        decoder.begin(*step_in)
                    logits = decoder.step(*step_in).unsqueeze(1)
                elif use_cache:
                    new_positions = (num_real + step).unsqueeze(1)
                    logits = model(ids[:, cur - 1 : cur], feed_mask[:, :cur], new_positions)
                else:
                    gen_positions = num_real.unsqueeze(1) + torch.arange(steps_done, device=device)
                    positions = torch.cat([prompt_positions, gen_positions], dim=1)
                    logits = model(ids[:, :cur], feed_mask[:, :cur], positions, **last_only)
        finally:
            if decoder is not None:
                decoder.end()
            if use_cache:
                model.clear_kv_cache()
        if use_cache and decoder is None:
            key = _break_even_key(device)
            self._eager_steps[key] = self._eager_steps.get(key, 0) + steps_done

        # Drop trailing all-PAD columns left by a late stop check, so output is independent of it.
        out_new = steps_done
        if eos is not None and bool(finished.all()):
            out_new = int(finish_step.max().item()) + 1
        ids = ids[:, : prompt_len + out_new]
        gen_mask = torch.arange(out_new, device=device).unsqueeze(0) <= finish_step.unsqueeze(1)
        out_mask = torch.cat([prompt_mask, gen_mask], dim=1)
        return ids, out_mask

    def predict(
        self,
        batch: dict[str, Any],
        batch_idx: int | None = None,
        dataloader_idx: int | None = None,
        dataloader_name: str | None = None,
        max_new_tokens: int | None = None,
        generator: torch.Generator | None = None,
    ) -> ARLMPredictionDict:
        """Continue each left-padded prompt of ``batch`` (``input_ids``, ``attention_mask``).

        Generated tokens are ``ids[:, output_start_idx:]``; a row stops at its first generated EOS
        and is PAD afterwards (``attention_mask`` False there). ``max_new_tokens`` overrides
        ``max_steps`` for this call; ``generator`` overrides the seeded one.
        """
        model = self._require_model()
        self._check_target_order(batch)
        input_ids = batch["input_ids"]
        attention_mask = batch.get("attention_mask")
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids, dtype=torch.bool)
        attention_mask = attention_mask.to(torch.bool)
        self._check_prompt(input_ids, attention_mask)
        prompt_len = input_ids.shape[1]
        num_new = self._num_new_tokens(prompt_len, max_new_tokens)
        if generator is None:
            generator = self._generators.on(input_ids.device)

        was_training = bool(getattr(model, "training", False))
        if hasattr(model, "eval"):
            model.eval()
        start = time.perf_counter()
        try:
            with inference_grad_mode(input_ids.device.type), inference_autocast(input_ids.device.type):
                ids, out_mask = self._generate(model, input_ids.long(), attention_mask, num_new, generator)
            if ids.device.type == "cuda":
                torch.cuda.synchronize(ids.device)
            elapsed = time.perf_counter() - start
        finally:
            if was_training:
                model.train()
        # Clone outside inference mode so callers may use the tensors freely.
        ids, out_mask = ids.clone(), out_mask.clone()
        if self.target_order == "reverse":
            ids = self._answer_forward(ids, prompt_len)
        positions = positions_from_attention_mask(out_mask)
        ids_list = ids.tolist()
        batch_size = len(ids_list)
        return {
            "text": self.tokenizer.batch_decode([row[prompt_len:] for row in ids_list], skip_special_tokens=True),
            "text_with_spl_tokens": self.tokenizer.batch_decode(ids_list, skip_special_tokens=False),
            "ids": ids,
            "attention_mask": out_mask,
            "positions": positions,
            "time_taken": [elapsed / batch_size] * batch_size,
            "output_start_idx": prompt_len,
        }

    def _check_target_order(self, batch: dict[str, Any]) -> None:
        """Refuse a seq2seq prediction batch collated with another ``target_order`` than this predictor's."""
        recorded = (batch.get("metadata") or {}).get("target_order")
        if recorded is None and "target_ids" not in batch:
            return  # bare prompts (generate()): nothing to compare
        order = recorded[0] if recorded else "forward"
        if order != self.target_order:
            raise ValueError(
                f"The prediction batch was collated with target_order={order} but the predictor has "
                f"target_order={self.target_order}; set both with the top-level key target_order=... "
                "(model_type arlm_seq2seq passes it to the collators and the predictor)."
            )

    def _answer_forward(self, ids: Integer[TT, "batch out_len"], start: int) -> Integer[TT, "batch out_len"]:
        """Turn each row's generated tokens before its first EOS (all of them without one) back to forward order."""
        generated = ids[:, start:]  # (B, N)
        width = generated.shape[1]
        cols = torch.arange(width, device=ids.device).unsqueeze(0)  # (1, N)
        length = torch.full((ids.shape[0], 1), width, dtype=torch.long, device=ids.device)
        if self.eos_token_id is not None:
            is_eos = generated == self.eos_token_id
            length = torch.where(is_eos.any(1, keepdim=True), is_eos.long().argmax(1, keepdim=True), length)
        source = torch.where(cols < length, length - 1 - cols, cols)  # (B, N)
        return torch.cat([ids[:, :start], generated.gather(1, source)], dim=1)

    # ------------------------------------------------------------------ reporting
    def to_dict(
        self,
        batch: dict[str, Any],
        preds: ARLMPredictionDict,
        batch_idx: int | None = None,
        dataloader_idx: int | None = None,
        dataloader_name: str | None = None,
    ) -> list[dict[str, Any]]:
        """One JSON-serialisable row per example (``xlm_core.kit.prediction.prediction_rows``): generated text,
        full row with special tokens, ids, the prompt text, the target text (when the batch has ``target_ids``),
        time taken, and the row's ``metadata`` fields (e.g. the gold ``answer`` that post-hoc evaluators score)."""
        return prediction_rows(batch, preds, self.tokenizer, self.pad_token_id)

    # ------------------------------------------------------------------ convenience
    def generate(
        self,
        prompts: list[str],
        max_new_tokens: int | None = None,
        add_bos: bool = False,
        batch_size: int | None = None,
        generator: torch.Generator | None = None,
    ) -> list[str]:
        """Tokenize ``prompts``, left-pad, generate, and return the generated continuations.

        ``add_bos`` appends the tokenizer's BOS to each prompt (as the seq2seq collator does when
        the model was trained with a BOS between prompt and target).
        """
        if isinstance(prompts, str):
            raise TypeError("generate() takes a list of prompt strings; wrap a single prompt as [prompt].")
        model = self._require_model()
        try:
            device = next(model.parameters()).device
        except (AttributeError, StopIteration):
            device = torch.device("cpu")
        encoded = []
        for text in prompts:
            token_ids = list(self.tokenizer.encode(text, add_special_tokens=False))
            if add_bos:
                if self.tokenizer.bos_token_id is None:
                    raise ValueError("add_bos=True but the tokenizer has no BOS token.")
                token_ids.append(self.tokenizer.bos_token_id)
            if not token_ids:
                raise ValueError(f"Prompt {text!r} encodes to no tokens; pass add_bos=True to start from BOS.")
            encoded.append(token_ids)
        chunk = batch_size or max(len(encoded), 1)
        outputs: list[str] = []
        for begin in range(0, len(encoded), chunk):
            padded = prepare_prefix_ids_arlm(encoded[begin : begin + chunk], self.pad_token_id, truncate="max")
            input_ids = torch.tensor(padded["input_ids"], dtype=torch.long, device=device)
            attention_mask = torch.tensor(padded["attention_mask"], dtype=torch.bool, device=device)
            preds = self.predict(
                {"input_ids": input_ids, "attention_mask": attention_mask},
                max_new_tokens=max_new_tokens,
                generator=generator,
            )
            outputs.extend(preds["text"])
        return outputs


def _renamed_sampling_options(top_k: int, top_p: float, top: int | None, p: float | None) -> tuple[int, float]:
    """``top_k``/``top_p``, taking the pre-0.2 names ``top``/``p`` (with a DeprecationWarning) when given."""
    for old, new, value in (("top", "top_k", top), ("p", "top_p", p)):
        if value is not None:
            warnings.warn(
                f"ARLMPredictor({old}=...) is deprecated and goes away in xlm-arlm 0.3; write {new}={value!r} "
                f"(in a config: predictor.{new})",
                DeprecationWarning,
                stacklevel=3,
            )
    return (top_k if top is None else top), (top_p if p is None else p)


def _break_even_key(device: torch.device) -> tuple[str, str]:
    """(device type, "mixed" under autocast else "fp32"): the key of COMPILE_BREAK_EVEN_STEPS."""
    return device.type, "fp32" if autocast_dtype(device.type) is None else "mixed"


def _accepts_keyword(model: Any, name: str) -> bool:
    """Whether ``model.forward`` takes keyword ``name`` (models outside xlm_arlm may not)."""
    forward = getattr(model, "forward", model)
    try:
        return name in inspect.signature(forward).parameters
    except (TypeError, ValueError):
        return False
