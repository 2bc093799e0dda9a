"""Pack tokenised documents into fixed-length blocks, and the per-document views collators need.

Pre-training on a text corpus: each document becomes ``[BOS] tokens [EOS]``, the documents are
joined into one stream and cut into rows of exactly ``block_size`` tokens, so no position is
padding. Each row also records ``document_lengths``: the lengths of the document pieces it holds,
in order (they sum to ``block_size``). From those a collator derives per-document positions
(RoPE restarts at 0 in each document) and document ids (attention stays inside a document).

``tokenize_and_pack`` is a batched ``datasets.map`` preprocess function (DatasetManager config)::

    preprocess_function: xlm_core.data.packing.tokenize_and_pack
    preprocess_batched: true
    preprocess_function_kwargs: {block_size: 256, text_field: text}
    columns_to_keep: [input_ids, document_lengths]   # the row count changes: drop the text column

Documents are split into train/validation *before* packing (``train_test_split`` of the
DatasetManager), so no document is on both sides. Within one ``.map`` batch (1,000 documents by
default) the last partial block is dropped: at most ``block_size - 1`` tokens per batch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from jaxtyping import Bool, Integer
from torch import Tensor as TT

__all__ = [
    "tokenize_and_pack",
    "pack_token_lists",
    "document_ids_from_lengths",
    "positions_from_lengths",
    "same_document_mask",
]


def pack_token_lists(
    documents: Sequence[Sequence[int]],
    block_size: int,
    bos_token_id: int | None = None,
    eos_token_id: int | None = None,
) -> dict[str, list[list[int]]]:
    """Join ``[bos] doc [eos]`` units and cut them into ``block_size`` rows; the tail is dropped.

    Returns ``input_ids`` (rows of exactly ``block_size`` ids) and ``document_lengths`` (per row,
    the lengths of the document pieces in it, summing to ``block_size``). Empty documents are skipped.
    """
    if not isinstance(block_size, int) or block_size < 2:
        raise ValueError(f"block_size={block_size!r} must be an int >= 2.")
    rows: list[list[int]] = []
    lengths: list[list[int]] = []
    row: list[int] = []
    row_lengths: list[int] = []
    for doc in documents:
        if not doc:
            continue
        unit = ([bos_token_id] if bos_token_id is not None else []) + list(doc)
        if eos_token_id is not None:
            unit.append(eos_token_id)
        start = 0
        while start < len(unit):
            take = min(block_size - len(row), len(unit) - start)
            row.extend(unit[start : start + take])
            row_lengths.append(take)
            start += take
            if len(row) == block_size:
                rows.append(row)
                lengths.append(row_lengths)
                row, row_lengths = [], []
    return {"input_ids": rows, "document_lengths": lengths}


def tokenize_and_pack(
    batch: Mapping[str, list[Any]],
    tokenizer: Any,
    block_size: int,
    text_field: str = "text",
    add_bos: bool = True,
    add_eos: bool = True,
) -> dict[str, list[list[int]]]:
    """Batched preprocess: tokenise ``batch[text_field]`` and pack it (see the module docstring)."""
    if text_field not in batch:
        raise KeyError(
            f"tokenize_and_pack: the rows have no {text_field!r} field (fields: {sorted(batch)}); "
            "set preprocess_function_kwargs.text_field to the column holding the text."
        )
    texts = [t if isinstance(t, str) else "" for t in batch[text_field]]
    bos = _special_id(tokenizer, "bos_token_id") if add_bos else None
    eos = _special_id(tokenizer, "eos_token_id") if add_eos else None
    ids = tokenizer(texts, add_special_tokens=False)["input_ids"] if texts else []
    return pack_token_lists(ids, block_size, bos, eos)


def _special_id(tokenizer: Any, attr: str) -> int:
    value = getattr(tokenizer, attr, None)
    if value is None:
        raise ValueError(
            f"tokenize_and_pack: the tokenizer has no {attr}; add that special token to it or set "
            f"add_{attr.split('_')[0]}=false."
        )
    return int(value)


def document_ids_from_lengths(lengths: Sequence[int]) -> list[int]:
    """``[3, 2]`` -> ``[0, 0, 0, 1, 1]``: the index of the document piece each token belongs to."""
    return [i for i, n in enumerate(lengths) for _ in range(int(n))]


def positions_from_lengths(lengths: Sequence[int]) -> list[int]:
    """``[3, 2]`` -> ``[0, 1, 2, 0, 1]``: positions that restart at every document piece."""
    return [p for n in lengths for p in range(int(n))]


def same_document_mask(document_ids: Integer[TT, " batch seq_len"]) -> Bool[TT, " batch seq_len seq_len"]:
    """``mask[b, q, k]``: query ``q`` and key ``k`` of row ``b`` belong to the same document."""
    return document_ids.unsqueeze(2) == document_ids.unsqueeze(1)
