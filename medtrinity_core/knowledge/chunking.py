"""Passages cut by the embedder's own tokenizer: sentence-aligned chunks of at most `max_tokens` tokens,
each starting with the last sentences (up to `overlap_tokens`) of the chunk before it, so a statement that
spans a boundary is whole in one of them. A sentence longer than the limit is cut at word boundaries."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def clean(text: str) -> str:
    return re.sub(r"\s+", " ", text or "").strip()


def sentences(text: str) -> list[str]:
    return [s for s in SENTENCE_END.split(clean(text)) if s]


@dataclass(frozen=True)
class Chunker:
    """`count` returns the token count of each of a list of texts (no special tokens)."""

    count: Callable[[list[str]], list[int]]
    max_tokens: int
    overlap_tokens: int

    def __post_init__(self):
        if self.max_tokens < 8:
            raise ValueError(f"max_tokens must be at least 8, not {self.max_tokens}")
        if not 0 <= self.overlap_tokens < self.max_tokens // 2:
            raise ValueError(f"overlap_tokens must be from 0 to under half of max_tokens ({self.max_tokens // 2}), not {self.overlap_tokens}")

    def _pieces(self, sentence: str, tokens: int) -> list[tuple[str, int]]:
        """A sentence over the limit, cut at word boundaries into pieces within it."""
        if tokens <= self.max_tokens:
            return [(sentence, tokens)]
        words = sentence.split()
        counts = self.count(words)
        pieces, current, size = [], [], 0
        for word, n in zip(words, counts):
            if current and size + n > self.max_tokens:
                pieces.append((" ".join(current), size))
                current, size = [], 0
            current.append(word)
            size += n
        if current:
            pieces.append((" ".join(current), size))
        return pieces

    def __call__(self, text: str) -> list[str]:
        parts = sentences(text)
        if not parts:
            return []
        units = [piece for s, n in zip(parts, self.count(parts)) for piece in self._pieces(s, n)]
        chunks: list[list[tuple[str, int]]] = []
        current: list[tuple[str, int]] = []
        fresh = 0  # units in `current` not carried over from the chunk before
        for unit in units:
            if fresh and sum(n for _, n in current) + unit[1] > self.max_tokens:
                chunks.append(current)
                current = self._overlap(current)
                while current and sum(n for _, n in current) + unit[1] > self.max_tokens:
                    current = current[1:]
                fresh = 0
            current.append(unit)
            fresh += 1
        chunks.append(current)
        return [" ".join(s for s, _ in chunk) for chunk in chunks]

    def _overlap(self, chunk: list[tuple[str, int]]) -> list[tuple[str, int]]:
        """The chunk's last whole sentences totalling at most `overlap_tokens` (never the whole chunk)."""
        kept, size = [], 0
        for unit in reversed(chunk[1:]):
            if size + unit[1] > self.overlap_tokens:
                break
            kept.insert(0, unit)
            size += unit[1]
        return kept

