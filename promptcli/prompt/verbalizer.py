"""Label words → token ids for one tokenizer.

Checks that would otherwise give silent zeros run when the verbalizer meets the
tokenizer: a word that tokenises to nothing, or two labels whose words are the same
tokens, is an error naming the labels and words.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import SpecError
from ..spec.loading import VerbalizerFile
from .tokens import Segmenter


@dataclass(frozen=True)
class WordTable:
    """Every label word (flattened, label order) as tokens in one slot context."""

    ids: tuple[tuple[int, ...], ...]
    chars: tuple[int, ...]  # characters of the word with its leading whitespace, for normalize: chars

    @property
    def longest(self) -> int:
        return max(len(i) for i in self.ids)


class Verbalizer:
    def __init__(self, source: VerbalizerFile):
        spec = source.spec
        self.source = source
        self.labels: list[str] = list(spec.labels)
        self.words: list[str] = [w for label in self.labels for w in spec.labels[label]]
        self.word_label: list[int] = [i for i, label in enumerate(self.labels) for _ in spec.labels[label]]
        self.aggregate = spec.aggregate
        self.multi_token = spec.multi_token
        self._tables: dict[tuple[str, str], WordTable] = {}

    def table(self, segmenter: Segmenter, anchor: str, lead: str) -> WordTable:
        """Token ids of the words after `anchor` + `lead` whitespace; checked once per context."""
        key = (anchor, lead)
        if key not in self._tables:
            ids = tuple(segmenter.encode_after(anchor, lead + w) for w in self.words)
            self._check(ids)
            self._tables[key] = WordTable(ids=ids, chars=tuple(len(lead + w) for w in self.words))
        return self._tables[key]

    def _check(self, ids: tuple[tuple[int, ...], ...]) -> None:
        path = str(self.source.path) if self.source.path else None
        seen: dict[tuple[int, ...], int] = {}
        for w, tokens in enumerate(ids):
            label = self.labels[self.word_label[w]]
            if not tokens:
                raise SpecError(f"label word '{self.words[w]}' tokenises to nothing with this tokenizer",
                                path=path, field=f"labels.{label}")
            if tokens in seen and self.word_label[seen[tokens]] != self.word_label[w]:
                other = seen[tokens]
                raise SpecError(
                    f"labels '{self.labels[self.word_label[other]]}' and '{label}' cannot be told apart: "
                    f"'{self.words[other]}' and '{self.words[w]}' are the same tokens {list(tokens)}",
                    path=path, field="labels", hint="use label words that differ for this tokenizer")
            seen[tokens] = w

    def describe(self) -> str:
        """`Sci/Tech: "science" | "technology"`: words quoted, so a word holding "/" or "," reads as one word."""
        return ", ".join(f"{label}: " + " | ".join(f'"{w}"' for w, i in zip(self.words, self.word_label) if i == k)
                         for k, label in enumerate(self.labels))

