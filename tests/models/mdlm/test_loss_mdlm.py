"""MDLMLoss: the continuous-time NELBO by hand, its weights, SUBS, the fused head, packed documents, and the
bound being tight for a model that knows the data distribution."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from torch import nn

from xlm_core.data.simple_tokenizer import SimpleSpaceTokenizer
from xlm_core.kit.noise import CosineSchedule, LogLinearSchedule
from xlm_core.testing import BaseLossTests
from xlm_mdlm.collators_mdlm import MDLMSeq2SeqCollator, MDLMTextCollator
from xlm_mdlm.loss_mdlm import MDLMLoss

TOK = SimpleSpaceTokenizer.for_numbers(50)  # [PAD]=0 [MASK]=2 [EOS]=3 [BOS]=4, word "k" = id k + 7
VOCAB, PAD, MASK = len(TOK), TOK.pad_token_id, TOK.mask_token_id


class FixedLogits(nn.Module):
    """A 'network' whose logits are a fixed (L, V) table for every row; unmasked inputs are ignored."""

    def __init__(self, table: torch.Tensor) -> None:
        super().__init__()
        self.table = nn.Parameter(table.clone())

    def forward(self, x_t, attention_mask=None, positions=None):
        return self.table.unsqueeze(0).expand(x_t.shape[0], -1, -1)


def _batch(ids: list[list[int]], clean: list[list[int]], t: list[float]) -> dict:
    ids_t, clean_t = torch.tensor(ids), torch.tensor(clean)
    return {
        "input_ids": ids_t,
        "attention_mask": torch.ones_like(ids_t, dtype=torch.bool),
        "target_ids": clean_t,
        "noise_t": torch.tensor(t),
    }


def test_loss_equals_a_hand_computed_nelbo_at_a_fixed_time() -> None:
    # one row of 3 tokens at t = 0.5, positions 0 and 2 masked: NELBO = (1/t) * (NLL_0 + NLL_2) / 3 tokens
    table = torch.zeros(3, VOCAB)
    table[0, 10] = math.log(4.0)  # position 0: the target 10 has 4x the weight of each other non-mask token
    loss_fn = MDLMLoss(model=FixedLogits(table), tokenizer=TOK, fused=False)
    out = loss_fn(_batch([[MASK, 11, MASK]], [[10, 11, 12]], [0.5]))
    others = VOCAB - 1  # the mask token has probability 0 (SUBS)
    nll_0 = -math.log(4.0 / (4.0 + others - 1))
    nll_2 = math.log(others)  # uniform over the non-mask tokens
    expected = (1 / 0.5) * (nll_0 + nll_2) / 3
    assert out["loss"].item() == pytest.approx(expected, rel=1e-6)
    # per-token terms: weight * NLL where masked, 0 for the carried-over token; their mean is the loss
    assert out["nlls"].tolist() == pytest.approx([2 * nll_0, 0.0, 2 * nll_2], rel=1e-6)
    assert out["batch_loss"].item() == pytest.approx(expected, rel=1e-6)


def test_the_weight_follows_the_schedule() -> None:
    table = torch.zeros(2, VOCAB)
    row = ([[MASK, 11]], [[10, 11]])
    uniform = math.log(VOCAB - 1) / 2  # one masked token of two scored
    for schedule, t in ((LogLinearSchedule(), 0.25), (CosineSchedule(), 0.25), (LogLinearSchedule(), 1e-5)):
        loss = MDLMLoss(model=FixedLogits(table), tokenizer=TOK, noise_schedule=schedule, fused=False)
        value = loss(_batch(*row, [t]))["loss"].item()
        assert value == pytest.approx(schedule.weight(torch.tensor([t])).item() * uniform, rel=1e-6)
    assert LogLinearSchedule().weight(torch.tensor([1e-5])).item() == pytest.approx(1000.0)  # clipped at eps


def test_nothing_masked_costs_nothing_and_prompt_and_padding_are_not_scored() -> None:
    loss_fn = MDLMLoss(model=FixedLogits(torch.randn(4, VOCAB)), tokenizer=TOK, fused=False)
    clean = [[10, 11, 12, PAD]]
    batch = _batch([[10, 11, 12, PAD]], clean, [0.3])
    batch["attention_mask"][0, 3] = False
    batch["target_ids"] = torch.tensor([[-100, 11, 12, -100]])  # prompt token 0, padding 3
    out = loss_fn(batch)
    assert out["loss"].item() == 0.0 and out["nlls"].tolist() == [0.0, 0.0]  # two scored tokens, none masked
    out["loss"].backward()  # still connected to the model


@pytest.mark.parametrize("schedule", [LogLinearSchedule(), CosineSchedule()])
def test_fused_head_equals_the_plain_path(schedule, make_mdlm_model) -> None:
    model = make_mdlm_model(seed=1)
    collator = MDLMSeq2SeqCollator(TOK, block_size=6, input_block_size=6, noise_schedule=schedule, seed=3)
    rows = [{"prompt_ids": [10, 11, 12], "input_ids": [13, 14]}, {"prompt_ids": [15], "input_ids": [16, 17, 18, 19]}]
    batch = collator(rows)
    fused = MDLMLoss(model=model, tokenizer=TOK, noise_schedule=schedule)(batch)
    plain = MDLMLoss(model=model, tokenizer=TOK, noise_schedule=schedule, fused=False)(batch)
    assert fused["loss"].item() == pytest.approx(plain["loss"].item(), rel=1e-5)
    assert torch.allclose(fused["nlls"], plain["nlls"], rtol=1e-5, atol=1e-6)
    assert fused["nlls"].numel() == int((batch["target_ids"] != -100).sum())  # every answer-slot token scored


def test_a_batch_without_times_is_refused() -> None:
    batch = _batch([[MASK]], [[10]], [0.5])
    del batch["noise_t"]
    with pytest.raises(KeyError, match="noise_t"):
        MDLMLoss(model=FixedLogits(torch.zeros(1, VOCAB)), tokenizer=TOK, fused=False)(batch)


def test_a_packed_row_is_scored_as_its_documents_alone(make_mdlm_model) -> None:
    model = make_mdlm_model(seed=2).eval()
    loss_fn = MDLMLoss(model=model, tokenizer=TOK)
    row = [4, 10, 11, 12, 3, 4, 20, 21, 3, 4]  # BOS doc EOS BOS doc EOS BOS
    collate = MDLMTextCollator(TOK, block_size=10, document_positions=True, document_attention=True)
    batch = collate([{"input_ids": row, "document_lengths": [5, 4, 1]}])
    batch["input_ids"][0, [1, 3, 6, 7]] = MASK
    batch["noise_t"] = torch.tensor([0.4])
    packed = loss_fn(batch)["nlls"]
    alone = []
    for start, end in ((0, 5), (5, 9), (9, 10)):
        piece = {
            "input_ids": batch["input_ids"][:, start:end],
            "target_ids": batch["target_ids"][:, start:end],
            "attention_mask": torch.ones(1, end - start, dtype=torch.bool),
            "noise_t": batch["noise_t"],
        }
        alone.append(loss_fn(piece)["nlls"])
    assert torch.allclose(packed, torch.cat(alone), atol=1e-5)


# --- the bound is tight for the data distribution ---------------------------------------------------------
DATA = [10, 11, 12]  # three data tokens, sequences of length 3


def _toy_distribution() -> dict[tuple[int, ...], float]:
    rng = np.random.default_rng(0)
    seqs = list(itertools.product(DATA, repeat=3))
    p = rng.dirichlet(np.ones(len(seqs)))
    return dict(zip(seqs, p.tolist()))


class ExactDenoiser(nn.Module):
    """Logits = log p(x_i | visible tokens of z_t) of a known joint distribution: the ideal denoiser."""

    def __init__(self, joint: dict[tuple[int, ...], float]) -> None:
        super().__init__()
        self.joint = joint
        self.anchor = nn.Parameter(torch.zeros(()))  # something for the loss to be connected to

    def forward(self, x_t, attention_mask=None, positions=None):
        out = torch.full((*x_t.shape, VOCAB), -1e4)
        for b, row in enumerate(x_t.tolist()):
            consistent = {s: p for s, p in self.joint.items() if all(z == MASK or z == x for z, x in zip(row, s))}
            total = sum(consistent.values())
            for i in range(len(row)):
                for token in DATA:
                    mass = sum(p for s, p in consistent.items() if s[i] == token)
                    out[b, i, token] = math.log(mass / total) if mass > 0 else -1e4
        return out + self.anchor


def test_the_exact_denoiser_has_nelbo_equal_to_the_data_entropy() -> None:
    joint = _toy_distribution()
    entropy = -sum(p * math.log(p) for p in joint.values())
    schedule = LogLinearSchedule(eps=1e-9)
    loss_fn = MDLMLoss(model=ExactDenoiser(joint), tokenizer=TOK, noise_schedule=schedule, fused=False)
    seqs = list(joint)
    patterns = list(itertools.product([False, True], repeat=3))
    # every sequence under every mask pattern; E_t by Gauss-Legendre on [0, 1] (the integrand is a polynomial)
    nodes, weights = np.polynomial.legendre.leggauss(6)
    nelbo = 0.0
    for node, weight in zip(nodes, weights):
        t = 0.5 * (node + 1.0)
        ids = [[MASK if m else x for x, m in zip(s, pattern)] for s in seqs for pattern in patterns]
        batch = _batch(ids, [list(s) for s in seqs for _ in patterns], [t] * len(ids))
        per_row = loss_fn(batch)["batch_loss"] * 3  # weight(t) * sum of masked NLLs of each row
        prob = [joint[s] * t ** sum(m) * (1 - t) ** (3 - sum(m)) for s in seqs for m in patterns]
        nelbo += 0.5 * weight * float((torch.tensor(prob) * per_row.double()).sum())
    assert nelbo == pytest.approx(entropy, rel=1e-5)
    # and a model that is wrong about the data pays more than the entropy
    wrong = MDLMLoss(model=FixedLogits(torch.zeros(3, VOCAB)), tokenizer=TOK, noise_schedule=schedule, fused=False)
    assert wrong(_batch([[MASK] * 3], [[10, 11, 12]], [1.0]))["loss"].item() * 3 > entropy


class TestMDLMLossConformance(BaseLossTests):
    """The shared loss suite on a seq2seq batch of the MDLM collator."""

    @pytest.fixture
    def loss_fn(self, make_mdlm_model):
        return MDLMLoss(model=make_mdlm_model(seed=4), tokenizer=TOK)

    @pytest.fixture
    def batch(self):
        collator = MDLMSeq2SeqCollator(TOK, block_size=6, input_block_size=6, seed=0)
        return collator(
            [
                {"prompt_ids": [10, 11, 12], "input_ids": [13, 14]},
                {"prompt_ids": [15], "input_ids": [16, 17, 18, 19, 20]},
            ]
        )
