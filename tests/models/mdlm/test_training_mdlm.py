"""The MDLM text path learns to use context: packed rows of documents ``[BOS] a b a b ... [EOS]`` (a pair of
random words repeated) are unpredictable token by token without context and almost free with it, so the
masked cross-entropy at a fixed time must fall far below its starting value (a guard against attention,
document masks or positions that hide the context from the network)."""

from __future__ import annotations

import random

import torch

from xlm_core.data.simple_tokenizer import SimpleSpaceTokenizer
from xlm_mdlm.collators_mdlm import MDLMTextCollator
from xlm_mdlm.loss_mdlm import MDLMLoss

TOK = SimpleSpaceTokenizer.for_numbers(50)
BOS, EOS = TOK.bos_token_id, TOK.eos_token_id


def _packed_rows(rng: random.Random, n: int, length: int = 32) -> list[dict]:
    rows = []
    for _ in range(n):
        ids: list[int] = []
        lengths: list[int] = []
        while len(ids) < length:
            a, b = rng.sample(range(10, len(TOK)), 2)
            document = [BOS] + [a, b] * rng.randint(3, 8) + [EOS]
            ids += document
            lengths.append(len(document))
        lengths[-1] -= len(ids) - length
        rows.append({"input_ids": ids[:length], "document_lengths": lengths})
    return rows


def test_packed_text_training_learns_to_use_the_visible_tokens(make_mdlm_model) -> None:
    rng = random.Random(0)
    model = make_mdlm_model(seed=0)
    options = dict(block_size=32, document_positions=True, document_attention=True)
    train = MDLMTextCollator(TOK, seed=0, **options)
    held_out = MDLMTextCollator(TOK, fixed_time=0.3, fixed_masks=True, **options)(_packed_rows(rng, 64))
    loss = MDLMLoss(model=model, tokenizer=TOK)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)

    def held_out_loss() -> float:
        with torch.no_grad():
            return loss(held_out)["loss"].item()

    before = held_out_loss()  # ~ log(vocab): nothing learned yet
    for _ in range(300):
        optimizer.zero_grad()
        loss(train(_packed_rows(rng, 16)))["loss"].backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
    after = held_out_loss()
    assert before > 3.5 and after < 0.35 * before, (before, after)  # measured: 3.99 -> 1.00
