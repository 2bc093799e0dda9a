"""Packed pre-training rows in ARLM: the collator's per-document views and the loss that uses them.

The defining property: a packed row with per-document positions and document-boundary attention
scores every token exactly as if each document piece were its own unpadded row.
"""

from __future__ import annotations

import pytest
import torch

from xlm_arlm.collators_arlm import DefaultARLMCollator
from xlm_arlm.loss_arlm import ARLMLoss, document_causal_mask
from xlm_core.data.packing import pack_token_lists
from xlm_core.data.simple_tokenizer import SimpleSpaceTokenizer

tok = SimpleSpaceTokenizer.for_numbers(50)


def _rows() -> list[dict]:
    packed = pack_token_lists(
        [[10, 11, 12, 13, 14], [20, 21, 22], [30, 31, 32, 33]],
        block_size=8,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
    )
    return [{"input_ids": i, "document_lengths": n} for i, n in zip(packed["input_ids"], packed["document_lengths"])]


def test_collator_adds_document_positions_and_ids() -> None:
    rows = _rows()
    assert [r["document_lengths"] for r in rows] == [[7, 1], [4, 4]]
    batch = DefaultARLMCollator(tok, block_size=8, document_positions=True, document_attention=True)(rows)
    assert batch["positions"].tolist() == [[0, 1, 2, 3, 4, 5, 6, 0], [0, 1, 2, 3, 0, 1, 2, 3]]
    assert batch["document_ids"].tolist() == [[0] * 7 + [1], [0] * 4 + [1] * 4]
    assert batch["attention_mask"].all() and batch["target_ids"][:, -1].eq(-100).all()
    plain = DefaultARLMCollator(tok, block_size=8)(rows)
    assert "positions" not in plain and "document_ids" not in plain


def test_collator_refuses_rows_without_lengths_and_bos_eos_on_packed_rows() -> None:
    collator = DefaultARLMCollator(tok, block_size=8, document_attention=True)
    with pytest.raises(KeyError, match="tokenize_and_pack"):
        collator([{"input_ids": [7, 8, 9]}])
    with pytest.raises(ValueError, match="add_bos=false and add_eos=false"):
        DefaultARLMCollator(tok, block_size=8, add_eos=True, document_positions=True)


def test_document_mask_is_causal_and_within_documents() -> None:
    mask = document_causal_mask(torch.tensor([[0, 0, 1, 1]]), torch.ones(1, 4, dtype=torch.bool))[0]
    assert mask.tolist() == [
        [True, False, False, False],
        [True, True, False, False],
        [False, False, True, False],
        [False, False, True, True],
    ]


def test_packed_row_scores_each_document_as_if_alone(make_arlm_model) -> None:
    model = make_arlm_model(seed=3).eval()
    loss = ARLMLoss(model=model)
    row = [4, 10, 11, 12, 3, 4, 20, 21, 22, 23, 3, 4]  # BOS doc EOS BOS doc EOS BOS
    lengths = [5, 6, 1]
    batch = DefaultARLMCollator(tok, block_size=12, document_positions=True, document_attention=True)(
        [{"input_ids": row, "document_lengths": lengths}]
    )
    packed = loss(batch)["nlls"]  # 11 scored tokens, the last position has no target
    pieces = []
    for start, n in ((0, 5), (5, 6)):
        ids = torch.tensor([row[start : start + n]])
        ids_next = row[start + 1 : start + n + 1]
        alone = {
            "input_ids": ids,
            "attention_mask": torch.ones_like(ids, dtype=torch.bool),
            "target_ids": torch.tensor([ids_next]),
        }
        pieces.append(loss(alone)["nlls"])
    torch.testing.assert_close(packed, torch.cat(pieces), rtol=1e-5, atol=1e-5)
    # without the document views the second document sees the first: different scores
    plain = DefaultARLMCollator(tok, block_size=12)([{"input_ids": row}])
    assert not torch.allclose(loss(plain)["nlls"][5:], pieces[1], atol=1e-4)
