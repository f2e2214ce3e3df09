"""The one scoring interface, and the registry new model families plug into.

A scorer receives a batch of `Encoded` examples and returns a (B, W) float32 tensor:
the log-score of every label word in every example (W = all words of all labels, in
verbalizer order). Tokenisation and whitespace are already fixed by `encode.py`: the
context holds the text before the slot, each word carries its leading whitespace, and
the suffix is the text after the slot. Scorers count their work so tests can check cost
without timing anything: `calls` (batched model invocations), `sequences` (rows fed to
the model: the forward passes an example costs) and `positions` (real, non-padding
token positions processed).
"""
from __future__ import annotations

from typing import Callable, Protocol, Sequence

import torch

from ..models.weights import LoadedModel
from ..prompt.encode import Encoded
from ..spec.runconfig import ScoringConfig


class Scorer(Protocol):
    calls: int
    sequences: int
    positions: int
    prefills: int  # prompt encodings (a generated token or a continuation is not one)

    def word_scores(self, batch: Sequence[Encoded]) -> torch.Tensor: ...


SCORERS: dict[str, Callable[[LoadedModel, ScoringConfig], Scorer]] = {}


def register(kind: str) -> Callable:
    def add(factory: Callable) -> Callable:
        SCORERS[kind] = factory
        return factory
    return add


def make_scorer(model: LoadedModel, options: ScoringConfig) -> Scorer:
    return SCORERS[model.kind](model, options)


def pad_right(rows: Sequence[Sequence[int]], pad: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(R, T) ids and attention mask, padded on the right to the longest row."""
    width = max(len(r) for r in rows)
    ids = torch.tensor([[*r, *[pad] * (width - len(r))] for r in rows], dtype=torch.long)
    mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows], dtype=torch.long)
    return ids.to(device), mask.to(device)


def chunks(items: Sequence, size: int):
    for start in range(0, len(items), size):
        yield items[start:start + size]
