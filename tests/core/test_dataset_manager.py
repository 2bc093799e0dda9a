"""DatasetManager: sources, cache keys and invalidation, iterable shards, DDP splits, debug switching."""

from __future__ import annotations

import json
from itertools import islice
from pathlib import Path

import datasets
import huggingface_hub.constants
import pytest

from xlm_core.data.dataset_manager import (
    DatasetManager,
    DatasetSourceError,
    HubId,
    InfiniteIterableDataset,
    debug_overfit_enabled,
    parse_hub_id,
)
from xlm_core.data.simple_tokenizer import SimpleSpaceTokenizer
from xlm_core.tasks.star_graphs import graph_key, star_graph_preprocess

GEN = "xlm_core.tasks.star_graphs.star_graph_split"
SMALL = dict(setting="easy", split="validation", seed=0, num_train=0, num_validation=12, num_test=0)


def add_offset(example: dict, tokenizer, offset: int = 0) -> dict:
    return {"shifted": [i + offset for i in star_graph_preprocess(example, tokenizer)["input_ids"]]}


def add_offset_v2(example: dict, tokenizer, offset: int = 0) -> dict:
    return {"shifted": [i + offset + 1 for i in star_graph_preprocess(example, tokenizer)["input_ids"]]}


def tag_row(example: dict, tokenizer, tag: str = "x") -> dict:
    return {**example, "tag": tag}


def _manager(**overrides) -> DatasetManager:
    cfg = dict(name="tiny", generator=GEN, generator_kwargs=SMALL, preprocess_function=add_offset)
    cfg.update(overrides)
    return DatasetManager(**cfg)


@pytest.fixture()
def tok() -> SimpleSpaceTokenizer:
    return SimpleSpaceTokenizer.for_numbers(20)


def test_generator_source_is_preprocessed_and_cached(tmp_path: Path, tok) -> None:
    m = _manager(preprocess_function="xlm_core.tasks.star_graphs.star_graph_preprocess")
    path = m.prepare(tmp_path, tok)
    assert path == tmp_path / "tiny" / m.cache_key(tok) and (path / "xlm_manifest.json").exists()
    ds = m.load(tmp_path, tok)
    assert len(ds) == 12
    assert set(ds.column_names) == {"edge_list", "source", "goal", "path", "prompt_ids", "input_ids"}
    row = ds[0]
    assert row["input_ids"] == [n + 7 for a, b in zip(row["path"], row["path"][1:]) for n in (a, b)]


def test_same_config_reuses_the_cache(tmp_path: Path, tok) -> None:
    path = _manager().prepare(tmp_path, tok)
    (path / "marker").write_text("kept")
    # a fresh manager and an equal (separately built) tokenizer hit the same cache
    again = _manager().prepare(tmp_path, SimpleSpaceTokenizer.for_numbers(20))
    assert again == path and (path / "marker").exists()


def test_rewrite_manual_cache_rebuilds(tmp_path: Path, tok) -> None:
    path = _manager().prepare(tmp_path, tok)
    (path / "marker").write_text("stale")
    assert _manager().prepare(tmp_path, tok, rewrite_manual_cache=True) == path
    assert not (path / "marker").exists() and len(datasets.load_from_disk(str(path))) == 12


@pytest.mark.parametrize(
    "change",
    [
        dict(preprocess_function_kwargs={"offset": 3}),
        dict(preprocess_function=add_offset_v2),
        dict(generator_kwargs={**SMALL, "seed": 1}),
        dict(train_test_split={"test_size": 4, "seed": 0, "take": "test"}),
        dict(columns_to_keep=["shifted"]),
    ],
    ids=["preprocess_kwargs", "preprocess_function", "source", "split", "columns"],
)
def test_changed_config_builds_a_new_cache(tmp_path: Path, tok, change: dict) -> None:
    base = _manager().prepare(tmp_path, tok)
    changed = _manager(**change).prepare(tmp_path, tok)
    assert changed != base and changed.exists() and base.exists()


def test_changed_tokenizer_builds_a_new_cache(tmp_path: Path, tok) -> None:
    m = _manager()
    assert m.prepare(tmp_path, tok) != m.prepare(tmp_path, SimpleSpaceTokenizer.for_numbers(30))


def test_preprocess_kwargs_reach_the_function(tmp_path: Path, tok) -> None:
    plain = _manager().load(tmp_path, tok)
    shifted = _manager(preprocess_function_kwargs={"offset": 100}).load(tmp_path, tok)
    assert [i + 100 for i in plain[0]["shifted"]] == shifted[0]["shifted"]


def test_tokenizer_does_not_enter_the_key_without_preprocessing(tok) -> None:
    m = _manager(preprocess_function=None)
    assert m.cache_key(tok) == m.cache_key(SimpleSpaceTokenizer.for_numbers(30))


def test_local_jsonl_with_split_and_columns(tmp_path: Path) -> None:
    f = tmp_path / "rows.jsonl"
    f.write_text("".join(json.dumps({"text": f"row {i}", "id": i, "junk": 0}) + "\n" for i in range(10)))
    m = DatasetManager(
        name="local",
        data_files=str(f),
        train_test_split={"test_size": 3, "seed": 2025, "take": "test"},
        columns_to_remove=["junk"],
    )
    test_half = m.load(tmp_path / "cache", None)
    train_half = DatasetManager(
        name="local", data_files=str(f), train_test_split={"test_size": 3, "seed": 2025, "take": "train"}
    ).load(tmp_path / "cache", None)
    assert len(test_half) == 3 and len(train_half) == 7 and test_half.column_names == ["text", "id"]
    assert sorted(list(test_half["id"]) + list(train_half["id"])) == list(range(10))


def test_changed_local_file_builds_a_new_cache(tmp_path: Path) -> None:
    f = tmp_path / "rows.jsonl"
    f.write_text('{"a": 1}\n')
    m = DatasetManager(name="local", data_files=str(f))
    first = m.prepare(tmp_path / "cache")
    f.write_text('{"a": 1}\n{"a": 2}\n')
    second = m.prepare(tmp_path / "cache")
    assert first != second and len(datasets.load_from_disk(str(second))) == 2


def test_missing_local_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DatasetSourceError, match="data files not found"):
        DatasetManager(name="x", data_files=str(tmp_path / "nope.jsonl")).build()


@pytest.mark.parametrize(
    "full_name, expected",
    [
        ("openai/gsm8k/main/test", HubId("openai/gsm8k", "main", "test")),
        ("TinyGSM/TinyGSM/train", HubId("TinyGSM/TinyGSM", None, "train")),
        ("dhruveshpatel/star-small/train[:100]", HubId("dhruveshpatel/star-small", None, "train[:100]")),
    ],
)
def test_parse_hub_id(full_name: str, expected: HubId) -> None:
    assert parse_hub_id(full_name) == expected


@pytest.mark.parametrize("bad", ["gsm8k", "openai/gsm8k", "a/b/c/d/e", "a//b"])
def test_bad_hub_id_is_rejected(bad: str) -> None:
    with pytest.raises(ValueError, match="repo/name/split"):
        parse_hub_id(bad)


def test_offline_hub_source_gives_a_clear_message(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    m = DatasetManager(name="hub", full_name="dhruveshpatel/star-small/train")
    with pytest.raises(DatasetSourceError, match="HF_HUB_OFFLINE is set") as err:
        m.prepare(tmp_path)
    assert "dhruveshpatel/star-small" in str(err.value) and "data_files" in str(err.value)


def test_exactly_one_source_is_required() -> None:
    with pytest.raises(ValueError, match="exactly one source"):
        DatasetManager(name="x")
    with pytest.raises(ValueError, match="exactly one source"):
        DatasetManager(name="x", full_name="a/b/train", data_files="f.jsonl")


def test_on_the_fly_processor_runs_at_read_time(tmp_path: Path, tok) -> None:
    m = _manager(on_the_fly_processor=tag_row, on_the_fly_processor_kwargs={"tag": "fly"})
    ds = m.load(tmp_path, tok)
    assert ds[3]["tag"] == "fly" and "shifted" in ds[3]
    # not stored: the processor is outside the cache key
    assert m.cache_key(tok) == _manager().cache_key(tok)
    it = _manager(on_the_fly_processor=tag_row, iterable=True, num_shards=2).load(tmp_path, tok)
    assert {row["tag"] for row in it} == {"x"}


def _keys(rows) -> list:
    return [graph_key(r) for r in rows]


def test_iterable_shards_split_between_two_ranks_disjointly(tmp_path: Path, tok) -> None:
    m = _manager(iterable=True, num_shards=4)
    all_rows = _keys(m.load(tmp_path, tok))
    ranks = [_keys(m.load(tmp_path, tok, shuffle=True, seed=1, rank=r, world_size=2)) for r in (0, 1)]
    assert len(all_rows) == 12 and len(ranks[0]) == len(ranks[1]) == 6
    assert not set(ranks[0]) & set(ranks[1]) and set(ranks[0]) | set(ranks[1]) == set(all_rows)


def test_iterable_shuffle_is_seeded_and_changes_with_epoch(tmp_path: Path, tok) -> None:
    m = _manager(iterable=True, num_shards=3, shuffle_buffer_size=8)
    a, b = (m.load(tmp_path, tok, shuffle=True, seed=5) for _ in range(2))
    assert _keys(a) == _keys(b)
    a.set_epoch(1)
    assert _keys(a) != _keys(b) and sorted(_keys(a)) == sorted(_keys(b))


def test_infinite_stream_repeats_with_a_new_order_each_pass(tmp_path: Path, tok) -> None:
    ds = _manager(infinite=True, num_shards=3, shuffle_buffer_size=12).load(tmp_path, tok, shuffle=True, seed=0)
    assert isinstance(ds, InfiniteIterableDataset)
    rows = _keys(islice(iter(ds), 36))
    passes = [rows[i * 12 : (i + 1) * 12] for i in range(3)]
    assert all(sorted(p) == sorted(passes[0]) and len(set(p)) == 12 for p in passes)
    assert passes[0] != passes[1]


def test_debug_block_is_used_only_when_enabled(monkeypatch) -> None:
    cfg = dict(
        name="full",
        generator=GEN,
        generator_kwargs=SMALL,
        debug={"name": "small", "generator_kwargs": {"num_validation": 3}},
    )
    monkeypatch.delenv("DEBUG_OVERFIT", raising=False)
    full = DatasetManager.from_config(cfg, use_debug=debug_overfit_enabled(False))
    assert full.name == "full" and full.generator_kwargs["num_validation"] == 12
    monkeypatch.setenv("DEBUG_OVERFIT", "1")
    small = DatasetManager.from_config(cfg, use_debug=debug_overfit_enabled(False))
    # the debug block is merged key by key: the other generator kwargs stay
    assert small.name == "small" and small.generator_kwargs == {**SMALL, "num_validation": 3}
    monkeypatch.setenv("DEBUG_OVERFIT", "0")
    assert not debug_overfit_enabled(None) and debug_overfit_enabled("overfit") and debug_overfit_enabled(True)


@pytest.mark.parametrize(
    "fn, batched",
    [
        ("xlm_core.tasks.star_graphs.star_graph_preprocess", False),
        ("xlm_core.tasks.star_graphs.star_graph_preprocess_batch", True),
    ],
)
def test_in_memory_preprocessing_matches_dataset_map(tok, fn: str, batched: bool) -> None:
    m = _manager(preprocess_function=fn, preprocess_batched=batched, generator_kwargs={**SMALL, "num_validation": 1500})
    fast = m.build(tok)
    raw = datasets.Dataset.from_list(m.generator(**m.generator_kwargs))
    via_map = raw.map(m.preprocess_function, fn_kwargs={"tokenizer": tok}, batched=batched)
    assert fast.column_names == via_map.column_names and fast.to_list() == via_map.to_list()
