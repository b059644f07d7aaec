"""Language tokens: a tokenizer (open_clip's offline CLIP BPE by default, or a user-supplied Gemma one)
and the token embedding of the understanding expert.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn

from f1.errors import ConfigError, InputError
from f1.model.config import LanguageConfig

__all__ = [
    "GemmaTokenizer",
    "LanguageEmbedding",
    "OpenClipTokenizer",
    "TextTokenizer",
    "TokenizedText",
    "TrimmedTokenizer",
    "build_tokenizer",
    "trim_vocabulary",
]


class TokenizedText(tuple):
    """``(ids, lengths)``: ``ids`` ``(B, L)`` long right-padded with 0, ``lengths`` ``(B,)`` valid tokens."""

    def __new__(cls, ids: torch.Tensor, lengths: torch.Tensor) -> TokenizedText:
        return super().__new__(cls, (ids, lengths))

    @property
    def ids(self) -> torch.Tensor:
        return self[0]

    @property
    def lengths(self) -> torch.Tensor:
        return self[1]


@runtime_checkable
class TextTokenizer(Protocol):
    """Anything that turns instructions into right-padded ids of a fixed length."""

    vocab_size: int

    def __call__(self, texts: Sequence[str]) -> TokenizedText: ...


def _check_texts(texts: object) -> list[str]:
    if isinstance(texts, str):
        return [texts]
    if not isinstance(texts, Sequence) or not all(isinstance(t, str) for t in texts):
        raise InputError(f"task: expected a str or a list of str, received {type(texts).__name__}")
    return list(texts)


class OpenClipTokenizer:
    """open_clip's CLIP BPE tokenizer (works offline): ``<start> text <end>``, padded with 0.

    Args:
        max_length: tokens per text (longer texts are truncated, keeping the end token).
        model_name: open_clip tokenizer name.
    """

    def __init__(self, max_length: int, model_name: str = "ViT-B-32") -> None:
        import open_clip

        self._tokenizer = open_clip.get_tokenizer(model_name)
        self.max_length = max_length
        self.vocab_size = int(getattr(self._tokenizer, "vocab_size", 49408))

    def __call__(self, texts: Sequence[str]) -> TokenizedText:
        texts = _check_texts(texts)
        ids = self._tokenizer(texts, context_length=self.max_length).long()
        return TokenizedText(ids, (ids != 0).sum(dim=1))


class GemmaTokenizer:
    """A user-supplied Gemma/PaliGemma tokenizer (pi0's convention: ``<bos> text\\n``), padded with 0.

    Args:
        max_length: tokens per text.
        tokenizer: a callable ``encode(text) -> list[int]`` or an object with ``encode`` (sentencepiece,
            or ``transformers.AutoTokenizer.from_pretrained(path, local_files_only=True)``).
        bos_id: id prepended to every text (Gemma: 2).
        vocab_size: vocabulary of the embedding (pi0/F1: 257152).
    """

    def __init__(self, max_length: int, tokenizer: Any, bos_id: int = 2, vocab_size: int = 257152) -> None:
        if tokenizer is None:
            raise ConfigError(
                "tokenizer: language.tokenizer='gemma' needs a tokenizer object passed to the policy, e.g. "
                "F1Policy(config, tokenizer=AutoTokenizer.from_pretrained(path, local_files_only=True)); "
                "received None (nothing is downloaded)"
            )
        encode = getattr(tokenizer, "encode", tokenizer)
        if not callable(encode):
            raise ConfigError(
                f"tokenizer: expected a callable or an object with encode(), received {tokenizer!r}"
            )
        self._encode: Callable[..., list[int]] = encode
        self.max_length = max_length
        self.bos_id = bos_id
        self.vocab_size = vocab_size

    def _ids(self, text: str) -> list[int]:
        try:
            ids = self._encode(text.strip() + "\n", add_special_tokens=False)
        except TypeError:
            ids = self._encode(text.strip() + "\n")
        return [self.bos_id, *[int(i) for i in ids]][: self.max_length]

    def __call__(self, texts: Sequence[str]) -> TokenizedText:
        rows = [self._ids(t) for t in _check_texts(texts)]
        ids = torch.zeros(len(rows), self.max_length, dtype=torch.long)
        for i, row in enumerate(rows):
            ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        return TokenizedText(ids, torch.tensor([len(r) for r in rows], dtype=torch.long))


class TrimmedTokenizer:
    """A tokenizer whose ids are mapped onto a trimmed vocabulary (``language.kept_ids``).

    Padding (id 0) stays 0, ``kept_ids[i]`` becomes ``i + 1``, and every other id becomes
    ``len(kept_ids) + 1`` (one shared unknown row); lengths are unchanged. ``vocab_size`` is
    ``len(kept_ids) + 2``.

    Args:
        inner: the full tokenizer.
        kept_ids: ids of ``inner`` that keep their own row (positive, distinct, below ``inner.vocab_size``).
    """

    def __init__(self, inner: TextTokenizer, kept_ids: Sequence[int]) -> None:
        kept = [int(i) for i in kept_ids]
        too_large = [i for i in kept if i >= inner.vocab_size]
        if too_large:
            raise ConfigError(
                f"language.kept_ids: expected ids below the tokenizer's {inner.vocab_size}, "
                f"received {too_large}"
            )
        self.inner = inner
        self.kept_ids = tuple(kept)
        self.vocab_size = len(kept) + 2
        table = torch.full((inner.vocab_size,), len(kept) + 1, dtype=torch.long)
        table[0] = 0
        table[torch.tensor(kept, dtype=torch.long)] = torch.arange(1, len(kept) + 1)
        self._table = table

    def __call__(self, texts: Sequence[str]) -> TokenizedText:
        ids, lengths = self.inner(texts)
        return TokenizedText(self._table[ids], lengths)


def trim_vocabulary(language: LanguageConfig, texts: Sequence[str], tokenizer: Any = None) -> LanguageConfig:
    """``language`` with a vocabulary trimmed to the ids that ``texts`` use (``kept_ids``, ``vocab_size``).

    For a task family with a closed set of instructions: the embedding then holds a few rows instead of the
    tokenizer's whole vocabulary (49,408 for CLIP), which makes checkpoints small and steps cheaper. Ids
    outside the set share one unknown row, so an instruction with a new word still runs.

    Args:
        language: the untrimmed settings (``kept_ids`` None).
        texts: every instruction the policy should tell apart.
        tokenizer: as for :func:`build_tokenizer` (a Gemma tokenizer object, or None for open_clip's).

    Raises ``ConfigError`` for an already trimmed ``language`` or no texts.
    """
    if language.kept_ids is not None:
        raise ConfigError("language: already trimmed (kept_ids is set); trim the untrimmed settings")
    texts = _check_texts(texts)
    if not texts:
        raise ConfigError("texts: expected at least one instruction, received none")
    ids, _ = build_tokenizer(language, tokenizer)(texts)
    kept = sorted({int(i) for i in ids.flatten().tolist()} - {0})
    return dataclasses.replace(language, kept_ids=tuple(kept), vocab_size=len(kept) + 2)


def build_tokenizer(config: LanguageConfig, tokenizer: Any = None) -> TextTokenizer:
    """The tokenizer named by ``config`` (``tokenizer`` overrides: an object passed through or wrapped),
    mapped onto the trimmed vocabulary when ``config.kept_ids`` is set."""
    if isinstance(tokenizer, TextTokenizer):
        result: TextTokenizer = tokenizer
    elif config.tokenizer == "open_clip" and tokenizer is None:
        result = OpenClipTokenizer(config.max_length, config.open_clip_model)
    else:
        if config.kept_ids is None:
            result = GemmaTokenizer(config.max_length, tokenizer, vocab_size=config.vocab_size)
        else:  # trimmed: the full Gemma vocabulary underneath
            result = GemmaTokenizer(config.max_length, tokenizer)
    if config.kept_ids is not None and not isinstance(result, TrimmedTokenizer):
        result = TrimmedTokenizer(result, config.kept_ids)
    if result.vocab_size > config.vocab_size:
        raise ConfigError(
            f"language.vocab_size: the tokenizer has {result.vocab_size} ids, the embedding only "
            f"{config.vocab_size} rows"
        )
    return result


class LanguageEmbedding(nn.Module):
    """Token embedding scaled by ``sqrt(width)`` (Gemma's convention; PaliGemma's ``embed_tokens``)."""

    def __init__(self, vocab_size: int, width: int) -> None:
        super().__init__()
        self.embed_tokens = nn.Embedding(vocab_size, width)
        self.scale = math.sqrt(width)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """``(B, L)`` long ids -> ``(B, L, width)``."""
        if ids.dtype != torch.long or ids.ndim != 2:
            raise InputError(f"ids: expected (B, L) int64 token ids, received {tuple(ids.shape)} {ids.dtype}")
        if (
            ids.numel()
            and not ids.is_meta
            and (int(ids.min()) < 0 or int(ids.max()) >= self.embed_tokens.num_embeddings)
        ):
            raise InputError(
                f"ids: expected token ids in [0, {self.embed_tokens.num_embeddings}), "
                f"received [{int(ids.min())}, {int(ids.max())}]"
            )
        return self.embed_tokens(ids) * self.scale
