"""Leaderboard statistics against values computed by hand (the computation is in the comments)."""
from __future__ import annotations

import math

import pytest

from promptcli.metrics import classification_metrics
from promptcli.stats import (Bin, Interval, bootstrap_ci, bootstrap_metric_ci, ece_of_bins,
                             expected_calibration_error, log_loss, mcnemar_exact, mean_std, paired_bootstrap,
                             reliability_bins)


def pairs(b01: int, b10: int, both_right: int = 0, both_wrong: int = 0) -> tuple[list[bool], list[bool]]:
    """Correctness vectors of A and B with the given discordant and concordant counts."""
    a = [False] * b01 + [True] * b10 + [True] * both_right + [False] * both_wrong
    b = [True] * b01 + [False] * b10 + [True] * both_right + [False] * both_wrong
    return a, b


# ---- McNemar ---------------------------------------------------------------------------------

def test_mcnemar_one_against_six():
    # n = 7, k = min(1, 6) = 1: P[X <= 1] = (C(7,0) + C(7,1)) / 2^7 = (1 + 7) / 128
    # p = 2 · 8 / 128 = 0.125
    result = mcnemar_exact(*pairs(1, 6, both_right=20, both_wrong=5))
    assert (result.b01, result.b10) == (1, 6)
    assert result.p_value == 0.125


def test_mcnemar_zero_against_five():
    # n = 5, k = 0: P[X <= 0] = 1 / 32, p = 2 / 32 = 0.0625
    assert mcnemar_exact(*pairs(5, 0)).p_value == 0.0625


def test_mcnemar_is_symmetric_and_counts_direction():
    assert mcnemar_exact(*pairs(6, 1)).p_value == 0.125
    swapped = mcnemar_exact(*reversed(pairs(6, 1)))
    assert (swapped.b01, swapped.b10, swapped.p_value) == (1, 6, 0.125)


@pytest.mark.parametrize("b", [1, 4, 50])
def test_mcnemar_equal_discordant_counts_give_one(b):
    # b01 = b10: P[X <= n/2] >= 1/2, so 2·P >= 1 and p is capped at 1
    assert mcnemar_exact(*pairs(b, b)).p_value == 1.0


def test_mcnemar_no_discordant_pairs_gives_one():
    assert mcnemar_exact(*pairs(0, 0, both_right=10, both_wrong=3)) == mcnemar_exact([True], [True])
    assert mcnemar_exact(*pairs(0, 0, both_right=10)).p_value == 1.0


def test_mcnemar_is_exact_for_thousands_of_pairs():
    # n = 4000, k = 1000: the normal approximation z = (3000 − 1000 − 1)/sqrt(4000) ≈ 31.6 puts
    # p near 1e-219; a float-only computation of C(4000, k)/2^4000 overflows, integers do not.
    p = mcnemar_exact(*pairs(1000, 3000)).p_value
    assert 0.0 < p < 1e-200
    # n = 3000, k = 1490: nearly balanced, p must be close to 1 (z ≈ 0.35 → p ≈ 0.73)
    assert 0.6 < mcnemar_exact(*pairs(1490, 1510)).p_value < 0.8


def test_mcnemar_needs_paired_vectors():
    with pytest.raises(ValueError, match="paired"):
        mcnemar_exact([True, False], [True])


# ---- bootstrap -------------------------------------------------------------------------------

VALUES = [1, 0, 1, 1, 0, 1, 1, 1, 0, 1, 1, 0, 1, 1, 1, 1, 0, 1, 1, 1]  # 15 of 20 → mean 0.75


def test_bootstrap_ci_contains_the_mean_and_is_reproducible():
    ci = bootstrap_ci(VALUES, resamples=500, seed=1)
    assert ci.estimate == 0.75
    assert ci.low < 0.75 < ci.high
    assert 0.4 < ci.low and ci.high < 1.0  # sd of the mean ≈ sqrt(.75·.25/20) ≈ 0.097
    assert bootstrap_ci(VALUES, resamples=500, seed=1) == ci
    assert bootstrap_ci(VALUES, resamples=500, seed=2) != ci


def test_bootstrap_ci_of_a_constant_vector_is_a_point():
    assert bootstrap_ci([0.3] * 17, resamples=200) == Interval(0.3, 0.3, 0.3)


def test_bootstrap_ci_narrows_with_the_level():
    wide = bootstrap_ci(VALUES, resamples=500, level=0.99)
    narrow = bootstrap_ci(VALUES, resamples=500, level=0.5)
    assert wide.low <= narrow.low <= narrow.high <= wide.high


def test_bootstrap_metric_ci_of_accuracy_equals_the_mean_ci():
    # Both draw the same example indices for the same seed, so the intervals coincide.
    gold = ["a", "b", "a", "a", "b", "b", "a", "b", "a", "a"]
    pred = ["a", "b", "b", "a", "b", "a", "a", "b", "a", "b"]
    correct = [g == p for g, p in zip(gold, pred)]

    def accuracy(g, p):
        return sum(x == y for x, y in zip(g, p)) / len(g)

    mean_ci = bootstrap_ci(correct, resamples=300, seed=7)
    metric_ci = bootstrap_metric_ci(gold, pred, accuracy, resamples=300, seed=7)
    assert metric_ci.estimate == mean_ci.estimate == 0.7
    assert metric_ci.low == pytest.approx(mean_ci.low) and metric_ci.high == pytest.approx(mean_ci.high)


def test_bootstrap_metric_ci_of_macro_f1():
    gold = ["a", "b", "c"] * 10
    pred = ["a", "b", "c"] * 7 + ["b", "c", "a"] * 3

    def macro_f1(g, p):
        return classification_metrics(g, p, ["a", "b", "c"])["macro_f1"]

    ci = bootstrap_metric_ci(gold, pred, macro_f1, resamples=200, seed=0)
    assert ci.estimate == pytest.approx(0.7)  # every class: P = R = 7/10
    assert ci.low < 0.7 < ci.high


def test_bootstrap_rejects_bad_arguments():
    with pytest.raises(ValueError, match="empty"):
        bootstrap_ci([])
    with pytest.raises(ValueError, match="level"):
        bootstrap_ci([1.0], level=95)
    with pytest.raises(ValueError, match="paired"):
        bootstrap_metric_ci(["a"], ["a", "b"], lambda g, p: 0.0)


def test_paired_bootstrap():
    a = [1.0] * 30
    b = [1.0] * 20 + [0.0] * 10  # a is better on 10 examples, never worse
    # Every resample with a discordant example has d* > 0; P[no discordant among 30 draws]
    # = (20/30)^30 ≈ 5e-6, so no resampled d* <= 0: p = 2·(0 + 1)/(1000 + 1)
    assert paired_bootstrap(a, b, resamples=1000, seed=3) == pytest.approx(2 / 1001)
    assert paired_bootstrap(b, a, resamples=1000, seed=3) == pytest.approx(2 / 1001)
    assert paired_bootstrap(a, a) == 1.0  # every d* = 0 lies on both sides
    noisy = paired_bootstrap(VALUES, VALUES[1:] + VALUES[:1], resamples=500, seed=0)
    assert 0.5 < noisy <= 1.0  # the same 15/20, shifted: no real difference
    assert paired_bootstrap(VALUES, VALUES[::-1], seed=5) == paired_bootstrap(VALUES, VALUES[::-1], seed=5)


# ---- calibration -----------------------------------------------------------------------------

def test_ece_of_perfectly_calibrated_bins_is_zero():
    # bin [0.2, 0.3): 4 examples at confidence 0.25, 1 right → accuracy 0.25, gap 0
    # bin [0.7, 0.8): 4 examples at confidence 0.75, 3 right → accuracy 0.75, gap 0
    confidence = [0.25] * 4 + [0.75] * 4
    correct = [True, False, False, False, True, True, True, False]
    assert expected_calibration_error(confidence, correct) == 0.0


def test_ece_known_case():
    # 10 bins. Bin [0.9, 1.0]: confidences 0.9, 0.9, 1.0, 1.0 → mean 0.95, 2 of 4 right → acc 0.5
    #   contribution 4/6 · |0.5 − 0.95| = 4/6 · 0.45 = 0.3
    # Bin [0.6, 0.7): confidences 0.6, 0.6 → mean 0.6, 2 of 2 right → acc 1.0
    #   contribution 2/6 · |1.0 − 0.6| = 2/6 · 0.4 = 0.1333…
    # ECE = 0.3 + 0.1333… = 0.4333…
    confidence = [0.9, 0.9, 1.0, 1.0, 0.6, 0.6]
    correct = [True, False, True, False, True, True]
    assert expected_calibration_error(confidence, correct) == pytest.approx(0.3 + 0.4 / 3)
    bins = reliability_bins(confidence, correct)
    assert len(bins) == 10 and sum(b.count for b in bins) == 6
    assert bins[9] == Bin(low=0.9, high=1.0, count=4, confidence=pytest.approx(0.95), accuracy=0.5)
    assert bins[6] == Bin(low=0.6, high=0.7, count=2, confidence=0.6, accuracy=1.0)
    assert bins[0] == Bin(low=0.0, high=0.1, count=0, confidence=0.0, accuracy=0.0)
    assert ece_of_bins(bins) == expected_calibration_error(confidence, correct)


def test_reliability_bins_edges():
    # 0.0 opens the first bin, 1.0 closes the last, 0.5 starts the second of two
    bins = reliability_bins([0.0, 0.5, 1.0], [False, True, True], bins=2)
    assert [b.count for b in bins] == [1, 2]
    with pytest.raises(ValueError, match="outside"):
        reliability_bins([1.5], [True])
    assert expected_calibration_error([], []) == 0.0


def test_log_loss():
    assert log_loss([0.5, 0.5]) == pytest.approx(math.log(2))
    assert log_loss([1.0]) == 0.0
    # (−ln 0.25 − ln 1.0) / 2 = ln 4 / 2 = ln 2
    assert log_loss([0.25, 1.0]) == pytest.approx(math.log(2))
    assert log_loss([0.0]) == pytest.approx(-math.log(1e-12))  # clipped, finite
    with pytest.raises(ValueError, match="outside"):
        log_loss([-0.1])


def test_mean_std():
    assert mean_std([0.8]) == (0.8, 0.0)
    # mean 2, deviations −1, 0, 1 → Σ² = 2, / (3 − 1) = 1 → std 1
    assert mean_std([1.0, 2.0, 3.0]) == (2.0, 1.0)
    mean, std = mean_std([0.70, 0.74])  # mean 0.72, sqrt((0.02² + 0.02²) / 1) = 0.02·√2
    assert mean == pytest.approx(0.72) and std == pytest.approx(0.02 * math.sqrt(2))
    with pytest.raises(ValueError):
        mean_std([])
