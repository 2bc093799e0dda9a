"""Text rows for masked families: ``[BOS?] ids [EOS?]`` right-padded to ``block_size``, every real position
maskable, with the document fields of packed rows (``xlm_core.kit.documents``).

:class:`TextRowCollator` lays the rows of an ``lm`` dataloader out (``{input_ids}``, plus
``document_lengths`` for packed rows); a family's collator adds its noise on top.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal, NamedTuple

import torch
from torch import Tensor as TT

from xlm_core.data.padding import TruncationCounter, pad_list, truncate_list
from xlm_core.kit.collate import TruncationCounting, required_token_id, tokenizer_vocab_size, validate_examples
from xlm_core.kit.documents import check_document_options, document_fields
from xlm_core.plugin.protocols import Tokenizer

__all__ = ["TextRows", "TextRowCollator"]


class TextRows(NamedTuple):
    """Clean rows laid out by :meth:`TextRowCollator.layout`."""

    clean: TT  # (B, L) token ids, PAD after each row's end
    real: TT  # (B, L) key-padding mask, True = real token
    fields: dict[str, TT]  # per-document ``positions`` / ``document_ids`` (B, L), when asked for


class TextRowCollator(TruncationCounting):
    """``[BOS?] ids [EOS?]`` cut to ``block_size`` and right-padded (to ``block_size``, or with ``truncate: max``
    to the batch's longest row); cut rows are counted. Packed rows (``tokenize_and_pack``) already hold BOS and
    EOS; with ``document_positions`` / ``document_attention`` the layout adds per-document ``positions`` and
    ``document_ids`` (padding: position 0, document -1)."""

    def __init__(
        self,
        tokenizer: Tokenizer,
        block_size: int,
        truncate: Literal["block", "max"] = "block",
        add_bos: bool = False,
        add_eos: bool = False,
        document_positions: bool = False,
        document_attention: bool = False,
    ) -> None:
        check_document_options(document_positions, document_attention, add_bos, add_eos)
        if truncate not in ("block", "max"):
            raise ValueError(f"truncate={truncate!r} is not supported; use 'block' or 'max'.")
        if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1:
            raise ValueError(f"block_size={block_size!r} must be an int >= 1.")
        self.tokenizer = tokenizer
        self.block_size = block_size
        self.truncate = truncate
        self.add_bos, self.add_eos = add_bos, add_eos
        self.document_positions, self.document_attention = bool(document_positions), bool(document_attention)
        self.pad_token_id = required_token_id(tokenizer, "pad_token_id", "collators pad batches")
        self.bos_token_id = required_token_id(tokenizer, "bos_token_id", "add_bos=True") if add_bos else None
        self.eos_token_id = required_token_id(tokenizer, "eos_token_id", "add_eos=True") if add_eos else None
        self._vocab_size = tokenizer_vocab_size(tokenizer)
        self.truncation = TruncationCounter(type(self).__name__)

    def layout(self, examples: Sequence[Mapping[str, Any]]) -> TextRows:
        """The clean rows of ``examples`` (rows ``{input_ids}``), checked and counted."""
        rows = validate_examples(examples, ["input_ids"], self._vocab_size)
        seqs, n_cut = [], 0
        for ex in rows:
            seq = ([self.bos_token_id] if self.add_bos else []) + ex["input_ids"]
            seq += [self.eos_token_id] if self.add_eos else []
            seq, cut = truncate_list(seq, self.block_size, side="right")
            n_cut += cut
            seqs.append(seq)
        self.truncation.update(n_cut, len(rows), f"block_size={self.block_size}")
        width = self.block_size if self.truncate == "block" else max(len(s) for s in seqs)
        clean = torch.tensor([pad_list(s, width, self.pad_token_id) for s in seqs], dtype=torch.long)
        real = torch.tensor([[True] * len(s) + [False] * (width - len(s)) for s in seqs], dtype=torch.bool)
        fields = document_fields(
            examples, [len(s) for s in seqs], width, self.document_positions, self.document_attention
        )
        return TextRows(clean, real, fields)
