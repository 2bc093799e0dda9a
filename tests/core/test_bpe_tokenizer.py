"""Byte-level BPE trained on a corpus: special tokens, exact round trips, the cache and its key."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from xlm_core.data.bpe_tokenizer import BPE_SPECIAL_TOKENS, bpe_cache_path, load_bpe_tokenizer
from xlm_core.data.dataset_manager import tokenizer_fingerprint

CODE = [
    'def add(a, b):\n    """Return a + b."""\n    return a + b\n',
    "class Point:\n    def __init__(self, x, y):\n        self.x, self.y = x, y\n",
    "import os\n\nfor name in os.listdir('.'):\n    print(name)  # naïve ünïcödé ✓\n",
] * 5


@pytest.fixture()
def corpus(tmp_path: Path) -> dict:
    root = tmp_path / "src"
    root.mkdir()
    for i, text in enumerate(CODE):  # distinct files (identical ones would be left out of the training side)
        (root / f"m{i:02d}.py").write_text(f"{text}# file {i}\n")
    return {
        "name": "src",
        "data_files": str(root / "*.py"),
        "data_format": "text",
        "train_test_split": {"test_size": 3, "seed": 1, "take": "train"},
        "preprocess_function": "xlm_core.data.packing.tokenize_and_pack",
    }  # ignored by the tokenizer


def test_special_tokens_and_exact_round_trip(corpus: dict, tmp_path: Path) -> None:
    tok = load_bpe_tokenizer(corpus, vocab_size=400, cache_dir=tmp_path / "tok")
    assert [getattr(tok, f"{attr}_id") for attr, _ in BPE_SPECIAL_TOKENS] == [0, 1, 2, 3, 4]
    assert tok.full_vocab_size == len(tok) <= 400
    for text in [*CODE[:3], "never seen: 漢字 \t\r\n  emoji 🙂"]:
        ids = tok.encode(text, add_special_tokens=False)
        assert tok.unk_token_id not in ids and tok.decode(ids) == text
    # merges were learned: common code is shorter than its bytes
    assert len(tok.encode(CODE[0], add_special_tokens=False)) < len(CODE[0].encode()) / 2


def test_second_load_uses_the_cache(corpus: dict, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    first = load_bpe_tokenizer(corpus, vocab_size=400, cache_dir=tmp_path / "tok")
    with caplog.at_level(logging.INFO, logger="xlm_core.data.bpe_tokenizer"):
        second = load_bpe_tokenizer(corpus, vocab_size=400, cache_dir=tmp_path / "tok")
    assert "using cache" in caplog.text
    assert second.get_vocab() == first.get_vocab()
    # dataset caches keyed by the tokenizer stay valid across the train -> reload boundary
    assert tokenizer_fingerprint(first) == tokenizer_fingerprint(second)


def test_cache_key_follows_vocab_size_and_split_but_not_preprocessing(corpus: dict, tmp_path: Path) -> None:
    def path(**kw) -> Path:
        return bpe_cache_path({**corpus, **kw.pop("corpus", {})}, kw.get("vocab_size", 400), 2, "text", tmp_path)

    assert path(vocab_size=500) != path()
    assert path(corpus={"train_test_split": {"test_size": 4, "seed": 1, "take": "train"}}) != path()
    assert path(corpus={"preprocess_function": None, "columns_to_keep": ["x"]}) == path()


def test_too_small_vocabulary_is_refused(corpus: dict, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="vocab_size=100 is too small"):
        load_bpe_tokenizer(corpus, vocab_size=100, cache_dir=tmp_path / "tok")
