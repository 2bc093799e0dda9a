"""Dataset manager: load one dataset from the hub, a local file or a generator, preprocess it and cache it.

A manager is configured by a plain mapping (one file in ``configs/datasets/``)::

    name: star_easy_train            # folder name under the cache dir
    # exactly one source:
    full_name: repo/name[/config]/split          # hub id, via datasets.load_dataset
    data_files: path/to/file.jsonl               # local file(s) or glob(s): "corpus/**/*.txt"
    generator: pkg.module.function               # called with generator_kwargs; returns rows
    generator_kwargs: {...}
    data_format: null        # json | parquet | arrow | csv | text; null: from the file suffix
                             # text: one row {"text": <whole file>} per file (a document)
    exclude: [...]           # glob patterns (fnmatch on the full path) dropped from data_files
    follow_symlinks: false   # true: `**` enters linked directories too (each real directory once)
    load_kwargs: {...}       # extra datasets.load_dataset kwargs (e.g. encoding_errors: replace)
    train_test_split: {test_size: 0.05, seed: 2025, take: test}   # optional; training rows identical to a
                             # held-out row are left out of the train side (no document on both sides)
    preprocess_function: pkg.module.fn           # fn(example, tokenizer, **kwargs) -> dict, via .map
    preprocess_function_kwargs: {...}
    preprocess_batched: false
    on_the_fly_processor: pkg.module.fn          # fn(example, tokenizer, **kwargs) -> dict, at read time
    on_the_fly_processor_kwargs: {...}
    columns_to_keep: [...]  /  columns_to_remove: [...]
    iterable: false           # serve as an IterableDataset of num_shards shards with a shuffle buffer
    num_shards: 8
    shuffle_buffer_size: 1000
    infinite: false           # endless stream, reshuffled each pass (implies iterable)
    use_cache: true           # false: rebuild in memory at every setup
    debug: {...}              # partial override merged in when DEBUG_OVERFIT=1 / debug=overfit

The cache lives at ``<cache_dir>/<name>/<key>`` (``save_to_disk``); ``key`` hashes the source, split
options, preprocess function (qualified name and source code), its kwargs, the kept/removed columns
and the tokenizer, so changing any of them builds a new cache instead of reusing a stale one. Its
``xlm_manifest.json`` records the row count and the size and sha256 of every file, checked before the
cache is used: a damaged cache is an error naming the directory to delete, never fewer rows.

A batched preprocess function may return a different number of rows than it was given (e.g.
packing documents into fixed-length blocks); give ``columns_to_keep`` then, so the input columns
are dropped inside ``.map``.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import os
import shutil
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from itertools import count
from pathlib import Path
from typing import Any

import datasets
import torch
from datasets.distributed import split_dataset_by_node
from datasets.fingerprint import Hasher

from xlm_core.config.tools import import_object, to_plain
from xlm_core.data.file_globs import expand_data_files
from xlm_core.data.hub import use_hub_or_cache
from xlm_core.errors import UsageError

__all__ = [
    "CACHE_FORMAT_VERSION",
    "DatasetSourceError",
    "HubId",
    "parse_hub_id",
    "expand_data_files",
    "tokenizer_fingerprint",
    "debug_overfit_enabled",
    "dist_rank_and_world_size",
    "DatasetManager",
    "verify_cache",
    "load_verified_cache",
    "InfiniteIterableDataset",
    "ProcessedDataset",
]

logger = logging.getLogger(__name__)

CACHE_FORMAT_VERSION = 2  # 2: the manifest records row count and file hashes
_MANIFEST = "xlm_manifest.json"
_FILE_FORMATS = {
    ".jsonl": "json",
    ".json": "json",
    ".parquet": "parquet",
    ".arrow": "arrow",
    ".csv": "csv",
    ".txt": "text",
}
# `text` means whole-file documents here (datasets' own default is one row per line).
_FORMAT_DEFAULT_KWARGS: dict[str, dict[str, Any]] = {"text": {"sample_by": "document"}}


class DatasetSourceError(UsageError, RuntimeError):
    """A dataset source could not be read; the message says why and what to do."""


@dataclass(frozen=True)
class HubId:
    """A parsed hub source ``repo/name[/config]/split``."""

    path: str
    config: str | None
    split: str


def parse_hub_id(full_name: str) -> HubId:
    """Split ``repo/name[/config]/split`` into its parts."""
    parts = full_name.strip("/").split("/")
    if len(parts) == 3 and all(parts):
        return HubId(f"{parts[0]}/{parts[1]}", None, parts[2])
    if len(parts) == 4 and all(parts):
        return HubId(f"{parts[0]}/{parts[1]}", parts[2], parts[3])
    raise ValueError(
        f"Hub dataset id {full_name!r} must look like 'repo/name/split' or 'repo/name/config/split' "
        "(e.g. 'openai/gsm8k/main/test')."
    )


def debug_overfit_enabled(flag: bool | str | None = None) -> bool:
    """True when the debug sources should be used: ``flag`` (from config) or env ``DEBUG_OVERFIT=1``."""
    if isinstance(flag, str):
        flag = flag.strip().lower() in {"1", "true", "yes", "overfit"}
    env = os.environ.get("DEBUG_OVERFIT", "").strip().lower() in {"1", "true", "yes"}
    return bool(flag) or env


def dist_rank_and_world_size() -> tuple[int, int]:
    """(rank, world size) from torch.distributed when initialised, else (0, 1)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def _function_fingerprint(fn: Callable[..., Any] | None) -> dict[str, str] | None:
    """Qualified name + hash of the source code, so an edited function invalidates the cache."""
    if fn is None:
        return None
    name = f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"
    try:
        code_hash = hashlib.sha256(inspect.getsource(fn).encode()).hexdigest()
    except (OSError, TypeError):
        code_hash = Hasher.hash(fn)
    return {"name": name, "code": code_hash}


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """A hash of what decides a tokenizer's ids: for fast tokenizers the serialised ``tokenizers``
    model and the special/added tokens, so a freshly trained tokenizer and its saved copy match."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None or not hasattr(backend, "to_str"):
        return Hasher.hash(tokenizer)
    return Hasher.hash(
        {
            "class": type(tokenizer).__name__,
            "backend": backend.to_str(),
            "special": {k: str(v) for k, v in sorted(tokenizer.special_tokens_map.items())},
            "added": sorted(tokenizer.get_added_vocab().items()),
        }
    )


def _deep_merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in override.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), dict) else v
    return out


class ProcessedDataset(torch.utils.data.Dataset):
    """Map-style view that applies an on-the-fly processor to each example when it is read."""

    def __init__(self, dataset: Any, fn: Callable[..., dict], tokenizer: Any, kwargs: Mapping[str, Any]):
        self.dataset, self.fn, self.tokenizer, self.kwargs = dataset, fn, tokenizer, dict(kwargs)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, idx: int) -> dict[str, Any]:
        return self.fn(self.dataset[idx], tokenizer=self.tokenizer, **self.kwargs)


class InfiniteIterableDataset(torch.utils.data.IterableDataset):
    """Endless stream over a HF IterableDataset; each pass calls ``set_epoch`` so the shuffle changes."""

    def __init__(self, dataset: datasets.IterableDataset, start_epoch: int = 0):
        self.dataset, self.epoch = dataset, start_epoch

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for epoch in count(self.epoch):
            self.dataset.set_epoch(epoch)
            empty = True
            for example in self.dataset:
                empty = False
                yield example
            if empty:
                raise DatasetSourceError("Infinite stream over an empty dataset (or empty shard for this rank).")


class DatasetManager:
    """Builds, caches and serves one dataset (see the module docstring for the config keys)."""

    def __init__(
        self,
        *,
        name: str | None = None,
        full_name: str | None = None,
        data_files: str | list[str] | None = None,
        data_format: str | None = None,
        exclude: list[str] | None = None,
        follow_symlinks: bool = False,
        load_kwargs: Mapping[str, Any] | None = None,
        generator: str | Callable[..., Any] | None = None,
        generator_kwargs: Mapping[str, Any] | None = None,
        train_test_split: Mapping[str, Any] | None = None,
        preprocess_function: str | Callable[..., dict] | None = None,
        preprocess_function_kwargs: Mapping[str, Any] | None = None,
        preprocess_batched: bool = False,
        on_the_fly_processor: str | Callable[..., dict] | None = None,
        on_the_fly_processor_kwargs: Mapping[str, Any] | None = None,
        columns_to_keep: list[str] | None = None,
        columns_to_remove: list[str] | None = None,
        iterable: bool = False,
        num_shards: int = 1,
        shuffle_buffer_size: int = 1000,
        infinite: bool = False,
        use_cache: bool = True,
    ):
        sources = {"full_name": full_name, "data_files": data_files, "generator": generator}
        given = [k for k, v in sources.items() if v]
        if len(given) != 1:
            raise ValueError(
                f"Dataset {name!r}: give exactly one source among full_name / data_files / generator, got {given or 'none'}."
            )
        if full_name:
            parse_hub_id(full_name)
        if train_test_split is not None:
            take = train_test_split.get("take", "train")
            if take not in ("train", "test") or "test_size" not in train_test_split:
                raise ValueError(
                    f"Dataset {name!r}: train_test_split needs test_size and take in ('train', 'test'), "
                    f"got {dict(train_test_split)}."
                )
        if columns_to_keep and columns_to_remove:
            raise ValueError(f"Dataset {name!r}: set columns_to_keep or columns_to_remove, not both.")
        if num_shards < 1 or shuffle_buffer_size < 1:
            raise ValueError(f"Dataset {name!r}: num_shards and shuffle_buffer_size must be >= 1.")
        self.name = name or "dataset"
        self.full_name = full_name
        self.data_files = to_plain(data_files)
        self.data_format = data_format
        self.exclude = list(to_plain(exclude) or [])
        self.follow_symlinks = bool(follow_symlinks)
        self.load_kwargs = dict(to_plain(load_kwargs) or {})
        self.generator = import_object(generator) if isinstance(generator, str) else generator
        self.generator_kwargs = dict(to_plain(generator_kwargs) or {})
        self.train_test_split = dict(to_plain(train_test_split)) if train_test_split else None
        self.preprocess_function = (
            import_object(preprocess_function) if isinstance(preprocess_function, str) else preprocess_function
        )
        self.preprocess_function_kwargs = dict(to_plain(preprocess_function_kwargs) or {})
        self.preprocess_batched = preprocess_batched
        self.on_the_fly_processor = (
            import_object(on_the_fly_processor) if isinstance(on_the_fly_processor, str) else on_the_fly_processor
        )
        self.on_the_fly_processor_kwargs = dict(to_plain(on_the_fly_processor_kwargs) or {})
        self.columns_to_keep = list(columns_to_keep) if columns_to_keep else None
        self.columns_to_remove = list(columns_to_remove) if columns_to_remove else None
        self.iterable = iterable or infinite
        self.num_shards = num_shards
        self.shuffle_buffer_size = shuffle_buffer_size
        self.infinite = infinite
        self.use_cache = use_cache

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any], use_debug: bool = False) -> DatasetManager:
        """Build from a config mapping; ``use_debug`` merges its ``debug`` block over the rest."""
        cfg = dict(to_plain(cfg))
        debug = cfg.pop("debug", None)
        if use_debug and debug:
            cfg = _deep_merge(cfg, debug)
        return cls(**cfg)

    def files(self) -> list[str]:
        """The local files this dataset reads (globs expanded, ``exclude`` applied); [] for other sources."""
        return expand_data_files(self.data_files, self.exclude, self.follow_symlinks) if self.data_files else []

    # ----- cache key -------------------------------------------------------------------------
    def _source_spec(self) -> dict[str, Any]:
        if self.full_name:
            return {"hub": self.full_name, **({"load_kwargs": self.load_kwargs} if self.load_kwargs else {})}
        if self.data_files:
            stats = []
            for f in self.files():
                p = Path(f)
                st = p.stat() if p.exists() else None
                stats.append([str(p.resolve()), st.st_size if st else None, st.st_mtime_ns if st else None])
            spec: dict[str, Any] = {"files": stats, "format": self.data_format}
            if self.load_kwargs:
                spec["load_kwargs"] = self.load_kwargs
            return spec
        return {"generator": _function_fingerprint(self.generator), "kwargs": self.generator_kwargs}

    def cache_key(self, tokenizer: Any = None) -> str:
        """Hash of everything that determines the cached rows."""
        spec = {
            "version": CACHE_FORMAT_VERSION,
            "source": self._source_spec(),
            "train_test_split": self.train_test_split,
            "preprocess": _function_fingerprint(self.preprocess_function),
            "preprocess_kwargs": self.preprocess_function_kwargs,
            "preprocess_batched": self.preprocess_batched,
            "columns": [self.columns_to_keep, self.columns_to_remove],
            # the tokenizer only matters when a preprocess function can use it
            "tokenizer": tokenizer_fingerprint(tokenizer) if self.preprocess_function is not None else None,
        }
        return Hasher.hash(spec)

    def cache_path(self, cache_dir: str | os.PathLike, tokenizer: Any = None) -> Path:
        return Path(cache_dir) / self.name / self.cache_key(tokenizer)

    # ----- build -----------------------------------------------------------------------------
    def _load_raw(self, hf_cache_dir: str | None) -> datasets.Dataset:
        if self.full_name:
            hub = parse_hub_id(self.full_name)
            reachable = use_hub_or_cache()
            try:
                ds = datasets.load_dataset(
                    hub.path, hub.config, split=hub.split, cache_dir=hf_cache_dir, **self.load_kwargs
                )
            except Exception as e:
                offline = not reachable
                raise DatasetSourceError(
                    f"Could not load hub dataset {self.full_name!r} (path={hub.path!r}, config={hub.config!r}, "
                    f"split={hub.split!r}): {type(e).__name__}: {e}. "
                    + (
                        "The hub is not reachable from here (or HF_HUB_OFFLINE is set), so only the local cache was "
                        "searched. "
                        if offline
                        else ""
                    )
                    + "If the hub is unreachable, download the files elsewhere and point `data_files` at the "
                    "local copies, or use a `generator` source."
                ) from e
        elif self.data_files:
            files = self.files()
            if not files:
                raise DatasetSourceError(
                    f"Dataset {self.name!r}: no files left from data_files={self.data_files!r} after "
                    f"exclude={self.exclude}; loosen the exclude patterns."
                )
            missing = [f for f in files if not Path(f).exists()]
            if missing:
                raise DatasetSourceError(f"Dataset {self.name!r}: data files not found: {missing[:5]}.")
            fmt = self.data_format or _FILE_FORMATS.get(Path(files[0]).suffix.lower())
            if fmt is None:
                raise DatasetSourceError(
                    f"Dataset {self.name!r}: cannot tell the format of {files[0]!r}; set data_format to one of "
                    f"{sorted(set(_FILE_FORMATS.values()))}."
                )
            ds = self._load_files(fmt, files, hf_cache_dir)
        else:
            rows = self.generator(**self.generator_kwargs)
            if isinstance(rows, datasets.Dataset):
                ds = rows
            elif isinstance(rows, (list, tuple)):
                ds = datasets.Dataset.from_list(list(rows))
            else:
                ds = datasets.Dataset.from_generator(
                    self.generator, gen_kwargs=self.generator_kwargs, cache_dir=hf_cache_dir
                )
        if not isinstance(ds, datasets.Dataset):
            raise DatasetSourceError(f"Dataset {self.name!r}: source gave {type(ds).__name__}, expected one split.")
        return ds

    def _load_files(self, fmt: str, files: list[str], hf_cache_dir: str | None) -> datasets.Dataset:
        """``datasets.load_dataset`` over local files, with one-line errors naming the file and line."""
        if all(Path(f).stat().st_size == 0 for f in files):
            what = f"data file {files[0]} is" if len(files) == 1 else f"all {len(files)} data files are"
            raise DatasetSourceError(f"Dataset {self.name!r}: {what} empty; give it at least one row.")
        try:
            kwargs = {**_FORMAT_DEFAULT_KWARGS.get(fmt, {}), **self.load_kwargs}
            return datasets.load_dataset(fmt, data_files=files, split="train", cache_dir=hf_cache_dir, **kwargs)
        except Exception as exc:  # datasets wraps parser errors differently per format and version
            where = _first_bad_json_line(files) if fmt == "json" else None
            if where is not None:
                raise DatasetSourceError(f"Dataset {self.name!r}: {where}; fix or remove that line.") from exc
            cause = exc.__cause__ or exc
            raise DatasetSourceError(
                f"Dataset {self.name!r}: could not read {', '.join(files)} as {fmt}: "
                f"{type(cause).__name__}: {str(cause).splitlines()[0] if str(cause) else ''}"
            ) from exc

    def _preprocess_rows(self, rows: list[dict[str, Any]], tokenizer: Any) -> list[dict[str, Any]]:
        """Apply the preprocess function to in-memory rows (same semantics as ``Dataset.map``).

        Generated rows skip the Arrow round trip of ``.map``, which dominates for nested columns.
        """
        fn, kwargs = self.preprocess_function, {"tokenizer": tokenizer, **self.preprocess_function_kwargs}
        if not self.preprocess_batched:
            return [{**row, **fn(row, **kwargs)} for row in rows]
        out: list[dict[str, Any]] = []
        for start in range(0, len(rows), 1000):
            chunk = rows[start : start + 1000]
            batch = {k: [row[k] for row in chunk] for k in chunk[0]} if chunk else {}
            result = fn(batch, **kwargs)
            out.extend({**row, **{k: v[i] for k, v in result.items()}} for i, row in enumerate(chunk))
        return out

    def build(self, tokenizer: Any = None, num_proc: int = 1, hf_cache_dir: str | None = None) -> datasets.Dataset:
        """Load the source, split, preprocess and select columns (no caching)."""
        preprocessed = False
        in_memory = not (self.preprocess_batched and self.columns_to_keep)  # row-count changes need .map
        if (
            self.generator is not None
            and self.preprocess_function is not None
            and not self.train_test_split
            and num_proc <= 1
            and in_memory
        ):
            rows = self.generator(**self.generator_kwargs)
            if isinstance(rows, (list, tuple)):
                ds = datasets.Dataset.from_list(self._preprocess_rows(list(rows), tokenizer))
                preprocessed = True
        if not preprocessed:
            ds = self._load_raw(hf_cache_dir)
        if self.train_test_split:
            tts = self.train_test_split
            try:
                parts = ds.train_test_split(
                    test_size=tts["test_size"], seed=tts.get("seed", 42), shuffle=tts.get("shuffle", True)
                )
            except ValueError as exc:
                raise DatasetSourceError(
                    f"Dataset {self.name!r}: cannot split {len(ds)} rows with train_test_split={tts}: {exc}"
                ) from None
            ds = parts[tts.get("take", "train")]
            if tts.get("take", "train") == "train":
                ds = _without_rows_of(ds, parts["test"], self.name)
        if self.preprocess_function is not None and not preprocessed:
            # dropping the unkept input columns inside .map lets a batched function change the row count
            dropped = [c for c in ds.column_names if c not in self.columns_to_keep] if self.columns_to_keep else None
            try:
                ds = ds.map(
                    self.preprocess_function,
                    fn_kwargs={"tokenizer": tokenizer, **self.preprocess_function_kwargs},
                    batched=self.preprocess_batched,
                    remove_columns=dropped,
                    num_proc=num_proc if num_proc > 1 else None,
                    desc=f"Preprocessing {self.name}",
                )
            except KeyError as exc:
                fn = getattr(self.preprocess_function, "__qualname__", "the preprocess function")
                raise DatasetSourceError(
                    f"Dataset {self.name!r}: its rows lack the field {exc.args[0]!r} that {fn} reads (they have "
                    f"{', '.join(ds.column_names)}); point the dataset at rows with that field or change preprocess_function."
                ) from None
        if self.columns_to_remove:
            ds = ds.remove_columns(self.columns_to_remove)
        if self.columns_to_keep:
            ds = ds.select_columns(self.columns_to_keep)
        return ds

    def prepare(
        self,
        cache_dir: str | os.PathLike,
        tokenizer: Any = None,
        num_proc: int = 1,
        rewrite_manual_cache: bool = False,
    ) -> Path | None:
        """Build and save the cache unless a valid one exists; returns its path (None if uncached)."""
        if not self.use_cache:
            return None
        path = self.cache_path(cache_dir, tokenizer)
        if path.exists() and not rewrite_manual_cache:
            verify_cache(path, self.name)
            logger.info("Dataset %s: using cache %s", self.name, path)
            return path
        logger.info("Dataset %s: building cache %s", self.name, path)
        ds = self.build(tokenizer, num_proc=num_proc, hf_cache_dir=str(Path(cache_dir) / "_hf"))
        tmp = path.with_name(path.name + f".tmp{os.getpid()}")
        if tmp.exists():
            shutil.rmtree(tmp)
        ds.save_to_disk(str(tmp))
        manifest = {**self.describe(), "num_rows": len(ds), "cache_files": _file_digests(tmp)}
        (tmp / _MANIFEST).write_text(json.dumps(manifest, indent=2, default=str))
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
        return path

    def describe(self) -> dict[str, Any]:
        """Human-readable summary written next to the cache."""
        return {
            "name": self.name,
            "source": self._source_spec(),
            "num_files": len(self.files()) or None,
            "train_test_split": self.train_test_split,
            "preprocess": _function_fingerprint(self.preprocess_function),
            "preprocess_kwargs": self.preprocess_function_kwargs,
            "columns_to_keep": self.columns_to_keep,
            "columns_to_remove": self.columns_to_remove,
        }

    # ----- serve -----------------------------------------------------------------------------
    def load(
        self,
        cache_dir: str | os.PathLike,
        tokenizer: Any = None,
        num_proc: int = 1,
        *,
        shuffle: bool = False,
        seed: int = 42,
        rank: int | None = None,
        world_size: int | None = None,
    ) -> datasets.Dataset | ProcessedDataset | datasets.IterableDataset | InfiniteIterableDataset:
        """The dataset to hand to a DataLoader.

        Map-style unless ``iterable``/``infinite``; iterable datasets are shuffled with a buffer (seeded,
        reshuffled by ``set_epoch``) and split between ranks with ``split_dataset_by_node``. A missing
        cache is built here only outside distributed runs (there ``prepare_data`` must run first).
        """
        if rank is None or world_size is None:
            rank, world_size = dist_rank_and_world_size()
        if self.use_cache:
            path = self.cache_path(cache_dir, tokenizer)
            if not path.exists():
                if world_size > 1:
                    raise DatasetSourceError(
                        f"Dataset {self.name!r}: cache {path} is missing on rank {rank}; run prepare_data "
                        "(xlm job_type=prepare_data ...) before training."
                    )
                self.prepare(cache_dir, tokenizer, num_proc)
            ds = load_verified_cache(path, self.name)
        else:
            ds = self.build(tokenizer, num_proc=num_proc, hf_cache_dir=str(Path(cache_dir) / "_hf"))
        if not self.iterable:
            if self.on_the_fly_processor is not None:
                return ProcessedDataset(ds, self.on_the_fly_processor, tokenizer, self.on_the_fly_processor_kwargs)
            return ds
        num_shards = min(self.num_shards, max(len(ds), 1))
        ids = ds.to_iterable_dataset(num_shards=num_shards)
        if shuffle:
            ids = ids.shuffle(seed=seed, buffer_size=self.shuffle_buffer_size)
        if world_size > 1:
            ids = split_dataset_by_node(ids, rank=rank, world_size=world_size)
        if self.on_the_fly_processor is not None:
            ids = ids.map(
                self.on_the_fly_processor,
                fn_kwargs={"tokenizer": tokenizer, **self.on_the_fly_processor_kwargs},
            )
        if self.infinite:
            return InfiniteIterableDataset(ids)
        return ids


def _first_bad_json_line(files: list[str]) -> str | None:
    """``"<file> line N is not valid JSON (...)"`` for the first malformed line of JSON-lines files, else None."""
    for name in files:
        with open(name, encoding="utf-8", errors="replace") as f:
            for number, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line.rstrip("\r\n"))
                except json.JSONDecodeError as exc:
                    return f"data file {name} line {number} is not valid JSON ({exc.msg} at character {exc.pos + 1})"
                if not isinstance(row, dict):
                    return f"data file {name} line {number} is a JSON {type(row).__name__}, not an object with fields"
    return None


def _row_digest(row: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(row, sort_keys=True, default=str, ensure_ascii=False).encode()).hexdigest()


def _without_rows_of(train: datasets.Dataset, held_out: datasets.Dataset, name: str) -> datasets.Dataset:
    """``train`` without the rows identical to a row of ``held_out`` (a document on both sides of a split
    would be validated on after training on it), with a warning that counts them."""
    seen = {
        _row_digest(row)
        for batch in held_out.iter(batch_size=1000)
        for row in (dict(zip(batch, values)) for values in zip(*batch.values()))
    }
    keep, dropped, index = [], 0, 0
    for batch in train.iter(batch_size=1000):
        for values in zip(*batch.values()):
            if _row_digest(dict(zip(batch, values))) in seen:
                dropped += 1
            else:
                keep.append(index)
            index += 1
    if not dropped:
        return train
    if not keep:
        raise DatasetSourceError(
            f"Dataset {name!r}: every training row of the split is identical to a held-out row, so "
            "none is left to train on; give it distinct documents"
        )
    logger.warning(
        "Dataset %s: %d training row(s) are identical to held-out rows and were left out of training, so "
        "no document is on both sides of the split",
        name,
        dropped,
    )
    return train.select(keep)


def _file_digests(directory: Path) -> dict[str, dict[str, Any]]:
    """``{file name: {bytes, sha256}}`` of the files a saved dataset consists of (the manifest excluded)."""
    out: dict[str, dict[str, Any]] = {}
    for path in sorted(p for p in directory.rglob("*") if p.is_file() and p.name != _MANIFEST):
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
        out[str(path.relative_to(directory))] = {"bytes": path.stat().st_size, "sha256": digest.hexdigest()}
    return out


_VERIFIED: dict[str, tuple[tuple[str, int, int], ...]] = {}  # cache dir -> (name, size, mtime) it was verified at


def _damaged(path: Path, name: str, why: str) -> DatasetSourceError:
    return DatasetSourceError(
        f"Dataset {name!r}: cache {path} is damaged ({why}); delete that directory (rm -r "
        f"{path}) and rerun: it is rebuilt from the source"
    )


def verify_cache(path: Path, name: str) -> dict[str, Any]:
    """The cache's manifest, after checking that every file it lists is there with its size and sha256
    (:class:`DatasetSourceError` naming the directory to delete otherwise). Checked once per process."""
    manifest_path = path / _MANIFEST
    try:
        manifest = json.loads(manifest_path.read_text())
        listed = manifest["cache_files"]
        int(manifest["num_rows"])
    except (OSError, ValueError, KeyError, TypeError):
        raise _damaged(path, name, f"no readable {_MANIFEST} with the row count and file hashes") from None
    state = tuple(
        sorted(
            (str(p.relative_to(path)), p.stat().st_size, p.stat().st_mtime_ns) for p in path.rglob("*") if p.is_file()
        )
    )
    if _VERIFIED.get(str(path)) == state:
        return manifest
    actual = _file_digests(path)  # files beyond the listed ones do not change the rows and are ignored
    for file, expected in listed.items():
        found = actual.get(file)
        if found is None:
            raise _damaged(path, name, f"{file} is missing")
        if found != expected:
            raise _damaged(
                path,
                name,
                f"{file} has {found['bytes']:,} bytes and sha256 {found['sha256'][:12]}..., the "
                f"manifest says {expected['bytes']:,} bytes and {expected['sha256'][:12]}...",
            )
    _VERIFIED[str(path)] = state
    return manifest


def load_verified_cache(path: Path, name: str) -> datasets.Dataset:
    """``datasets.load_from_disk(path)`` after :func:`verify_cache`, with the manifest's row count checked."""
    manifest = verify_cache(path, name)
    try:
        ds = datasets.load_from_disk(str(path))
    except Exception as exc:  # a damaged Arrow file fails inside pyarrow with many exception types
        raise _damaged(path, name, f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from exc
    if len(ds) != int(manifest["num_rows"]):
        raise _damaged(path, name, f"{len(ds):,} rows, the manifest says {int(manifest['num_rows']):,}")
    return ds
