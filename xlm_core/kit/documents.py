"""Document boundaries of packed text rows, for every family's collators and losses.

Packed rows (``xlm_core.data.packing.tokenize_and_pack``) hold several documents and record the lengths of
their pieces (``document_lengths``). A collator turns those into ``positions`` that restart at 0 in each
document (``document_positions``) and ``document_ids`` (``document_attention``; padding -1), and a loss
keeps attention inside a document: :func:`document_attention_mask` (bidirectional, the masked families) or
the ARLM's causal form. With both, every token of a packed row is scored as if its document piece were a row
of its own (docs/pretraining.md).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from jaxtyping import Bool, Integer
from torch import Tensor as TT

from xlm_core.data.packing import document_ids_from_lengths, positions_from_lengths, same_document_mask
from xlm_core.data.padding import pad_list
from xlm_core.kit.positions import positions_from_attention_mask

__all__ = [
    "check_document_options",
    "document_lengths_of",
    "document_fields",
    "document_attention_mask",
    "attention_and_positions",
]


def check_document_options(document_positions: bool, document_attention: bool, add_bos: bool, add_eos: bool) -> None:
    """Refuse BOS / EOS added by the collator to packed rows, which already hold them (one-line error)."""
    if (document_positions or document_attention) and (add_bos or add_eos):
        raise ValueError(
            "document_positions/document_attention work on packed rows, which already hold BOS/EOS; "
            "set add_bos=false and add_eos=false."
        )


def document_lengths_of(example: Mapping[str, Any], index: int, seq_len: int) -> list[int]:
    """The example's ``document_lengths``, checked to cover its ``seq_len`` tokens (before truncation)."""
    lengths = example.get("document_lengths")
    if lengths is None:
        raise KeyError(
            f"Example {index} has no 'document_lengths'; document_positions/document_attention need rows "
            "packed by xlm_core.data.packing.tokenize_and_pack (or set both to false)."
        )
    lengths = [int(n) for n in lengths]
    if sum(lengths) < seq_len or min(lengths, default=1) < 1:
        raise ValueError(
            f"Example {index}: document_lengths {lengths} do not cover its {seq_len} tokens; rebuild the "
            "dataset cache (rewrite_manual_cache=true) so input_ids and document_lengths come from one packing."
        )
    return lengths


def document_fields(
    examples: Sequence[Mapping[str, Any]],
    seq_lens: Sequence[int],
    width: int,
    positions: bool,
    attention: bool,
) -> dict[str, Integer[TT, "batch seq_len"]]:
    """``positions`` (restarting per document; padding 0) and/or ``document_ids`` (padding -1), (B, width) each,
    for right-padded rows of ``seq_lens`` tokens; empty when neither is asked for."""
    if not (positions or attention):
        return {}
    lengths = [document_lengths_of(ex, i, n) for i, (ex, n) in enumerate(zip(examples, seq_lens))]
    fields: dict[str, TT] = {}
    if positions:
        fields["positions"] = torch.tensor(
            [pad_list(positions_from_lengths(n)[:width], width, 0) for n in lengths], dtype=torch.long
        )
    if attention:
        fields["document_ids"] = torch.tensor(
            [pad_list(document_ids_from_lengths(n)[:width], width, -1) for n in lengths], dtype=torch.long
        )
    return fields


def document_attention_mask(
    document_ids: Integer[TT, "batch seq_len"], attention_mask: Bool[TT, "batch seq_len"]
) -> Bool[TT, "batch seq_len seq_len"]:
    """Bidirectional attention inside the query's own document, padding keys excluded: ``mask[b, q, k]``."""
    return same_document_mask(document_ids) & attention_mask.bool().unsqueeze(1)


def attention_and_positions(
    batch: Mapping[str, Any], attention_mask: Bool[TT, "batch seq_len"]
) -> tuple[Bool[TT, "batch seq_len"] | Bool[TT, "batch seq_len seq_len"], Integer[TT, "batch seq_len"]]:
    """What a bidirectional model gets for ``batch``: a (B, L, L) same-document mask when the batch has
    ``document_ids`` (else the (B, L) key-padding mask), and the batch's ``positions`` (else
    ``positions_from_attention_mask``)."""
    positions = batch.get("positions")
    if positions is None:
        positions = positions_from_attention_mask(attention_mask)
    document_ids = batch.get("document_ids")
    if document_ids is None:
        return attention_mask, positions
    return document_attention_mask(document_ids, attention_mask), positions
