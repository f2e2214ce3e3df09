"""Every statistic promptcli reports, written once and vectorised over bootstrap resamples.

A metric takes `idx`, an (R, n) tensor of example indices (R bootstrap resamples of n
examples), and returns one value per resample; a single run's value is the same call with
`idx = full(n)` (R = 1). So metrics.json, the leaderboard, its confidence intervals and the
HTML report all compute accuracy, macro-F1, ECE and log-loss by the same code. Sums over
labels are taken label by label, in label order, so a value is the same float whatever R is.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Sequence

import torch

ECE_BINS = 10


def full(n: int) -> torch.Tensor:
    """(1, n): every example once, in order."""
    return torch.arange(n)[None]


def resample_indices(n: int, resamples: int, seed: int) -> torch.Tensor:
    """(R, n) example indices drawn with replacement; the same seed and n give the same resamples."""
    if resamples < 1:
        raise ValueError(f"resamples must be at least 1, got {resamples}")
    rng = random.Random(seed)
    return torch.tensor([rng.choices(range(n), k=n) for _ in range(resamples)], dtype=torch.long)


@dataclass
class ClassScores:
    """Per-class counts and scores, each (R, L), and macro-F1 (R,) over the labels that occur."""

    support: torch.Tensor
    predicted: torch.Tensor
    tp: torch.Tensor
    precision: torch.Tensor
    recall: torch.Tensor
    f1: torch.Tensor
    macro_f1: torch.Tensor


def confusion(gold: torch.Tensor, pred: torch.Tensor, n_labels: int, idx: torch.Tensor) -> torch.Tensor:
    """(R, L, L + 1) counts of gold label i predicted as j; column L counts abstentions (pred = -1)."""
    g, p = gold[idx], torch.where(pred[idx] < 0, n_labels, pred[idx])  # (R, n)
    cells = g * (n_labels + 1) + p
    counts = torch.zeros(idx.shape[0], n_labels * (n_labels + 1), dtype=torch.float64)
    counts.scatter_add_(1, cells, torch.ones_like(cells, dtype=torch.float64))
    return counts.view(-1, n_labels, n_labels + 1)


def _label_sum(values: torch.Tensor) -> torch.Tensor:
    """(R, L) → (R,), added label by label (the order a plain Python sum would take)."""
    total = torch.zeros(values.shape[0], dtype=values.dtype)
    for column in values.unbind(1):
        total = total + column
    return total


def class_scores(matrix: torch.Tensor) -> ClassScores:
    """From a confusion (R, L, L + 1): an abstention is a miss for its gold label (it lowers recall)."""
    labels = matrix.shape[1]
    tp = matrix.diagonal(dim1=1, dim2=2)  # (R, L)
    support = matrix.sum(2)
    predicted = matrix[:, :, :labels].sum(1)
    precision = torch.where(predicted > 0, tp / predicted.clamp(min=1), 0.0)
    recall = torch.where(support > 0, tp / support.clamp(min=1), 0.0)
    both = precision + recall
    f1 = torch.where(both > 0, 2 * precision * recall / torch.where(both > 0, both, 1.0), 0.0)
    present = (support > 0).double()
    macro = _label_sum(f1 * present) / _label_sum(present).clamp(min=1)
    return ClassScores(support, predicted, tp, precision, recall, f1, macro)


def accuracy(correct: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """correct: (n,) 1.0 / 0.0 → (R,)."""
    return correct[idx].sum(1) / idx.shape[1]


def log_loss(loss: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """loss: (n,) −log p(gold), clipped → (R,) mean."""
    return loss[idx].sum(1) / idx.shape[1]


def bin_of(confidence: torch.Tensor, bins: int = ECE_BINS) -> torch.Tensor:
    """Equal-width bin of each confidence: [i/bins, (i+1)/bins), the last bin including 1."""
    return (confidence * bins).long().clamp(min=0, max=bins - 1)


def ece(correct: torch.Tensor, confidence: torch.Tensor, idx: torch.Tensor, bins: int = ECE_BINS) -> torch.Tensor:
    """Expected calibration error (Guo et al., 2017): Σ_bins |Σ (correct − confidence)| / n → (R,)."""
    which = bin_of(confidence, bins)[idx]  # (R, n)
    gaps = torch.zeros(idx.shape[0], bins, dtype=torch.float64)
    gaps.scatter_add_(1, which, (correct[idx] - confidence[idx]).double())
    return gaps.abs().sum(1) / idx.shape[1]


@dataclass(frozen=True)
class Bin:
    """One equal-width confidence bin of a reliability diagram (confidence, accuracy: 0.0 when empty)."""

    low: float
    high: float
    count: int
    confidence: float
    accuracy: float


def reliability_bins(confidence: Sequence[float], correct: Sequence[bool], bins: int = ECE_BINS) -> list[Bin]:
    """The bins `ece` sums over, for the reliability diagram."""
    if len(confidence) != len(correct):
        raise ValueError("confidence and correct have different lengths; they must be paired")
    conf = torch.tensor([float(c) for c in confidence], dtype=torch.float64)
    if conf.numel() and (conf.min() < 0 or conf.max() > 1):
        raise ValueError("a confidence is outside [0, 1]")
    which = bin_of(conf, bins)
    right = torch.tensor([bool(c) for c in correct], dtype=torch.float64)
    counts = torch.bincount(which, minlength=bins).tolist()
    sums = torch.zeros(bins, dtype=torch.float64).scatter_add_(0, which, conf).tolist()
    hits = torch.zeros(bins, dtype=torch.float64).scatter_add_(0, which, right).tolist()
    return [Bin(low=i / bins, high=(i + 1) / bins, count=counts[i],
                confidence=sums[i] / counts[i] if counts[i] else 0.0,
                accuracy=hits[i] / counts[i] if counts[i] else 0.0) for i in range(bins)]


@dataclass(frozen=True)
class McNemar:
    """Discordant pairs of two classifiers on the same examples and the exact two-sided p-value.

    `b01`: examples A got wrong and B got right; `b10`: A right and B wrong.
    """

    b01: int
    b10: int
    p_value: float


def mcnemar_exact(a_correct: Sequence[bool], b_correct: Sequence[bool]) -> McNemar:
    """Exact two-sided McNemar test: p = min(1, 2·P[X <= min(b01, b10)]), X ~ Bin(b01 + b10, 1/2).

    Computed with integers (sum of binomial coefficients over 2^(n-1)) and one final division,
    which Python rounds correctly for any size: no overflow or underflow for thousands of pairs.
    No discordant pairs gives p = 1.
    """
    if len(a_correct) != len(b_correct):
        raise ValueError("a_correct and b_correct have different lengths; they must be paired")
    b01 = sum(1 for a, b in zip(a_correct, b_correct) if not a and b)
    b10 = sum(1 for a, b in zip(a_correct, b_correct) if a and not b)
    n, k = b01 + b10, min(b01, b10)
    if n == 0:
        return McNemar(b01, b10, 1.0)
    tail, term = 0, 1  # term = C(n, i), updated exactly: C(n, i+1) = C(n, i)·(n-i)/(i+1)
    for i in range(k + 1):
        tail += term
        term = term * (n - i) // (i + 1)
    # 2·tail/2^n; at k = n/2 the two tails overlap and this exceeds 1, hence the min.
    return McNemar(b01, b10, min(1.0, tail / 2 ** (n - 1)))


@dataclass(frozen=True)
class Reliability:
    """A reliability diagram's bins and the ECE they add up to (computed by `ece`, as in the leaderboard)."""

    bins: list[Bin]
    ece: float


def reliability(confidence: Sequence[float], correct: Sequence[bool], bins: int = ECE_BINS) -> Reliability:
    conf = torch.tensor([float(c) for c in confidence], dtype=torch.float64)
    right = torch.tensor([bool(c) for c in correct], dtype=torch.float64)
    value = float(ece(right, conf, full(len(conf)), bins)[0]) if len(conf) else 0.0
    return Reliability(reliability_bins(confidence, correct, bins), value)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (family-wise error): sorted ascending, the i-th (0-based) of m is
    multiplied by m − i, made non-decreasing, capped at 1; returned in the input's order."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted, running = [0.0] * m, 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def benjamini_hochberg(p_values: Sequence[float]) -> list[float]:
    """Benjamini–Hochberg adjusted p-values (false discovery rate): the i-th smallest (1-based) of m is
    multiplied by m / i, made non-decreasing from the largest down, capped at 1; in the input's order."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i], reverse=True)
    adjusted, running = [0.0] * m, 1.0
    for k, i in enumerate(order):
        running = min(running, p_values[i] * m / (m - k))
        adjusted[i] = min(1.0, running)
    return adjusted
