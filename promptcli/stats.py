"""Statistics for a leaderboard: is a difference between variants real, and are the scores calibrated?

Plain Python (math, random) so the numbers do not depend on an optional numerical library.
Every resampling takes a seed and draws example indices the same way (`random.Random(seed)
.choices(range(n), k=n)` per resample), so two calls with the same seed and the same number of
examples resample the same examples: a mean CI, a metric CI and a paired test agree with one
another, and a leaderboard is reproducible from the seed stored with the run.

Bad arguments (empty or mismatched inputs, a level outside (0, 1)) are programming errors and
raise `ValueError`; data reaching here was already checked by the run.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Callable, Sequence


@dataclass(frozen=True)
class Interval:
    """A point estimate and its confidence interval (`low <= high`)."""

    estimate: float
    low: float
    high: float


@dataclass(frozen=True)
class McNemar:
    """Discordant pairs of two classifiers on the same examples and the exact two-sided p-value.

    `b01`: examples A got wrong and B got right; `b10`: A right and B wrong.
    """

    b01: int
    b10: int
    p_value: float


@dataclass(frozen=True)
class Bin:
    """One equal-width confidence bin of a reliability diagram.

    `confidence` (mean confidence) and `accuracy` are 0.0 for an empty bin (`count == 0`), which
    plots and the ECE skip; bins are kept so every variant has the same `bins` rows.
    """

    low: float
    high: float
    count: int
    confidence: float
    accuracy: float


def _check_level(level: float) -> None:
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")


def _check_nonempty(values: Sequence, what: str) -> None:
    if len(values) == 0:
        raise ValueError(f"{what} is empty")


def _check_paired(a: Sequence, b: Sequence, what: str) -> None:
    if len(a) != len(b):
        raise ValueError(f"{what} have different lengths ({len(a)} and {len(b)}); they must be paired")


def _quantile(sorted_values: Sequence[float], q: float) -> float:
    """Linear interpolation between order statistics (numpy's default), exact for a constant vector."""
    position = q * (len(sorted_values) - 1)
    below = math.floor(position)
    above = min(below + 1, len(sorted_values) - 1)
    frac = position - below
    lo, hi = sorted_values[below], sorted_values[above]
    return lo if lo == hi else lo + (hi - lo) * frac


def _percentile_interval(estimate: float, resampled: list[float], level: float) -> Interval:
    resampled.sort()
    tail = (1.0 - level) / 2.0
    return Interval(estimate, _quantile(resampled, tail), _quantile(resampled, 1.0 - tail))


def resample_indices(n: int, resamples: int, seed: int):
    """Yield `resamples` lists of n example indices drawn with replacement."""
    if resamples < 1:
        raise ValueError(f"resamples must be at least 1, got {resamples}")
    rng = random.Random(seed)
    population = range(n)
    for _ in range(resamples):
        yield rng.choices(population, k=n)


def _mean(values: Sequence[float]) -> float:
    return math.fsum(values) / len(values)


def bootstrap_ci(values: Sequence[float], *, resamples: int = 1000, seed: int = 0,
                 level: float = 0.95) -> Interval:
    """Percentile bootstrap CI of the mean of per-example values (e.g. correct = 1, wrong = 0)."""
    _check_nonempty(values, "values")
    _check_level(level)
    values = [float(v) for v in values]
    means = [_mean([values[i] for i in idx]) for idx in resample_indices(len(values), resamples, seed)]
    return _percentile_interval(_mean(values), means, level)


def bootstrap_metric_ci(gold: Sequence, pred: Sequence, metric: Callable[[list, list], float], *,
                        resamples: int = 1000, seed: int = 0, level: float = 0.95) -> Interval:
    """Percentile bootstrap CI of a metric that is not a mean of per-example values (macro-F1).

    Examples (gold, pred pairs) are resampled together; `metric(gold, pred)` is called once on
    the data and once per resample, so it should be cheap.
    """
    _check_nonempty(gold, "gold")
    _check_paired(gold, pred, "gold and pred")
    _check_level(level)
    gold, pred = list(gold), list(pred)
    scores = [float(metric([gold[i] for i in idx], [pred[i] for i in idx]))
              for idx in resample_indices(len(gold), resamples, seed)]
    return _percentile_interval(float(metric(gold, pred)), scores, level)


def mcnemar_exact(a_correct: Sequence[bool], b_correct: Sequence[bool]) -> McNemar:
    """Exact two-sided McNemar test: p = min(1, 2·P[X <= min(b01, b10)]), X ~ Bin(b01 + b10, 1/2).

    Computed with integers (sum of binomial coefficients over 2^(n-1)) and one final division,
    which Python rounds correctly for any size, so there is no overflow or underflow to guard
    against for thousands of discordant pairs. No discordant pairs gives p = 1.
    """
    _check_paired(a_correct, b_correct, "a_correct and b_correct")
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


def paired_bootstrap(a_values: Sequence[float], b_values: Sequence[float], *, resamples: int = 1000,
                     seed: int = 0) -> float:
    """Two-sided p-value for mean(a) != mean(b) on the same examples, by a paired bootstrap.

    Examples are resampled together; with d* the resampled mean difference, p = 2·min(share of
    d* <= 0, share of d* >= 0), capped at 1 — how often the resampled difference reaches the
    other side of 0. Each share is (count + 1) / (resamples + 1) so that p is never exactly 0:
    a finite number of resamples cannot show more than p < 1/resamples.
    """
    _check_nonempty(a_values, "a_values")
    _check_paired(a_values, b_values, "a_values and b_values")
    diffs = [float(a) - float(b) for a, b in zip(a_values, b_values)]
    below = above = 0
    for idx in resample_indices(len(diffs), resamples, seed):
        d = _mean([diffs[i] for i in idx])
        below += d <= 0.0
        above += d >= 0.0
    share = (min(below, above) + 1) / (resamples + 1)
    return min(1.0, 2.0 * share)


def reliability_bins(confidence: Sequence[float], correct: Sequence[bool], bins: int = 10) -> list[Bin]:
    """Equal-width bins over [0, 1]: bin i holds confidences in [i/bins, (i+1)/bins), the last one includes 1.

    The edge a confidence falls on is computed as floor(c·bins), so a value within float
    rounding of an edge may land in either neighbour; that moves no real result.
    """
    _check_paired(confidence, correct, "confidence and correct")
    if bins < 1:
        raise ValueError(f"bins must be at least 1, got {bins}")
    counts, conf_sums, right = [0] * bins, [0.0] * bins, [0] * bins
    for c, ok in zip(confidence, correct):
        c = float(c)
        if not 0.0 <= c <= 1.0:
            raise ValueError(f"confidence {c} is outside [0, 1]")
        i = min(int(c * bins), bins - 1)
        counts[i] += 1
        conf_sums[i] += c
        right[i] += bool(ok)
    return [Bin(low=i / bins, high=(i + 1) / bins, count=counts[i],
                confidence=conf_sums[i] / counts[i] if counts[i] else 0.0,
                accuracy=right[i] / counts[i] if counts[i] else 0.0) for i in range(bins)]


def ece_of_bins(bins: Sequence[Bin]) -> float:
    """Expected calibration error: Σ (count / n)·|accuracy − confidence| over the bins."""
    total = sum(b.count for b in bins)
    if total == 0:
        return 0.0
    return math.fsum(b.count * abs(b.accuracy - b.confidence) for b in bins) / total


def expected_calibration_error(confidence: Sequence[float], correct: Sequence[bool], bins: int = 10) -> float:
    """The standard ECE (Guo et al., 2017) with equal-width bins; 0 for no examples."""
    return ece_of_bins(reliability_bins(confidence, correct, bins))


def log_loss(prob_of_gold: Sequence[float], eps: float = 1e-12) -> float:
    """Mean negative log of the probability given to the gold label.

    Probabilities are clipped to [eps, 1] so that one confident mistake (p = 0) gives a large
    but finite loss, and a softmax that rounds a hair above 1 gives 0.
    """
    _check_nonempty(prob_of_gold, "prob_of_gold")
    losses = []
    for p in prob_of_gold:
        p = float(p)
        if not 0.0 <= p <= 1.0 + 1e-6:
            raise ValueError(f"probability {p} is outside [0, 1]")
        losses.append(-math.log(min(1.0, max(p, eps))))
    return _mean(losses)


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (n − 1) of a few seeds' results; std 0 for one value."""
    _check_nonempty(values, "values")
    values = [float(v) for v in values]
    mean = _mean(values)
    if len(values) == 1:
        return mean, 0.0
    return mean, math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (len(values) - 1))
