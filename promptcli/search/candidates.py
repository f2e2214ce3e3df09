"""Candidate label words per class (LM-BFF's auto-L, with a relative score): the words the model prefers at
the slot on that class's training rows, more than it does on all rows.

For class c, among the `pool` words with the highest mean log-probability on c's rows, the `top_k` with the
highest *lift*: mean log-prob on c's rows minus mean log-prob on all rows (so a word the model likes
everywhere, "the", "good", does not win every class). Everything is computed from per-(fold, class) sums,
so the candidates of every cross-validation fold (proposed without that fold's rows) come from one pass.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Sequence

import torch


def stratified_folds(labels: Sequence[int], folds: int, seed: int) -> list[int]:
    """Fold number of each row: every class's rows shuffled with `seed`, then dealt out in turn."""
    out = [0] * len(labels)
    rng = random.Random(seed)
    turn = 0
    for c in sorted(set(labels)):
        rows = [i for i, label in enumerate(labels) if label == c]
        rng.shuffle(rows)
        for row in rows:
            out[row] = turn % folds
            turn += 1
    return out


@dataclass
class SlotSums:
    """Σ log p(word at the slot) per (fold, class) over rows: (K, C, V) sums and (K, C) counts."""

    sums: torch.Tensor
    counts: torch.Tensor

    @classmethod
    def empty(cls, folds: int, classes: int, words: int) -> SlotSums:
        return cls(torch.zeros(folds, classes, words, dtype=torch.float64), torch.zeros(folds, classes))

    def add(self, log_probs: torch.Tensor, folds: Sequence[int], labels: Sequence[int]) -> None:
        """Add a batch: (B, V) log-probs of its rows, with their folds and classes."""
        for row, f, c in zip(log_probs, folds, labels):
            self.sums[f, c] += row.double()
            self.counts[f, c] += 1

    def lift(self, without: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(C, V) mean log-prob per class and its lift over all rows, leaving fold `without` out."""
        sums, counts = self.sums.clone(), self.counts.clone()
        if without is not None:
            sums[without], counts[without] = 0, 0
        per_class = sums.sum(0) / counts.sum(0).clamp(min=1)[:, None]
        overall = sums.sum((0, 1)) / counts.sum().clamp(min=1)
        return per_class, per_class - overall

    def candidates(self, top_k: int, pool: int, without: int | None = None) -> list[list[int]]:
        """Per class, the columns of its `top_k` words by lift among its `pool` most likely words, best first."""
        per_class, lift = self.lift(without)
        out = []
        for likely, gain in zip(per_class, lift):
            shortlist = likely.topk(min(pool, likely.numel())).indices
            order = gain[shortlist].argsort(descending=True, stable=True)
            out.append(shortlist[order[:top_k]].tolist())
        return out
