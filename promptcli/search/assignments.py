"""Label-word assignments scored by cross-validated accuracy on the training rows.

An assignment gives each label one or more candidate words. Its label scores come from the words'
scores exactly as `run` computes them (`scoring/labels.py`: PMI premise, the verbalizer's aggregate,
contextual calibration), from one matrix of word scores, so trying thousands of assignments costs no
forward pass. Cross-validation: an assignment earns a training row of fold f only if every one of its
words was proposed from the *other* folds' rows (and it predicts the row correctly); so a word that
is a candidate only because of the rows it is then scored on earns nothing there.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Sequence

import torch

Assignment = tuple[tuple[int, ...], ...]  # per label, the columns of its words


@dataclass
class WordTable:
    """Everything an assignment's accuracy depends on."""

    scores: torch.Tensor  # (N, W) word scores of the training rows (PMI premise already subtracted)
    gold: torch.Tensor  # (N,) label index
    folds: torch.Tensor  # (N,) fold index
    proposed: torch.Tensor  # (K, W) bool: the word was a candidate of its label without fold k's rows
    content_free: torch.Tensor | None = None  # (n, W) word scores of the content-free inputs (calibration)
    aggregate: str = "mean"

    @classmethod
    def build(cls, scores: torch.Tensor, gold: Sequence[int], folds: Sequence[int], proposed: torch.Tensor,
              premise: torch.Tensor | None = None, content_free: torch.Tensor | None = None,
              aggregate: str = "mean") -> WordTable:
        shift = premise if premise is not None else 0.0
        return cls(scores - shift, torch.tensor(gold), torch.tensor(folds), proposed,
                   None if content_free is None else content_free - shift, aggregate)


def _padded(assignments: Sequence[Assignment]) -> tuple[torch.Tensor, torch.Tensor]:
    """(A, C, m) word columns and a mask of the real ones (labels may hold different numbers of words)."""
    m = max(len(words) for a in assignments for words in a)
    cols = torch.tensor([[list(words) + [words[0]] * (m - len(words)) for words in a] for a in assignments])
    real = torch.tensor([[[j < len(words) for j in range(m)] for words in a] for a in assignments])
    return cols, real


def _label_scores(scores: torch.Tensor, cols: torch.Tensor, real: torch.Tensor, aggregate: str) -> torch.Tensor:
    """(R, W) word scores → (R, A, C) label log-scores (log of mean / max / sum of the words' probabilities)."""
    words = scores[:, cols].masked_fill(~real, -math.inf)  # (R, A, C, m)
    if aggregate == "max":
        return words.max(-1).values
    total = words.logsumexp(-1)
    return total if aggregate == "sum" else total - real.sum(-1).log()


def label_log_probs(table: WordTable, assignments: Sequence[Assignment]) -> torch.Tensor:
    """(N, A, C) each assignment's label distribution on each training row, as `run` computes it."""
    cols, real = _padded(assignments)
    log_probs = _label_scores(table.scores, cols, real, table.aggregate).log_softmax(-1)
    if table.content_free is not None:
        p_cf = _label_scores(table.content_free, cols, real, table.aggregate).log_softmax(-1).exp().mean(0)
        log_probs = (log_probs - p_cf.log()[None]).log_softmax(-1)
    return log_probs


def predictions(table: WordTable, assignments: Sequence[Assignment]) -> torch.Tensor:
    """(N, A) the label each assignment predicts for each training row."""
    return label_log_probs(table, assignments).argmax(-1)


def accuracies(table: WordTable, assignments: Sequence[Assignment]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(A,) cross-validated accuracy, plain accuracy on all training rows, and the mean log-probability of
    the gold label (a finer tie-break than accuracy on a few dozen rows)."""
    log_probs = label_log_probs(table, assignments)
    correct = log_probs.argmax(-1) == table.gold[:, None]  # (N, A)
    cols, real = _padded(assignments)
    proposed = (table.proposed[:, cols] | ~real).flatten(2).all(-1)  # (K, A): every word proposed without fold k
    earned = correct & proposed[table.folds]
    gold = log_probs.gather(-1, table.gold[:, None, None].expand(-1, log_probs.shape[1], 1))[..., 0]
    return earned.float().mean(0), correct.float().mean(0), gold.mean(0)


def single_words(pools: Sequence[Sequence[int]], cap: int) -> list[Assignment]:
    """Every one-word-per-label assignment, the pools trimmed (their weakest words first) to at most `cap`."""
    pools = [list(p) for p in pools]
    while math.prod(len(p) for p in pools) > cap:
        longest = max(range(len(pools)), key=lambda c: len(pools[c]))
        if len(pools[longest]) == 1:
            break
        pools[longest].pop()
    return [tuple((w,) for w in combo) for combo in itertools.product(*pools)]


@dataclass(frozen=True)
class Scored:
    assignment: Assignment
    cv: float
    train: float
    log_likelihood: float  # mean log-probability of the gold label on all training rows

    def key(self) -> tuple[float, float, float]:
        """Best first: cross-validated accuracy, then accuracy on all rows, then the gold label's probability."""
        return -self.cv, -self.train, -self.log_likelihood


def rank(table: WordTable, assignments: Sequence[Assignment], chunk: int = 4096) -> list[Scored]:
    """Best first (`Scored.key`; equal keys keep the candidates' order)."""
    scored = []
    for start in range(0, len(assignments), chunk):
        part = assignments[start:start + chunk]
        cv, train, gold = accuracies(table, part)
        scored += [Scored(a, float(c), float(t), float(g)) for a, c, t, g in zip(part, cv, train, gold)]
    return sorted(scored, key=Scored.key)


def add_words(table: WordTable, start: Scored, pools: Sequence[Sequence[int]], max_words: int) -> Scored:
    """Greedily give each label more words (up to `max_words`), keeping a word only if the ranking improves
    (`Scored.key`: cross-validated accuracy first)."""
    best = start
    for _ in range(max_words - 1):
        for c, pool in enumerate(pools):
            have = best.assignment[c]
            tries = [best.assignment[:c] + (have + (w,),) + best.assignment[c + 1:] for w in pool if w not in have]
            if tries:
                top = rank(table, tries)[0]
                if top.key() < best.key():
                    best = top
    return best
