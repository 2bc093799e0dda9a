"""Export to Hugging Face GPT-NeoX: the reloaded model computes our logits and generates our greedy
tokens, the tokenizer keeps its ids, the directory loads without xlm, and what GPT-NeoX cannot
express is refused by name."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from xlm_arlm.export_hf import export_hf, neox_config
from xlm_arlm.predictor_arlm import ARLMPredictor
from xlm_core.data.bpe_tokenizer import train_bpe_tokenizer
from xlm_core.data.simple_tokenizer import SimpleSpaceTokenizer

tok = SimpleSpaceTokenizer.for_numbers(50)


def _padded_batch() -> dict[str, torch.Tensor]:
    """Three rows: full, right-padded and left-padded (PAD = 0)."""
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(7, 57, (3, 10), generator=g)
    mask = torch.ones(3, 10, dtype=torch.bool)
    mask[1, 6:] = False
    mask[2, :4] = False
    ids[~mask] = 0
    positions = ((mask.long().cumsum(1) - 1).clamp_min(0) * mask).long()
    return {"input_ids": ids, "attention_mask": mask, "positions": positions}


@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_reloaded_model_gives_our_logits_on_padded_batches(make_arlm_model, tmp_path: Path, activation: str) -> None:
    model = make_arlm_model(seed=4, activation=activation, rotary_emb_dim=4).eval()  # rotary on half of each head
    export_hf(model, tok, tmp_path / "hf")
    hf = AutoModelForCausalLM.from_pretrained(tmp_path / "hf", dtype=torch.float32).eval()
    assert type(hf).__name__ == "GPTNeoXForCausalLM" and hf.config.hidden_act == activation
    b = _padded_batch()
    with torch.no_grad():
        ours = model(b["input_ids"], b["attention_mask"], b["positions"])
        theirs = hf(
            input_ids=b["input_ids"], attention_mask=b["attention_mask"].long(), position_ids=b["positions"]
        ).logits
    real = b["attention_mask"]
    torch.testing.assert_close(theirs[real], ours[real], rtol=0, atol=1e-5)


def _greedy_rows(ids: torch.Tensor, start: int, eos: int) -> list[list[int]]:
    """Generated tokens of each row up to and including its first EOS."""
    rows = []
    for row in ids[:, start:].tolist():
        rows.append(row[: row.index(eos) + 1] if eos in row else row)
    return rows


def test_hf_greedy_generate_produces_our_predictors_tokens(make_arlm_model, tmp_path: Path) -> None:
    model = make_arlm_model(seed=7).eval()
    export_hf(model, tok, tmp_path / "hf")
    hf = AutoModelForCausalLM.from_pretrained(tmp_path / "hf", dtype=torch.float32).eval()
    prompts = {
        "input_ids": torch.tensor([[0, 0, 0, 9, 12, 30], [8, 55, 21, 17, 40, 11], [0, 0, 0, 0, 0, 44]]),
        "attention_mask": torch.tensor([[0, 0, 0, 1, 1, 1], [1] * 6, [0, 0, 0, 0, 0, 1]], dtype=torch.bool),
    }
    ours = ARLMPredictor(
        max_steps=20, max_length=None, tokenizer=tok, sampling_method="sample_top_k", top_k=1, model=model
    ).predict(prompts)["ids"]
    theirs = hf.generate(
        input_ids=prompts["input_ids"],
        attention_mask=prompts["attention_mask"].long(),
        do_sample=False,
        max_new_tokens=20,
    )
    assert _greedy_rows(theirs, 6, tok.eos_token_id) == _greedy_rows(ours, 6, tok.eos_token_id)


def test_simple_space_tokenizer_exports_as_a_fast_tokenizer_with_the_same_ids(make_arlm_model, tmp_path: Path) -> None:
    export_hf(make_arlm_model(), tok, tmp_path / "hf", verify=False)
    fast = AutoTokenizer.from_pretrained(tmp_path / "hf")
    text = "0 17  49\n3 unknown 12"
    assert fast(text)["input_ids"] == tok.encode(text) == [7, 24, 56, 10, 6, 19]
    assert fast.decode([7, 24, 56, 10]) == tok.decode([7, 24, 56, 10]) == "0 17 49 3"
    for attr in ("pad", "bos", "eos", "unk", "mask", "cls", "sep"):
        assert getattr(fast, f"{attr}_token_id") == getattr(tok, f"{attr}_token_id")


@pytest.mark.parametrize(
    "overrides, setting",
    [
        ({"final_layer_without_normalization": True}, "final_layer_without_normalization"),
        ({"rotary_emb_dim": 0}, "rotary_emb_dim=0"),
        ({"absolute_positions": True}, "model.absolute_positions=true cannot be exported: GPT-NeoX has no such layer"),
        ({"neighbour_mixing": "causal"}, "model.neighbour_mixing=causal cannot be exported"),
        (
            {"absolute_positions": True, "neighbour_mixing": "causal"},
            "model.absolute_positions=true and model.neighbour_mixing=causal cannot",
        ),
    ],
)
def test_inexpressible_settings_are_refused_by_name(
    make_arlm_model, tmp_path: Path, overrides: dict, setting: str
) -> None:
    with pytest.raises(ValueError, match=setting) as err:
        export_hf(make_arlm_model(**overrides), tok, tmp_path / "hf")
    assert "\n" not in str(err.value) and not (tmp_path / "hf").exists()


def test_unknown_activation_and_oversized_tokenizer_are_refused(make_arlm_model) -> None:
    model = make_arlm_model()
    for layer in model.layers:
        layer.mlp[1] = torch.nn.SiLU()
    with pytest.raises(ValueError, match="model.activation=relu or gelu"):
        neox_config(model)
    with pytest.raises(ValueError, match="tokenizer has 107 tokens but the model embeds 57"):
        neox_config(make_arlm_model(), SimpleSpaceTokenizer.for_numbers(100))


_NO_XLM = """
import json, sys, importlib.abc
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in ("xlm_core", "xlm_arlm"):
            raise ImportError(f"{name} must not be imported")
sys.meta_path.insert(0, Block())
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
d = sys.argv[1]
model = AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32).eval()
tok = AutoTokenizer.from_pretrained(d)
ids = tok("def", return_tensors="pt")["input_ids"]
ids = torch.cat([torch.tensor([[tok.bos_token_id]]), ids], dim=1)
out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=12)
print(json.dumps({"ids": out[0].tolist(), "text": tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True),
                  "class": type(tok).__name__}))
"""


def test_bpe_export_loads_and_generates_without_xlm(make_arlm_model, tmp_path: Path) -> None:
    bpe = train_bpe_tokenizer(["def f(x):\n    return x\n", "class A:\n    pass\n"] * 20, vocab_size=300)
    model = make_arlm_model(seed=2, num_embeddings=len(bpe), padding_idx=bpe.pad_token_id).eval()
    export_hf(model, bpe, tmp_path / "hf")
    proc = subprocess.run(
        [sys.executable, "-c", _NO_XLM, str(tmp_path / "hf")], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    prompt = [bpe.bos_token_id, *bpe.encode("def", add_special_tokens=False)]
    ours = ARLMPredictor(
        max_steps=12, max_length=None, tokenizer=bpe, sampling_method="sample_top_k", top_k=1, model=model
    ).predict({"input_ids": torch.tensor([prompt])})["ids"]
    assert _greedy_rows(torch.tensor([result["ids"]]), len(prompt), bpe.eos_token_id) == _greedy_rows(
        ours, len(prompt), bpe.eos_token_id
    )
    assert result["ids"][: len(prompt)] == prompt
