"""From generated reasoning to a label: pattern extraction, label-word mapping, voting.

An answer that maps to no label is an *abstention*: recorded and counted, never guessed.
"""
from __future__ import annotations

import re
import string
from collections import Counter
from dataclasses import dataclass
from typing import Sequence

from ..prompt.verbalizer import Verbalizer

_EDGES = string.punctuation + "“”‘’«»" + string.whitespace


def normalise(text: str) -> str:
    """Case- and whitespace-insensitive form: lower case, single spaces, no punctuation at the ends."""
    return " ".join(text.lower().split()).strip(_EDGES)


class AnswerMap:
    """Maps an extracted answer to a label through the verbalizer's words."""

    def __init__(self, verbalizer: Verbalizer):
        self.labels = verbalizer.labels
        self.by_word = {normalise(w): verbalizer.labels[k] for w, k in zip(verbalizer.words, verbalizer.word_label)}

    def label(self, answer: str | None) -> str | None:
        return None if answer is None else self.by_word.get(normalise(answer))


def extract(text: str, pattern: re.Pattern) -> str | None:
    """The last match in the text (group 1 when the pattern has a group): the final answer.

    A nested answer is read through: when the captured text itself starts another match of the
    pattern (`The answer is "The answer is great."` captures `The`), that inner match is the answer,
    repeatedly, so quoting the answer sentence never yields its first word.
    """
    matches = list(pattern.finditer(text))
    if not matches:
        return None
    group = 1 if pattern.groups else 0
    last = matches[-1]
    while last.start(group) >= 0:  # -1: an optional group that did not take part
        inner = pattern.match(text, last.start(group))
        if inner is None or inner.span() == last.span():
            break
        last = inner
    return last.group(group)


TIE_RULE = "first tied label in verbalizer order"


@dataclass(frozen=True)
class Vote:
    pred: str | None  # None: every path abstained
    shares: dict[str, float]  # vote share among the paths that answered
    agreement: float  # votes for the winner / all paths
    tie: bool = False  # two or more labels had the most votes; `pred` is the one TIE_RULE picked


def vote(answers: Sequence[str | None], labels: Sequence[str]) -> Vote:
    """Majority vote; a tie goes to the tied label that comes first in the verbalizer (and is flagged)."""
    counts = Counter(a for a in answers if a is not None)
    answered = sum(counts.values())
    if not answered:
        return Vote(None, {label: 0.0 for label in labels}, 0.0)
    top = max(counts.values())
    tied = [label for label in labels if counts.get(label, 0) == top]
    return Vote(tied[0], {label: counts.get(label, 0) / answered for label in labels}, top / len(answers),
                tie=len(tied) > 1)
