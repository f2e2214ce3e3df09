"""Tokenising text pieces exactly as they would be tokenised inside the full text.

The prompt is tokenised in segments (before the slot, the label word, after the slot) so
that every label's tokens are the same in every example. A segment that follows other
text is tokenised behind an *anchor* (the character before it) and the anchor's tokens
are removed: this gives BPE its leading-space token (`Ġgreat`) and keeps SentencePiece
from adding a start-of-word marker that the full text would not have.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Any, Sequence


class Segmenter:
    def __init__(self, tokenizer: Any):
        self.tokenizer = tokenizer
        plain = self.encode("a")
        full = tokenizer("a")["input_ids"]
        start = _find(full, plain)
        # Special tokens the tokenizer wraps a text in ([CLS] … [SEP], <s> … </s>, BOS …)
        self.opening: tuple[int, ...] = tuple(full[:start]) if start >= 0 else ()
        self.closing: tuple[int, ...] = tuple(full[start + len(plain):]) if start >= 0 else ()
        self._after = lru_cache(maxsize=4096)(self._encode_after)

    def encode(self, text: str) -> list[int]:
        """Tokens of `text` at the start of a text, without special tokens."""
        if not text:
            return []
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def encode_after(self, anchor: str, text: str) -> tuple[int, ...]:
        """Tokens of `text` when it follows `anchor` (one character of real left context)."""
        return self._after(anchor, text)

    def _encode_after(self, anchor: str, text: str) -> tuple[int, ...]:
        if not text:
            return ()
        if not anchor:
            return tuple(self.encode(text))
        head = self.encode(anchor)
        both = self.encode(anchor + text)
        if both[:len(head)] == head:
            return tuple(both[len(head):])
        return tuple(self.encode(text))  # the anchor merged with the text: tokenise it alone

    def cut(self, text: str, keep: int) -> str:
        """The longest start of `text` that holds at most `keep` tokens, cut at a character boundary."""
        if keep <= 0:
            return ""
        if getattr(self.tokenizer, "is_fast", False):
            enc = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
            offsets = enc["offset_mapping"]
            if len(offsets) <= keep:
                return text
            return text[:offsets[keep - 1][1]].rstrip()
        ids = self.encode(text)
        return text if len(ids) <= keep else self.tokenizer.decode(ids[:keep]).rstrip()


def _find(haystack: Sequence[int], needle: Sequence[int]) -> int:
    for i in range(len(haystack) - len(needle) + 1):
        if list(haystack[i:i + len(needle)]) == list(needle):
            return i
    return -1
