"""ARLM collators, the empty dataset for unconditional generation, and batch helpers (docs/arlm.md).

Layout decisions (see also types_arlm.py):
- ``attention_mask`` is bool; ``target_ids[i]`` is the token at ``i + 1`` or -100.
- Seq2seq rows are ``[BOS?] prompt [BOS?] target [EOS?]`` (``add_bos`` = "input" puts BOS before
  the prompt, "output" between prompt and target). A position is scored only when it is a real
  token and the next position holds a target token or the closing EOS (docs/arlm.md has the worked example).
- ``token_type_ids``: 0 on the prompt side (prompt, BOS, padding), 1 for target tokens and EOS.
- ``DefaultARLMCollator`` does not prepend BOS unless ``add_bos=True`` (targets are built from the
  raw ids); set it when the model should later generate unconditionally from BOS.
- Truncation is counted on each collator (``num_truncated`` / ``num_examples``) and logged.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import torch
from torch.utils.data import Dataset

from xlm_core.data.padding import TruncationCounter, pad_list, truncate_list
from xlm_core.kit.collate import (
    TruncationCounting,
    required_token_id,
    row_metadata,
    tokenizer_vocab_size,
    validate_examples,
)
from xlm_core.kit.documents import check_document_options, document_fields
from xlm_core.plugin.protocols import Tokenizer

from .types_arlm import (
    IGNORE_INDEX,
    ARLMBatch,
    ARLMSeq2SeqBatch,
    ARLMSeq2SeqPredictionBatch,
)

__all__ = [
    "DefaultARLMCollator",
    "ARLMSeq2SeqCollator",
    "ARLMSeq2SeqPredCollator",
    "ARLMEmptyDataset",
    "prepare_prefix_ids_arlm",
    "print_batch_arlm",
]

AddBos = Literal["input", "output"] | None
Truncate = Literal["block", "max"]
TargetOrder = Literal["forward", "reverse"]
TARGET_ORDERS = ("forward", "reverse")


# region: validation


def _check_target_order(target_order: Any) -> None:
    if target_order not in TARGET_ORDERS:
        raise ValueError(
            f"target_order={target_order!r} is not supported; use 'forward' (the answer as written) or 'reverse' "
            "(its tokens last to first; the predictor turns generated answers back)."
        )


def _check_truncate(truncate: str) -> None:
    if truncate not in ("block", "max"):
        raise ValueError(
            f"truncate={truncate!r} is not supported; use 'block' (pad to the block size) "
            "or 'max' (pad to the longest example, capped at the block size)."
        )


def _check_add_bos(add_bos: Any) -> None:
    if add_bos not in (None, "input", "output"):
        raise ValueError(
            f"add_bos={add_bos!r} is not supported; use null, 'input' (BOS before the prompt) "
            "or 'output' (BOS between prompt and target)."
        )


# region: helpers


def _fit_prompt(prompt: list[int], head: list[int], tail: list[int], max_len: int | None) -> tuple[list[int], bool]:
    """``head + prompt + tail``, cutting the prompt from the left to fit ``max_len``."""
    if max_len is None:
        return head + prompt + tail, False
    budget = max_len - len(head) - len(tail)
    if budget < 0:
        raise ValueError(
            f"A prompt block of {max_len} tokens cannot hold the {len(head) + len(tail)} BOS "
            "token(s); raise input_block_size / block_size."
        )
    kept, cut = truncate_list(prompt, budget, side="left")
    return head + kept + tail, cut


def _bos_parts(add_bos: AddBos, bos_token_id: int | None) -> tuple[list[int], list[int]]:
    _check_add_bos(add_bos)
    if add_bos is not None and bos_token_id is None:
        raise ValueError(f"add_bos={add_bos!r} needs a bos_token_id; pass one or set add_bos=None.")
    head = [bos_token_id] if add_bos == "input" else []
    tail = [bos_token_id] if add_bos == "output" else []
    return head, tail  # type: ignore[return-value]


def prepare_prefix_ids_arlm(
    prefix_ids: Sequence[Sequence[int]],
    pad_token_id: int,
    bos_token_id: int | None = None,
    eos_token_id: int | None = None,
    max_seq_len: int | None = None,
    truncate: Truncate = "block",
    add_bos: AddBos = None,
    add_eos: bool = False,
) -> dict[str, list[list[int]] | list[list[bool]] | list[bool]]:
    """Left-pad prompts (with optional BOS/EOS) into equal-length rows for generation.

    Each row is ``[BOS if add_bos="input"] prefix [BOS if add_bos="output"] [EOS if add_eos]``;
    prompts longer than ``max_seq_len`` lose tokens from the left (special tokens are kept).
    Width: ``max_seq_len`` for truncate="block", the longest row for truncate="max".
    Returns ``input_ids``, ``attention_mask`` (True = real) and per-row ``truncated`` flags.
    """
    _check_truncate(truncate)
    if truncate == "block" and max_seq_len is None:
        raise ValueError("truncate='block' needs max_seq_len; pass it or use truncate='max'.")
    head, tail = _bos_parts(add_bos, bos_token_id)
    if add_eos:
        if eos_token_id is None:
            raise ValueError("add_eos=True needs an eos_token_id; pass one or set add_eos=False.")
        tail = tail + [eos_token_id]
    rows, truncated = [], []
    for prefix in prefix_ids:
        row, cut = _fit_prompt(list(prefix), head, tail, max_seq_len)
        rows.append(row)
        truncated.append(cut)
    width = max_seq_len if truncate == "block" else max((len(r) for r in rows), default=0)
    assert width is not None
    return {
        "input_ids": [pad_list(r, width, pad_token_id, side="left") for r in rows],
        "attention_mask": [[False] * (width - len(r)) + [True] * len(r) for r in rows],
        "truncated": truncated,
    }


def _shifted_targets(ids: list[int], real: list[bool], scored: list[bool]) -> list[int]:
    """``target[i] = ids[i+1]`` when position i is real and position i+1 is ``scored``."""
    targets = [IGNORE_INDEX] * len(ids)
    for i in range(len(ids) - 1):
        if real[i] and scored[i + 1]:
            targets[i] = ids[i + 1]
    return targets


def print_batch_arlm(
    batch: Mapping[str, Any],
    tokenizer: Tokenizer,
    max_examples: int = 4,
    print_fn: Callable[[str], Any] | None = print,
) -> str:
    """Decode the first ``max_examples`` rows of an ARLM batch (prompt, input, target) for debugging.

    Returns the text (and prints it with ``print_fn`` unless that is None).
    """
    input_ids = batch["input_ids"]
    mask = batch.get("attention_mask")
    mask = torch.ones_like(input_ids, dtype=torch.bool) if mask is None else mask.bool()
    targets = batch.get("target_ids")
    types = batch.get("token_type_ids")
    lines = [f"ARLM batch: input_ids {tuple(input_ids.shape)}"]
    if targets is not None:
        lines[0] += f", target_ids {tuple(targets.shape)}"
    for i in range(min(max_examples, input_ids.shape[0])):
        real = input_ids[i][mask[i]]
        lines.append(f"[{i}] input : {tokenizer.decode(real.tolist())!r}")
        if types is not None and types.shape == input_ids.shape and bool(types[i].any()):
            prompt = input_ids[i][mask[i] & (types[i] == 0)]
            lines.append(f"[{i}] prompt: {tokenizer.decode(prompt.tolist())!r}")
        if targets is not None:
            tgt = targets[i][targets[i] != IGNORE_INDEX]
            lines.append(f"[{i}] target: {tokenizer.decode(tgt.tolist())!r}")
    text = "\n".join(lines)
    if print_fn is not None:
        print_fn(text)
    return text


# region: datasets


class ARLMEmptyDataset(Dataset):
    """``num_examples`` empty seq2seq examples, for unconditional generation.

    Pair it with ``ARLMSeq2SeqPredCollator``, which gives empty prompts a start token (BOS).
    """

    def __init__(self, tokenizer: Tokenizer, num_examples: int) -> None:
        if num_examples < 0:
            raise ValueError(f"num_examples={num_examples} must be >= 0.")
        self.tokenizer = tokenizer
        self.num_examples = num_examples

    def __len__(self) -> int:
        return self.num_examples

    def __getitem__(self, index: int) -> dict[str, list[int]]:
        if not -self.num_examples <= index < self.num_examples:
            raise IndexError(f"index {index} out of range for {self.num_examples} examples")
        return {"prompt_ids": [], "input_ids": []}


# region: collators


class DefaultARLMCollator(TruncationCounting):
    """LM pre-training: ``[BOS?] ids [EOS?]`` right-padded; ``target_ids = input_ids[1:] + [-100]``.

    Padding targets are -100. Sequences longer than ``block_size`` are cut from the right.

    Packed rows (``xlm_core.data.packing.tokenize_and_pack``) carry ``document_lengths``; with
    ``document_positions`` the batch gets ``positions`` restarting at 0 in each document, with
    ``document_attention`` it gets ``document_ids`` (the loss then keeps attention inside a
    document). Padding gets position 0 and document id -1.
    """

    def __init__(
        self,
        tokenizer: Tokenizer,
        block_size: int,
        truncate: Truncate = "block",
        add_eos: bool = False,
        add_bos: bool = False,
        document_positions: bool = False,
        document_attention: bool = False,
    ) -> None:
        _check_truncate(truncate)
        if block_size is None or block_size < 2:
            raise ValueError(f"block_size={block_size} must be an int >= 2.")
        check_document_options(document_positions, document_attention, add_bos, add_eos)
        self.document_positions = bool(document_positions)
        self.document_attention = bool(document_attention)
        self.tokenizer = tokenizer
        self.block_size = int(block_size)
        self.truncate = truncate
        self.add_eos = add_eos
        self.add_bos = add_bos
        self.pad_token_id = required_token_id(tokenizer, "pad_token_id", "collators pad batches")
        self.bos_token_id = required_token_id(tokenizer, "bos_token_id", "add_bos=True") if add_bos else None
        self.eos_token_id = required_token_id(tokenizer, "eos_token_id", "add_eos=True") if add_eos else None
        self._vocab_size = tokenizer_vocab_size(tokenizer)
        self.truncation = TruncationCounter(type(self).__name__)

    def __call__(self, examples: Sequence[Mapping[str, Any]]) -> ARLMBatch:
        rows = validate_examples(examples, ["input_ids"], self._vocab_size)
        seqs, n_cut = [], 0
        for ex in rows:
            seq = ([self.bos_token_id] if self.add_bos else []) + ex["input_ids"]
            if self.add_eos:
                seq.append(self.eos_token_id)
            seq, cut = truncate_list(seq, self.block_size, side="right")
            n_cut += cut
            seqs.append(seq)
        self.truncation.update(n_cut, len(rows), f"block_size={self.block_size}")
        width = self.block_size if self.truncate == "block" else max(len(s) for s in seqs)
        input_ids, masks, targets = [], [], []
        for seq in seqs:
            real = [True] * len(seq) + [False] * (width - len(seq))
            ids = pad_list(seq, width, self.pad_token_id, side="right")
            input_ids.append(ids)
            masks.append(real)
            targets.append(_shifted_targets(ids, real, real))
        batch: ARLMBatch = {
            "input_ids": torch.tensor(input_ids, dtype=torch.long),
            "attention_mask": torch.tensor(masks, dtype=torch.bool),
            "target_ids": torch.tensor(targets, dtype=torch.long),
        }
        batch.update(
            document_fields(
                examples,
                [len(s) for s in seqs],
                width,  # type: ignore[typeddict-item]
                self.document_positions,
                self.document_attention,
            )
        )
        return batch


class ARLMSeq2SeqCollator(TruncationCounting):
    """Teacher-forced seq2seq: ``[BOS?] prompt [BOS?] target [EOS?]`` with only targets scored.

    ``input_block_size`` > 0: the prompt side is left-padded / left-truncated to it and the target
    side right-padded / right-truncated to ``block_size`` (row width = their sum).
    ``input_block_size`` 0 or None: the whole row is right-padded to ``block_size`` (or the batch
    maximum for truncate="max"); too-long rows lose prompt tokens from the left first, then
    target tokens from the right.
    ``target_order="reverse"`` writes the target's tokens last to first (EOS still closes it), so the
    model learns to generate the answer backwards (Bachmann & Nagarajan's reversed-answer control on
    star graphs, docs/families.md); the prediction collator keeps the reference forward and the
    predictor (same ``target_order``) turns its answers back.
    """

    def __init__(
        self,
        tokenizer: Tokenizer,
        block_size: int | None = None,
        input_block_size: int | None = None,
        add_bos: AddBos = None,
        add_eos: bool = False,
        truncate: Truncate = "block",
        target_order: TargetOrder = "forward",
    ) -> None:
        _check_truncate(truncate)
        _check_add_bos(add_bos)
        _check_target_order(target_order)
        if block_size is not None and block_size < 1:
            raise ValueError(f"block_size={block_size} must be >= 1 (or null with truncate='max').")
        if truncate == "block" and block_size is None:
            raise ValueError("truncate='block' needs block_size; set it or use truncate='max'.")
        if input_block_size is not None and input_block_size < 0:
            raise ValueError(f"input_block_size={input_block_size} must be >= 0 or null.")
        self.tokenizer = tokenizer
        self.block_size = block_size
        self.input_block_size = input_block_size or None
        self.add_bos = add_bos
        self.add_eos = add_eos
        self.truncate = truncate
        self.target_order = target_order
        self.pad_token_id = required_token_id(tokenizer, "pad_token_id", "collators pad batches")
        bos = required_token_id(tokenizer, "bos_token_id", f"add_bos={add_bos!r}") if add_bos else None
        self.bos_token_id = bos
        self.eos_token_id = required_token_id(tokenizer, "eos_token_id", "add_eos=True") if add_eos else None
        self._head, self._tail = _bos_parts(add_bos, bos)
        if self.input_block_size is None and block_size is not None:
            if block_size <= len(self._head) + len(self._tail):
                raise ValueError(f"block_size={block_size} leaves no room after the BOS token.")
        self._vocab_size = tokenizer_vocab_size(tokenizer)
        self.truncation = TruncationCounter(type(self).__name__)

    def _hint(self) -> str:
        if self.input_block_size is None:
            return f"block_size={self.block_size}"
        return f"input_block_size={self.input_block_size} (prompt) / block_size={self.block_size} (target)"

    def _target_side(self, target: list[int], order: TargetOrder | None = None) -> list[int]:
        """The target in ``order`` (default: the collator's ``target_order``), then EOS when ``add_eos``."""
        if (order or self.target_order) == "reverse":
            target = target[::-1]
        return target + ([self.eos_token_id] if self.add_eos else [])  # type: ignore[list-item]

    def _fit_whole(self, prompt: list[int], target: list[int]) -> tuple[list[int], list[int], bool]:
        """Prompt side and target side whose total fits ``block_size`` (prompt cut first)."""
        target = self._target_side(target)
        if self.block_size is None:
            return self._head + prompt + self._tail, target, False
        overflow = len(self._head) + len(prompt) + len(self._tail) + len(target) - self.block_size
        if overflow <= 0:
            return self._head + prompt + self._tail, target, False
        cut_prompt = min(overflow, len(prompt))
        prompt = prompt[cut_prompt:]
        target = target[: len(target) - (overflow - cut_prompt)]
        return self._head + prompt + self._tail, target, True

    def __call__(self, examples: Sequence[Mapping[str, Any]]) -> ARLMSeq2SeqBatch:
        rows = validate_examples(examples, ["prompt_ids", "input_ids"], self._vocab_size)
        sides, n_cut = [], 0
        for ex in rows:
            if self.input_block_size is None:
                p_side, t_side, cut = self._fit_whole(ex["prompt_ids"], ex["input_ids"])
            else:
                p_side, cut_p = _fit_prompt(ex["prompt_ids"], self._head, self._tail, self.input_block_size)
                t_side = self._target_side(ex["input_ids"])
                cut_t = False
                if self.block_size is not None:
                    t_side, cut_t = truncate_list(t_side, self.block_size, side="right")
                cut = cut_p or cut_t
            n_cut += cut
            sides.append((p_side, t_side))
        self.truncation.update(n_cut, len(rows), self._hint())

        if self.input_block_size is None:
            p_width = None
            width = self.block_size if self.truncate == "block" else max(len(p) + len(t) for p, t in sides)
        else:
            p_width = self.input_block_size if self.truncate == "block" else max(len(p) for p, _ in sides)
            t_width = self.block_size if self.truncate == "block" else max(len(t) for _, t in sides)
        input_ids, masks, types, targets = [], [], [], []
        for p_side, t_side in sides:
            if p_width is None:
                n_pad_left = 0
                n_pad_right = width - len(p_side) - len(t_side)  # type: ignore[operator]
            else:
                n_pad_left = p_width - len(p_side)
                n_pad_right = t_width - len(t_side)
            ids = [self.pad_token_id] * n_pad_left + p_side + t_side + [self.pad_token_id] * n_pad_right
            real = [False] * n_pad_left + [True] * (len(p_side) + len(t_side)) + [False] * n_pad_right
            is_target = [False] * (n_pad_left + len(p_side)) + [True] * len(t_side) + [False] * n_pad_right
            input_ids.append(ids)
            masks.append(real)
            types.append([int(t) for t in is_target])
            targets.append(_shifted_targets(ids, real, is_target))
        return {
            "input_ids": torch.tensor(input_ids, dtype=torch.long),
            "attention_mask": torch.tensor(masks, dtype=torch.bool),
            "target_ids": torch.tensor(targets, dtype=torch.long),
            "token_type_ids": torch.tensor(types, dtype=torch.long),
        }


class ARLMSeq2SeqPredCollator(ARLMSeq2SeqCollator):
    """Generation batch: the left-padded prompt side alone as ``input_ids``; the reference apart.

    Prompt side = ``[BOS?] prompt [BOS?]``, left-truncated to ``input_block_size`` (or to
    ``block_size`` when that is 0/None) and left-padded to it (truncate="block" with an
    ``input_block_size``) or to the batch maximum. An empty prompt side gets one start token
    (BOS, else EOS) so generation has something to condition on.
    ``target_ids`` = target + EOS, right-truncated to ``block_size`` and right-padded with -100
    to ``block_size`` (truncate="block") or the batch maximum. The reference is always forward; with
    ``target_order="reverse"`` the batch records it (``metadata["target_order"]``), so the predictor
    can check that it turns answers back the same way (and prediction rows show it).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        start = getattr(self.tokenizer, "bos_token_id", None)
        if start is None:
            start = getattr(self.tokenizer, "eos_token_id", None)
        self.start_token_id: int | None = None if start is None else int(start)

    def __call__(self, examples: Sequence[Mapping[str, Any]]) -> ARLMSeq2SeqPredictionBatch:  # type: ignore[override]
        rows = validate_examples(examples, ["prompt_ids", "input_ids"], self._vocab_size)
        prompt_len = self.input_block_size if self.input_block_size is not None else self.block_size
        prompts, t_sides, n_cut = [], [], 0
        for i, ex in enumerate(rows):
            p_side, cut_p = _fit_prompt(ex["prompt_ids"], self._head, self._tail, prompt_len)
            if not p_side:
                if self.start_token_id is None:
                    raise ValueError(
                        f"Example {i} has an empty prompt and the tokenizer has neither BOS nor EOS "
                        "to start generation from; give the prompt at least one token."
                    )
                p_side = [self.start_token_id]
            t_side = self._target_side(ex["input_ids"], "forward")  # the reference, as metrics compare it
            cut_t = False
            if self.block_size is not None:
                t_side, cut_t = truncate_list(t_side, self.block_size, side="right")
            n_cut += cut_p or cut_t
            prompts.append(p_side)
            t_sides.append(t_side)
        self.truncation.update(n_cut, len(rows), self._hint())

        if self.truncate == "block" and self.input_block_size is not None:
            p_width = self.input_block_size
        else:
            p_width = max(len(p) for p in prompts)
        if self.truncate == "block" and self.block_size is not None:
            t_width = self.block_size
        else:
            t_width = max(len(t) for t in t_sides)
        input_ids = [pad_list(p, p_width, self.pad_token_id, side="left") for p in prompts]
        masks = [[False] * (p_width - len(p)) + [True] * len(p) for p in prompts]
        targets = [pad_list(t, t_width, IGNORE_INDEX, side="right") for t in t_sides]
        batch: ARLMSeq2SeqPredictionBatch = {
            "input_ids": torch.tensor(input_ids, dtype=torch.long),
            "attention_mask": torch.tensor(masks, dtype=torch.bool),
            "target_ids": torch.tensor(targets, dtype=torch.long).reshape(len(rows), t_width),
            "token_type_ids": torch.zeros(len(rows), p_width, dtype=torch.long),
        }
        metadata = row_metadata(examples)
        if self.target_order != "forward":
            metadata["target_order"] = [self.target_order] * len(rows)
        if metadata:
            batch["metadata"] = metadata
        return batch
