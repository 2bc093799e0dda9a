"""Star-graph generators: determinism, row format, graph shape, disjoint splits, token layout."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from xlm_core.data.simple_tokenizer import SimpleSpaceTokenizer
from xlm_core.tasks.star_graphs import (
    SETTINGS,
    generate_star_graph,
    graph_key,
    is_valid_path,
    star_graph_preprocess,
    star_graph_split,
)
from xlm_core.testing.typecheck import unchecked

SIZES = dict(num_train=300, num_validation=20, num_test=50)


def _nodes(row: dict) -> list[int]:
    return sorted({n for e in row["edge_list"] for n in e})


@pytest.mark.parametrize("setting", ["easy", "medium", "hard"])
def test_same_seed_same_rows_other_seed_other_rows(setting: str) -> None:
    a = star_graph_split(setting, "train", seed=7, **SIZES)
    assert a == star_graph_split(setting, "train", seed=7, **SIZES)
    assert a != star_graph_split(setting, "train", seed=8, **SIZES)


@pytest.mark.parametrize("setting", ["easy", "medium", "hard"])
def test_rows_have_the_format_and_a_valid_path(setting: str) -> None:
    s = SETTINGS[setting]
    for row in star_graph_split(setting, "test", seed=1, **SIZES):
        assert set(row) == {"edge_list", "source", "goal", "path"}
        assert is_valid_path(row)
        nodes = _nodes(row)
        assert all(0 <= n < s.vocab_size for n in nodes)
        # no node repeated: a union of simple paths sharing one centre has |E| = |V| - 1 (a tree)
        assert len(row["edge_list"]) == len(nodes) - 1
        assert len(set(map(tuple, row["edge_list"]))) == len(row["edge_list"])
        assert len(set(row["path"])) == len(row["path"])


def test_easy_graph_is_a_degree_3_star_with_5_nodes_per_arm() -> None:
    for row in star_graph_split("easy", "train", seed=3, **SIZES):
        out_deg = Counter(u for u, _ in row["edge_list"])
        in_deg = Counter(v for _, v in row["edge_list"])
        assert out_deg[row["source"]] == 3 and in_deg[row["source"]] == 0
        assert len(_nodes(row)) == 13 and len(row["edge_list"]) == 12
        assert len(row["path"]) == 5  # centre + 4 arm nodes
        assert out_deg[row["goal"]] == 0
        # every non-centre node has in-degree 1 and out-degree <= 1
        assert all(in_deg[n] == 1 and out_deg[n] <= 1 for n in _nodes(row) if n != row["source"])


@pytest.mark.parametrize("setting", ["medium", "hard"])
def test_asymmetric_graphs_follow_the_setting(setting: str) -> None:
    s = SETTINGS[setting]
    for row in star_graph_split(setting, "train", seed=5, **SIZES):
        out_deg = Counter(u for u, _ in row["edge_list"])
        in_deg = Counter(v for _, v in row["edge_list"])
        joints = [n for n in _nodes(row) if in_deg[n] + out_deg[n] > 2]  # the shared centre, if visible
        assert len(joints) <= 1
        assert s.min_path_nodes <= len(row["path"]) <= s.max_path_nodes
        assert out_deg[row["goal"]] == 0
        if row["source"] not in joints:
            assert in_deg[row["source"]] == 0
        # every node but the centre lies on one path: in- and out-degree at most 1
        assert all(in_deg[n] <= 1 and out_deg[n] <= 1 for n in _nodes(row) if n not in joints)
        if joints:  # the centre is on the goal path with >= min_plan_length nodes after it
            assert len(row["path"]) - 1 - row["path"].index(joints[0]) >= s.min_plan_length
        assert len(row["edge_list"]) == len(_nodes(row)) - 1 <= s.num_paths * (s.max_path_nodes - 1)


@pytest.mark.parametrize("setting", ["easy", "medium"])
def test_splits_share_no_graph_and_have_the_asked_sizes(setting: str) -> None:
    splits = {name: star_graph_split(setting, name, seed=11, **SIZES) for name in ("train", "validation", "test")}
    assert [len(splits[n]) for n in ("train", "validation", "test")] == [300, 20, 50]
    keys = {n: {graph_key(r) for r in rows} for n, rows in splits.items()}
    assert len(keys["train"]) == 300 and len(keys["validation"]) == 20 and len(keys["test"]) == 50
    assert not keys["train"] & keys["validation"]
    assert not keys["train"] & keys["test"]
    assert not keys["validation"] & keys["test"]
    # validation/test do not depend on the train size
    assert splits["test"] == star_graph_split(setting, "test", seed=11, **{**SIZES, "num_train": 5})


def test_graph_key_ignores_edge_order() -> None:
    row = generate_star_graph("easy", random.Random(0))
    shuffled = dict(row, edge_list=list(reversed(row["edge_list"])))
    assert graph_key(row) == graph_key(shuffled)


def test_preprocess_builds_prompt_and_target_ids_exactly() -> None:
    tok = SimpleSpaceTokenizer.for_numbers(20)
    row = {"edge_list": [[3, 5], [0, 3], [0, 9]], "source": 0, "goal": 5, "path": [0, 3, 5]}
    out = star_graph_preprocess(row, tok)
    # node n -> id n + 7; prompt = edges u v ..., source, goal; target = path edges s a a g
    assert out["prompt_ids"] == [10, 12, 7, 10, 7, 16, 7, 12]
    assert out["input_ids"] == [7, 10, 10, 12]


def test_easy_rows_fit_the_block_sizes_of_the_experiment() -> None:
    tok = SimpleSpaceTokenizer.for_numbers(20)
    for row in star_graph_split("easy", "validation", seed=0, num_validation=10):
        out = star_graph_preprocess(row, tok)
        assert len(out["prompt_ids"]) + 1 <= 28 and len(out["input_ids"]) + 1 <= 14  # + BOS / EOS


def test_nodes_outside_the_vocabulary_are_a_clear_error() -> None:
    row = {"edge_list": [[0, 30]], "source": 0, "goal": 30, "path": [0, 30]}
    with pytest.raises(ValueError, match="not in the tokenizer vocabulary"):
        star_graph_preprocess(row, SimpleSpaceTokenizer.for_numbers(20))


def test_unknown_setting_and_split_are_errors() -> None:
    with pytest.raises(ValueError, match="Unknown star-graph setting"):
        star_graph_split("tiny", "train")
    with unchecked(), pytest.raises(ValueError, match="Unknown split"):
        star_graph_split("easy", "dev")  # type: ignore[arg-type]


def test_star_path_metrics_separate_the_first_choice_from_following_edges() -> None:
    from xlm_core.tasks.star_graphs import StarPathMetrics

    rows = [
        {"text": "0 5 5 9 9 2", "target": "0 5 5 9 9 2"},  # right
        {"text": "0 7 7 8 8 4", "target": "0 5 5 9 9 2"},  # wrong arm, followed to its end
        {"text": "0 5 5 9 9 3", "target": "0 5 5 9 9 2"},  # right arm, wrong later
        {"text": "0 5 5 9 9 2"},  # no reference: not scored
    ]
    scored, metrics = StarPathMetrics().eval(rows)
    assert metrics == {"first_step_accuracy": 2 / 3, "exact_match_given_first_step": 1 / 2}
    assert [r.get("first_step_correct") for r in scored] == [True, False, True, None]
    assert StarPathMetrics().eval([{"text": "1"}]) == ([{"text": "1"}], {})
    assert StarPathMetrics().eval([{"text": "0 7", "target": "0 5"}])[1]["exact_match_given_first_step"] == 0.0
