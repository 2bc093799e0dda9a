"""Path-star graphs (Bachmann & Nagarajan, 2024): deterministic generators, disjoint splits, preprocessing.

A row is ``{"edge_list": [[u, v], ...], "source": s, "goal": g, "path": [s, ..., g]}`` with the edge
list shuffled. Splits are cut from one seeded stream of distinct graphs (validation first, then test,
then train), so no graph is shared between splits and a split does not depend on the sizes after it.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

__all__ = [
    "StarGraphSetting",
    "SETTINGS",
    "SPLIT_ORDER",
    "DEFAULT_SPLIT_SIZES",
    "generate_star_graph",
    "generate_star_graphs",
    "star_graph_split",
    "graph_key",
    "is_valid_path",
    "star_graph_preprocess",
    "star_graph_preprocess_batch",
    "StarPathMetrics",
]

Split = Literal["train", "validation", "test"]
SPLIT_ORDER: tuple[str, ...] = ("validation", "test", "train")
DEFAULT_SPLIT_SIZES: dict[str, int] = {"train": 50_000, "validation": 1_000, "test": 5_000}


@dataclass(frozen=True)
class StarGraphSetting:
    """Parameters of one difficulty level (see tasks.md)."""

    name: str
    num_paths: int  # arms (easy) or joined paths (medium/hard)
    min_path_nodes: int
    max_path_nodes: int
    vocab_size: int  # node labels are 0 .. vocab_size-1
    symmetric: bool  # easy: centre is the source and every arm has the same length
    min_plan_length: int = 1  # nodes after the centre on path 0 (asymmetric settings)

    def max_nodes(self) -> int:
        if self.symmetric:
            return 1 + self.num_paths * (self.max_path_nodes - 1)
        return self.num_paths * self.max_path_nodes - (self.num_paths - 1)


SETTINGS: dict[str, StarGraphSetting] = {
    "easy": StarGraphSetting("easy", 3, 5, 5, 20, symmetric=True),
    "medium": StarGraphSetting("medium", 3, 3, 6, 20, symmetric=False, min_plan_length=2),
    "hard": StarGraphSetting("hard", 5, 6, 12, 56, symmetric=False, min_plan_length=5),
}


def _get_setting(setting: str | StarGraphSetting) -> StarGraphSetting:
    if isinstance(setting, StarGraphSetting):
        return setting
    if setting not in SETTINGS:
        raise ValueError(f"Unknown star-graph setting {setting!r}; choose one of {sorted(SETTINGS)}.")
    return SETTINGS[setting]


def generate_star_graph(setting: str | StarGraphSetting, rng: random.Random) -> dict[str, Any]:
    """Draw one graph of ``setting`` using ``rng``; nodes are distinct labels from the vocabulary."""
    s = _get_setting(setting)
    if s.symmetric:
        nodes = rng.sample(range(s.vocab_size), s.max_nodes())
        centre, rest = nodes[0], nodes[1:]
        arm_len = s.max_path_nodes - 1
        paths = [[centre] + rest[i * arm_len : (i + 1) * arm_len] for i in range(s.num_paths)]
        goal_path = paths[rng.randrange(s.num_paths)]
    else:
        lengths = [rng.randint(s.min_path_nodes, s.max_path_nodes) for _ in range(s.num_paths)]
        if lengths[0] < s.min_plan_length + 1:
            raise ValueError(
                f"Setting {s.name!r}: path 0 needs at least min_plan_length+1={s.min_plan_length + 1} nodes; "
                f"raise min_path_nodes ({s.min_path_nodes}) or lower min_plan_length."
            )
        # centre index on each path; path 0 keeps at least min_plan_length nodes after it
        centre_at = [rng.randrange(lengths[0] - s.min_plan_length)] + [rng.randrange(n) for n in lengths[1:]]
        labels = rng.sample(range(s.vocab_size), sum(lengths) - (s.num_paths - 1))
        centre, pool = labels[0], iter(labels[1:])
        paths = [[centre if j == c else next(pool) for j in range(n)] for n, c in zip(lengths, centre_at)]
        goal_path = paths[0]
    edges = [[a, b] for p in paths for a, b in zip(p, p[1:])]
    rng.shuffle(edges)
    return {"edge_list": edges, "source": goal_path[0], "goal": goal_path[-1], "path": list(goal_path)}


def graph_key(row: dict[str, Any]) -> tuple:
    """Canonical identity of a graph (edge order does not matter)."""
    return (tuple(sorted(map(tuple, row["edge_list"]))), row["source"], row["goal"])


def generate_star_graphs(setting: str | StarGraphSetting, num: int, seed: int) -> Iterator[dict[str, Any]]:
    """Yield ``num`` pairwise distinct graphs from one stream seeded by ``seed``."""
    rng = random.Random(seed)
    seen: set[tuple] = set()
    produced, attempts = 0, 0
    while produced < num:
        row = generate_star_graph(setting, rng)
        attempts += 1
        key = graph_key(row)
        if key in seen:
            if attempts > 20 * num + 1000:
                raise RuntimeError(f"Could not draw {num} distinct {setting!r} graphs; ask for fewer.")
            continue
        seen.add(key)
        produced += 1
        yield row


def star_graph_split(
    setting: str,
    split: Split,
    seed: int = 42,
    num_train: int = DEFAULT_SPLIT_SIZES["train"],
    num_validation: int = DEFAULT_SPLIT_SIZES["validation"],
    num_test: int = DEFAULT_SPLIT_SIZES["test"],
) -> list[dict[str, Any]]:
    """Rows of one split; the dataset manager's generator source for star-graph datasets."""
    sizes = {"train": num_train, "validation": num_validation, "test": num_test}
    if split not in sizes:
        raise ValueError(f"Unknown split {split!r}; choose one of {list(SPLIT_ORDER)}.")
    if any(n < 0 for n in sizes.values()):
        raise ValueError(f"Split sizes must be >= 0, got {sizes}.")
    start = sum(sizes[name] for name in SPLIT_ORDER[: SPLIT_ORDER.index(split)])
    stream = generate_star_graphs(setting, start + sizes[split], seed)
    return list(stream)[start:]


def is_valid_path(row: dict[str, Any]) -> bool:
    """True when ``row["path"]`` runs from source to goal along edges of the graph."""
    path, edges = row["path"], set(map(tuple, row["edge_list"]))
    return (
        len(path) >= 2
        and path[0] == row["source"]
        and path[-1] == row["goal"]
        and all((a, b) in edges for a, b in zip(path, path[1:]))
    )


def _node_ids(tokenizer: Any, nodes: list[int]) -> list[int]:
    ids = tokenizer.convert_tokens_to_ids([str(n) for n in nodes])
    unk = getattr(tokenizer, "unk_token_id", None)
    if unk is not None and unk in ids:
        bad = [n for n, i in zip(nodes, ids) if i == unk]
        raise ValueError(
            f"Star-graph nodes {bad} are not in the tokenizer vocabulary; use "
            "SimpleSpaceTokenizer.for_numbers(vocab_size) with vocab_size above the largest node."
        )
    return list(ids)


def star_graph_preprocess(example: Mapping[str, Any], tokenizer: Any) -> dict[str, list[int]]:
    """Row -> ``prompt_ids`` (edges u v ..., source, goal) and ``input_ids`` (path edges s a a b ... g)."""
    prompt = [n for edge in example["edge_list"] for n in edge] + [example["source"], example["goal"]]
    path = example["path"]
    target = [n for a, b in zip(path, path[1:]) for n in (a, b)]
    return {"prompt_ids": _node_ids(tokenizer, prompt), "input_ids": _node_ids(tokenizer, target)}


def star_graph_preprocess_batch(batch: Mapping[str, list], tokenizer: Any) -> dict[str, list[list[int]]]:
    """Batched ``star_graph_preprocess`` (``.map(batched=True)``): one vocabulary lookup per batch."""
    nodes = sorted({n for edges in batch["edge_list"] for edge in edges for n in edge})
    table = dict(zip(nodes, _node_ids(tokenizer, nodes)))
    prompts, targets = [], []
    for edges, source, goal, path in zip(batch["edge_list"], batch["source"], batch["goal"], batch["path"]):
        prompts.append([table[n] for edge in edges for n in edge] + [table[source], table[goal]])
        targets.append([table[n] for a, b in zip(path, path[1:]) for n in (a, b)])
    return {"prompt_ids": prompts, "input_ids": targets}


class StarPathMetrics:
    """Post-hoc metrics of star-graph answers, from the prediction rows of any family (``text`` vs ``target``).

    ``first_step_accuracy``: the share of answers whose first choice (the node after the source, word 1
    of ``s a a b ...``) is right. ``exact_match_given_first_step``: the share of those that are right as
    a whole (0 when none is). A next-token model that learned to follow edges but guesses the arm at the
    source (the Clever-Hans plateau, docs/tasks.md) has first_step_accuracy near 1/degree and
    exact_match_given_first_step near 1. Each row gets ``first_step_correct``. Set as the
    ``post_hoc_evaluator`` (the CPU presets ``star_easy_*_cpu`` do); logged as ``{split}/prediction/<name>``.
    """

    def eval(
        self, predictions: list[dict[str, Any]], tokenizer: Any = None, **kwargs: Any
    ) -> tuple[list[dict[str, Any]], dict[str, float]]:
        """Score ``predictions`` (rows with ``text`` and ``target``); returns (rows, metrics)."""
        rows = [dict(p) for p in predictions]
        scored = first_right = both_right = 0
        for row in rows:
            if "target" not in row:
                continue
            pred, ref = str(row.get("text") or "").split(), str(row["target"]).split()
            first = len(pred) > 1 and len(ref) > 1 and pred[1] == ref[1]
            row["first_step_correct"] = first
            scored += 1
            first_right += first
            both_right += first and pred == ref
        if scored == 0:
            return rows, {}
        return rows, {
            "first_step_accuracy": first_right / scored,
            "exact_match_given_first_step": both_right / first_right if first_right else 0.0,
        }
