"""Train a byte-level BPE tokenizer on a corpus (Hugging Face ``tokenizers``), cached on disk.

Hydra use (the corpus is a DatasetManager config; only its source and split are read, so the
tokenizer sees the training documents and never the validation ones)::

    tokenizer:
      _target_: xlm_core.data.bpe_tokenizer.load_bpe_tokenizer
      corpus: ${datamodule.dataloaders.train.lm.dataset}
      vocab_size: 8192
      cache_dir: ${paths.cache_dir}/tokenizers

The result is a ``transformers`` fast tokenizer with the special tokens the rest of xlm expects
(pad, bos, eos, unk, mask at ids 0..4). It is saved with ``save_pretrained`` under
``<cache_dir>/bpe_<vocab_size>_<key>`` where ``key`` hashes the corpus source and split, the
training settings and this module's format version, so a changed corpus trains a new tokenizer
and an unchanged one loads in milliseconds. Byte-level means every string encodes (no unknown
tokens) and decoding gives the text back exactly.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from datasets.fingerprint import Hasher
from transformers import PreTrainedTokenizerBase, PreTrainedTokenizerFast

from xlm_core.config.tools import to_plain
from xlm_core.data.dataset_manager import DatasetManager, debug_overfit_enabled

__all__ = ["BPE_SPECIAL_TOKENS", "BPE_FORMAT_VERSION", "load_bpe_tokenizer", "train_bpe_tokenizer", "bpe_cache_path"]

logger = logging.getLogger(__name__)

BPE_FORMAT_VERSION = 1
# (tokenizer attribute, token) in id order.
BPE_SPECIAL_TOKENS: tuple[tuple[str, str], ...] = (
    ("pad_token", "<|pad|>"),
    ("bos_token", "<|bos|>"),
    ("eos_token", "<|eos|>"),
    ("unk_token", "<|unk|>"),
    ("mask_token", "<|mask|>"),
)
# The DatasetManager keys that decide which documents the tokenizer is trained on.
_CORPUS_KEYS = (
    "name",
    "full_name",
    "data_files",
    "data_format",
    "exclude",
    "follow_symlinks",
    "load_kwargs",
    "generator",
    "generator_kwargs",
    "train_test_split",
    "debug",
)


def _corpus_manager(corpus: Mapping[str, Any]) -> DatasetManager:
    """The corpus's source and split, without preprocessing (raw documents)."""
    cfg = {k: v for k, v in dict(to_plain(corpus)).items() if k in _CORPUS_KEYS}
    if isinstance(cfg.get("debug"), Mapping):
        cfg["debug"] = {k: v for k, v in cfg["debug"].items() if k in _CORPUS_KEYS}
    return DatasetManager.from_config(cfg, use_debug=debug_overfit_enabled())


def bpe_cache_path(
    corpus: Mapping[str, Any], vocab_size: int, min_frequency: int, text_field: str, cache_dir: str | os.PathLike[str]
) -> Path:
    """Where the tokenizer trained with these settings is (or will be) saved."""
    manager = _corpus_manager(corpus)
    key = Hasher.hash(
        {
            "version": BPE_FORMAT_VERSION,
            "corpus": manager.cache_key(None),
            "vocab_size": int(vocab_size),
            "min_frequency": int(min_frequency),
            "text_field": text_field,
            "special_tokens": BPE_SPECIAL_TOKENS,
        }
    )
    return Path(cache_dir) / f"bpe_{int(vocab_size)}_{key[:16]}"


def _texts(dataset: Any, text_field: str, batch_size: int = 256) -> Iterator[list[str]]:
    if text_field not in dataset.column_names:
        raise KeyError(
            f"The tokenizer corpus has no {text_field!r} column (columns: {dataset.column_names}); set "
            "tokenizer.text_field to the column that holds the text."
        )
    for start in range(0, len(dataset), batch_size):
        yield [t for t in dataset[start : start + batch_size][text_field] if isinstance(t, str)]


def train_bpe_tokenizer(
    texts: Iterator[list[str]] | list[str], vocab_size: int, min_frequency: int = 2, length: int | None = None
) -> PreTrainedTokenizerFast:
    """A byte-level BPE fast tokenizer trained on ``texts`` (strings, or batches of strings)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    specials = [token for _, token in BPE_SPECIAL_TOKENS]
    if vocab_size < 256 + len(specials):
        raise ValueError(
            f"vocab_size={vocab_size} is too small for byte-level BPE; use at least "
            f"{256 + len(specials)} (256 bytes + {len(specials)} special tokens)."
        )
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=int(vocab_size),
        min_frequency=int(min_frequency),
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(texts, trainer, length=length)
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, clean_up_tokenization_spaces=False, **dict(BPE_SPECIAL_TOKENS)
    )


def load_bpe_tokenizer(
    corpus: Mapping[str, Any],
    vocab_size: int = 8192,
    min_frequency: int = 2,
    text_field: str = "text",
    cache_dir: str | os.PathLike[str] = ".xlm_cache/tokenizers",
    retrain: bool = False,
) -> PreTrainedTokenizerBase:
    """The byte-level BPE tokenizer of ``corpus``: loaded from the cache, else trained and cached."""
    path = bpe_cache_path(corpus, vocab_size, min_frequency, text_field, cache_dir)
    if (path / "tokenizer.json").is_file() and not retrain:
        logger.info("BPE tokenizer: using cache %s", path)
        tokenizer = PreTrainedTokenizerFast.from_pretrained(str(path))
    else:
        manager = _corpus_manager(corpus)
        logger.info("BPE tokenizer: training vocab_size=%d on %s -> %s", vocab_size, manager.name, path)
        documents = manager.build(hf_cache_dir=str(Path(cache_dir) / "_hf"))
        tokenizer = train_bpe_tokenizer(_texts(documents, text_field), vocab_size, min_frequency, length=len(documents))
        tmp = path.with_name(path.name + f".tmp{os.getpid()}")
        if tmp.exists():
            shutil.rmtree(tmp)
        tokenizer.save_pretrained(str(tmp))
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    tokenizer.full_vocab_size = len(tokenizer)
    return tokenizer
