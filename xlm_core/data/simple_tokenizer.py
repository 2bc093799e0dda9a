"""A whitespace tokenizer over a fixed word list, as a real Hugging Face ``PreTrainedTokenizer``.

Used for synthetic tasks (star graphs, numbers) and for tests: every word of the vocabulary is
one token, so ids are predictable (``for_numbers(n)`` maps the word ``"k"`` to id ``k + 7``).

Decisions (the ids are fixed; docs/arlm.md, "Tokenizer"):
- ids 0..6 are ``[PAD] [CLS] [MASK] [EOS] [BOS] [SEP] [UNK]``; the vocabulary starts at id 7;
- ``encode`` never adds BOS/EOS/CLS/SEP (collators place special tokens themselves), even with
  the Hugging Face default ``add_special_tokens=True``;
- a word that is not in the vocabulary becomes ``[UNK]`` (id 6), as in every HF word-level
  tokenizer; check ``unk_token_id in ids`` where unknown words must not occur. Decoding an id
  outside the vocabulary is an error that names the id.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

from transformers import PreTrainedTokenizer

__all__ = ["SimpleSpaceTokenizer", "SPECIAL_TOKENS"]

# (attribute name, token) in id order: the position in this tuple is the token's id.
SPECIAL_TOKENS: tuple[tuple[str, str], ...] = (
    ("pad_token", "[PAD]"),
    ("cls_token", "[CLS]"),
    ("mask_token", "[MASK]"),
    ("eos_token", "[EOS]"),
    ("bos_token", "[BOS]"),
    ("sep_token", "[SEP]"),
    ("unk_token", "[UNK]"),
)
_NUM_SPECIAL = len(SPECIAL_TOKENS)
VOCAB_FILE = "vocab.json"


class SimpleSpaceTokenizer(PreTrainedTokenizer):
    """Splits text on whitespace and maps each word to its id; special tokens take ids 0..6."""

    vocab_files_names = {"vocab_file": VOCAB_FILE}
    model_input_names = ["input_ids", "attention_mask"]

    def __init__(
        self,
        vocab: Sequence[str] | None = None,
        vocab_file: str | None = None,
        **kwargs: Any,
    ) -> None:
        if (vocab is None) == (vocab_file is None):
            raise ValueError(
                "SimpleSpaceTokenizer needs exactly one of vocab=[...] (the words, without special "
                f"tokens) or vocab_file=<{VOCAB_FILE} written by save_pretrained>; "
                f"got vocab={'set' if vocab is not None else None}, vocab_file={vocab_file!r}."
            )
        words = list(vocab) if vocab is not None else _read_vocab_file(vocab_file)
        _validate_words(words)
        self._id_to_token: list[str] = [tok for _, tok in SPECIAL_TOKENS] + words
        self._token_to_id: dict[str, int] = {tok: i for i, tok in enumerate(self._id_to_token)}
        for attr, token in SPECIAL_TOKENS:
            given = kwargs.pop(attr, token)
            if str(given) != token:
                raise ValueError(
                    f"SimpleSpaceTokenizer has fixed special tokens; got {attr}={str(given)!r}, "
                    f"expected {token!r}. Remove {attr} from the tokenizer arguments."
                )
            kwargs[attr] = token
        kwargs.setdefault("clean_up_tokenization_spaces", False)
        super().__init__(**kwargs)

    @classmethod
    def for_numbers(cls, n: int, **kwargs: Any) -> SimpleSpaceTokenizer:
        """Tokenizer whose vocabulary is the words ``"0" .. str(n-1)`` (word ``k`` has id ``k + 7``)."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"SimpleSpaceTokenizer.for_numbers needs a positive int n; got n={n!r}.")
        return cls(vocab=[str(i) for i in range(n)], **kwargs)

    @property
    def vocab_size(self) -> int:
        """Size of the base vocabulary: the 7 special tokens plus the words."""
        return len(self._id_to_token)

    @property
    def full_vocab_size(self) -> int:
        """Number of ids the model must embed: base vocabulary plus tokens added later."""
        return len(self)

    @property
    def words(self) -> list[str]:
        """The vocabulary without the special tokens, in id order (id = index + 7)."""
        return self._id_to_token[_NUM_SPECIAL:]

    def get_vocab(self) -> dict[str, int]:
        vocab = dict(self._token_to_id)
        vocab.update(self._added_tokens_encoder)
        return vocab

    def _tokenize(self, text: str, **kwargs: Any) -> list[str]:
        return text.split()

    def _convert_token_to_id(self, token: str) -> int:
        return self._token_to_id.get(token, self._token_to_id["[UNK]"])

    def _convert_id_to_token(self, index: int) -> str:
        if not 0 <= index < len(self._id_to_token):
            raise ValueError(
                f"Token id {index} is outside the vocabulary of this SimpleSpaceTokenizer "
                f"(ids 0..{len(self) - 1}); the ids were produced for a different tokenizer or model size."
            )
        return self._id_to_token[index]

    def convert_tokens_to_string(self, tokens: list[str]) -> str:
        return " ".join(tokens)

    def save_vocabulary(self, save_directory: str, filename_prefix: str | None = None) -> tuple[str, ...]:
        """Write ``vocab.json`` (token -> id, special tokens included) for ``from_pretrained``."""
        if not os.path.isdir(save_directory):
            raise NotADirectoryError(f"save_vocabulary needs an existing directory; got {save_directory!r}.")
        path = os.path.join(save_directory, (f"{filename_prefix}-" if filename_prefix else "") + VOCAB_FILE)
        with open(path, "w", encoding="utf-8") as f:
            json.dump(self._token_to_id, f, indent=1, ensure_ascii=False)
            f.write("\n")
        return (path,)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(vocab_size={self.vocab_size}, full_vocab_size={self.full_vocab_size})"


def _validate_words(words: list[str]) -> None:
    """Words must be unique, non-empty, whitespace-free strings distinct from the special tokens."""
    specials = {tok for _, tok in SPECIAL_TOKENS}
    seen: set[str] = set()
    for i, word in enumerate(words):
        if not isinstance(word, str) or not word or len(word.split()) != 1 or word != word.strip():
            raise ValueError(
                f"SimpleSpaceTokenizer vocabulary entry {i} is {word!r}: every word must be a "
                "non-empty string without whitespace."
            )
        if word in specials:
            raise ValueError(
                f"SimpleSpaceTokenizer vocabulary entry {i} is the special token {word!r}; special "
                "tokens are added automatically at ids 0..6, leave them out of vocab."
            )
        if word in seen:
            raise ValueError(f"SimpleSpaceTokenizer vocabulary has the word {word!r} twice (entry {i}).")
        seen.add(word)


def _read_vocab_file(vocab_file: str | None) -> list[str]:
    """Read the words (ids >= 7) from a ``vocab.json`` written by :meth:`save_vocabulary`."""
    assert vocab_file is not None
    with open(vocab_file, encoding="utf-8") as f:
        mapping = json.load(f)
    if not isinstance(mapping, dict):
        raise ValueError(f"{vocab_file} must hold a JSON object token -> id; got {type(mapping).__name__}.")
    by_id = sorted(mapping.items(), key=lambda kv: kv[1])
    ids = [i for _, i in by_id]
    if ids != list(range(len(ids))):
        raise ValueError(f"{vocab_file}: ids must be exactly 0..{len(ids) - 1} without gaps or repeats.")
    expected = [tok for _, tok in SPECIAL_TOKENS]
    if [tok for tok, _ in by_id[:_NUM_SPECIAL]] != expected:
        raise ValueError(
            f"{vocab_file}: ids 0..6 must be {expected}; got {[tok for tok, _ in by_id[:_NUM_SPECIAL]]}. "
            "The file was not written by SimpleSpaceTokenizer.save_pretrained."
        )
    return [tok for tok, _ in by_id[_NUM_SPECIAL:]]
