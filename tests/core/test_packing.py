"""Text corpora: whole-file documents from globs, the split by document, and packing into blocks."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import huggingface_hub.constants
import pytest
import torch

from xlm_core.data.dataset_manager import DatasetManager, DatasetSourceError, expand_data_files
from xlm_core.data.packing import (
    document_ids_from_lengths,
    pack_token_lists,
    positions_from_lengths,
    same_document_mask,
    tokenize_and_pack,
)
from xlm_core.data.simple_tokenizer import SimpleSpaceTokenizer

PACK = "xlm_core.data.packing.tokenize_and_pack"


def test_documents_are_joined_with_bos_and_eos_and_cut_into_full_blocks() -> None:
    out = pack_token_lists(
        [[10, 11, 12], [], [20, 21], [30, 31, 32, 33, 34]], block_size=4, bos_token_id=1, eos_token_id=2
    )
    # stream: 1 10 11 12 2 | 1 20 21 2 | 1 30 31 32 33 34 2  (17 tokens -> 4 blocks, 1 token dropped)
    assert out["input_ids"] == [[1, 10, 11, 12], [2, 1, 20, 21], [2, 1, 30, 31], [32, 33, 34, 2]]
    assert out["document_lengths"] == [[4], [1, 3], [1, 3], [4]]
    assert all(sum(n) == 4 for n in out["document_lengths"])


def test_packing_without_special_tokens_keeps_only_the_text_ids() -> None:
    out = pack_token_lists([[5, 6, 7], [8, 9, 10]], block_size=2)
    assert out == {"input_ids": [[5, 6], [7, 8], [9, 10]], "document_lengths": [[2], [1, 1], [2]]}


def test_per_document_positions_and_ids() -> None:
    assert positions_from_lengths([3, 2]) == [0, 1, 2, 0, 1]
    assert document_ids_from_lengths([3, 2]) == [0, 0, 0, 1, 1]
    mask = same_document_mask(torch.tensor([[0, 0, 1]]))
    assert mask[0].tolist() == [[True, True, False], [True, True, False], [False, False, True]]


def test_tokenize_and_pack_uses_the_tokenizers_special_ids() -> None:
    tok = SimpleSpaceTokenizer.for_numbers(10)  # word k -> id k + 7; BOS 4, EOS 3
    out = tokenize_and_pack({"text": ["1 2 3", "4"]}, tok, block_size=4)
    assert out["input_ids"] == [[4, 8, 9, 10], [3, 4, 11, 3]]
    with pytest.raises(KeyError, match="text_field"):
        tokenize_and_pack({"content": ["1"]}, tok, block_size=4)


def _corpus(root: Path) -> Path:
    (root / "pkg" / "sub").mkdir(parents=True)
    (root / "pkg" / "a.py").write_text("def a():\n    return 1\n")
    (root / "pkg" / "b.py").write_text("x = 2\n\n\ny = 3\n")
    (root / "pkg" / "sub" / "c.py").write_text("class C:\n    pass\n")
    (root / "pkg" / "sub" / "skip.py").write_text("skipped\n")
    (root / "pkg" / "notes.md").write_text("not python\n")
    return root / "pkg"


def test_text_glob_gives_one_row_per_file_with_its_whole_text(tmp_path: Path) -> None:
    pkg = _corpus(tmp_path)
    m = DatasetManager(name="code", data_files=str(pkg / "**" / "*.py"), data_format="text", exclude=["*/skip.py"])
    assert [Path(f).name for f in m.files()] == ["a.py", "b.py", "c.py"]
    ds = m.build(hf_cache_dir=str(tmp_path / "hf"))
    assert ds["text"] == ["def a():\n    return 1\n", "x = 2\n\n\ny = 3\n", "class C:\n    pass\n"]


def test_txt_suffix_means_whole_file_documents(tmp_path: Path) -> None:
    (tmp_path / "one.txt").write_text("line 1\nline 2\n")
    ds = DatasetManager(name="t", data_files=str(tmp_path / "*.txt")).build(hf_cache_dir=str(tmp_path / "hf"))
    assert ds["text"] == ["line 1\nline 2\n"]


def test_glob_matching_nothing_is_reported_with_the_pattern(tmp_path: Path) -> None:
    with pytest.raises(DatasetSourceError, match=r"nothing\*\.txt"):
        DatasetManager(name="t", data_files=str(tmp_path / "nothing*.txt")).build()
    assert expand_data_files([str(tmp_path / "x.py")]) == [str(tmp_path / "x.py")]


def test_split_by_document_then_pack(tmp_path: Path) -> None:
    docs = [" ".join(str((i + j) % 10) for j in range(i + 3)) for i in range(12)]
    f = tmp_path / "docs.jsonl"
    f.write_text("".join(json.dumps({"body": d, "id": i}) + "\n" for i, d in enumerate(docs)))
    tok = SimpleSpaceTokenizer.for_numbers(10)

    def manager(take: str, **kw) -> DatasetManager:
        return DatasetManager(
            name=f"docs_{take}",
            data_files=str(f),
            train_test_split={"test_size": 3, "seed": 7, "take": take},
            preprocess_function=PACK,
            preprocess_batched=True,
            preprocess_function_kwargs={"block_size": 8, "text_field": "body"},
            columns_to_keep=["input_ids", "document_lengths"],
            **kw,
        )

    train = manager("train").load(tmp_path / "cache", tok)
    val = manager("test").load(tmp_path / "cache", tok)
    assert train.column_names == ["input_ids", "document_lengths"]
    assert all(len(r) == 8 for r in train["input_ids"]) and all(sum(n) == 8 for n in train["document_lengths"])
    # the documents of each side, recovered from the raw split (same seed), never overlap
    raw = {
        take: DatasetManager(
            name=f"raw_{take}", data_files=str(f), train_test_split={"test_size": 3, "seed": 7, "take": take}
        ).build()["id"]
        for take in ("train", "test")
    }
    assert len(raw["test"]) == 3 and not set(raw["train"]) & set(raw["test"])
    n_tokens = {take: sum(len(docs[i].split()) + 2 for i in raw[take]) for take in raw}
    assert len(train) == n_tokens["train"] // 8 and len(val) == n_tokens["test"] // 8


def test_a_new_file_in_the_glob_builds_a_new_cache(tmp_path: Path) -> None:
    pkg = _corpus(tmp_path)
    m = DatasetManager(name="code", data_files=str(pkg / "*.py"), data_format="text")
    first = m.prepare(tmp_path / "cache")
    (pkg / "z.py").write_text("z = 26\n")
    assert m.prepare(tmp_path / "cache") != first


def test_hub_source_goes_through_load_dataset_with_a_local_repo_standing_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The hub code path (``full_name: repo/name/split`` -> ``datasets.load_dataset``), on local data: a
    directory laid out like a hub dataset repo is what ``load_dataset`` resolves the id to."""
    repo = tmp_path / "someorg" / "corpus"
    repo.mkdir(parents=True)
    (repo / "train.jsonl").write_text("".join(json.dumps({"content": f"{i} {i + 1} {i + 2}"}) + "\n" for i in range(6)))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)  # never ask the real hub first
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    tok = SimpleSpaceTokenizer.for_numbers(10)
    m = DatasetManager(
        name="hub_docs",
        full_name="someorg/corpus/train",
        preprocess_function=PACK,
        preprocess_batched=True,
        columns_to_keep=["input_ids", "document_lengths"],
        preprocess_function_kwargs={"block_size": 5, "text_field": "content"},
    )
    ds = m.load(tmp_path / "cache", tok)
    assert len(ds) == 6 and ds[0]["input_ids"] == [4, 7, 8, 9, 3]  # BOS 0 1 2 EOS
