"""Statistics against values computed by hand (the computation is in the comments): one implementation
serves metrics.json, the leaderboard and the report."""
from __future__ import annotations

import math

import pytest

import torch

from promptcli.evaluation import stats
from promptcli.evaluation.leaderboard import Columns
from promptcli.evaluation.metrics import classification_metrics
from promptcli.evaluation.outputs import Prediction
from promptcli.evaluation.stats import Bin, mcnemar_exact, reliability_bins


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


# ---- one implementation, any number of resamples -----------------------------------------------

def test_resamples_are_reproducible_and_draw_with_replacement():
    a = stats.resample_indices(20, 50, seed=1)
    assert a.shape == (50, 20) and torch.equal(a, stats.resample_indices(20, 50, seed=1))
    assert not torch.equal(a, stats.resample_indices(20, 50, seed=2))
    assert any(len(set(row.tolist())) < 20 for row in a)  # some example drawn twice


def test_macro_f1_by_hand_and_equal_in_metrics_json_and_the_leaderboard():
    # every class: 7 of its 10 examples right, and 3 of another class's predicted as it → P = R = F1 = 0.7
    gold = ["a", "b", "c"] * 10
    pred = ["a", "b", "c"] * 7 + ["b", "c", "a"] * 3
    metrics = classification_metrics(gold, pred, ["a", "b", "c"])
    assert metrics["macro_f1"] == pytest.approx(0.7) and metrics["accuracy"] == pytest.approx(0.7)
    predictions = [Prediction(index=i, gold=g, pred=p, probs={"a": 0.2, "b": 0.3, "c": 0.5}, truncated=False)
                   for i, (g, p) in enumerate(zip(gold, pred))]
    columns = Columns(predictions, ["a", "b", "c"])
    assert float(columns.metric("macro_f1", stats.full(30))[0]) == metrics["macro_f1"]
    assert float(columns.metric("accuracy", stats.full(30))[0]) == metrics["accuracy"]
    # the same numbers on every resample that happens to be the identity
    assert torch.equal(columns.metric("macro_f1", stats.full(30).repeat(3, 1)), torch.full((3,), metrics["macro_f1"],
                                                                                         dtype=torch.float64))


def test_an_abstention_is_a_miss_for_its_gold_label():
    # gold a, a, b; predicted a, (abstained), b → recall(a) = 1/2, precision(a) = 1; F1(a) = 2/3, F1(b) = 1
    metrics = classification_metrics(["a", "a", "b"], ["a", None, "b"], ["a", "b"])
    assert metrics["per_class"]["a"]["recall"] == 0.5 and metrics["per_class"]["a"]["precision"] == 1.0
    assert metrics["macro_f1"] == pytest.approx((2 / 3 + 1) / 2) and metrics["coverage"] == pytest.approx(2 / 3)


# ---- calibration -----------------------------------------------------------------------------

def ece(confidence, correct) -> float:
    return float(stats.ece(torch.tensor(correct, dtype=torch.float64), torch.tensor(confidence, dtype=torch.float64),
                           stats.full(len(confidence)))[0])


def test_ece_of_perfectly_calibrated_bins_is_zero():
    # bin [0.2, 0.3): 4 examples at confidence 0.25, 1 right → accuracy 0.25, gap 0
    # bin [0.7, 0.8): 4 examples at confidence 0.75, 3 right → accuracy 0.75, gap 0
    confidence = [0.25] * 4 + [0.75] * 4
    correct = [1, 0, 0, 0, 1, 1, 1, 0]
    assert ece(confidence, correct) == pytest.approx(0.0, abs=1e-15)


def test_ece_known_case():
    # 10 bins. Bin [0.9, 1.0]: confidences 0.9, 0.9, 1.0, 1.0 → mean 0.95, 2 of 4 right → acc 0.5
    #   contribution 4/6 · |0.5 − 0.95| = 4/6 · 0.45 = 0.3
    # Bin [0.6, 0.7): confidences 0.6, 0.6 → mean 0.6, 2 of 2 right → acc 1.0
    #   contribution 2/6 · |1.0 − 0.6| = 2/6 · 0.4 = 0.1333…
    # ECE = 0.3 + 0.1333… = 0.4333…
    confidence = [0.9, 0.9, 1.0, 1.0, 0.6, 0.6]
    correct = [True, False, True, False, True, True]
    assert ece(confidence, [float(c) for c in correct]) == pytest.approx(0.3 + 0.4 / 3)
    diagram = stats.reliability(confidence, correct)
    assert diagram.ece == pytest.approx(0.3 + 0.4 / 3)
    bins = diagram.bins
    assert len(bins) == 10 and sum(b.count for b in bins) == 6
    assert bins[9] == Bin(low=0.9, high=1.0, count=4, confidence=pytest.approx(0.95), accuracy=0.5)
    assert bins[6] == Bin(low=0.6, high=0.7, count=2, confidence=pytest.approx(0.6), accuracy=1.0)
    assert bins[0] == Bin(low=0.0, high=0.1, count=0, confidence=0.0, accuracy=0.0)


def test_reliability_bins_edges():
    # 0.0 opens the first bin, 1.0 closes the last, 0.5 starts the second of two
    bins = reliability_bins([0.0, 0.5, 1.0], [False, True, True], bins=2)
    assert [b.count for b in bins] == [1, 2]
    with pytest.raises(ValueError, match="outside"):
        reliability_bins([1.5], [True])
    assert stats.reliability([], []).ece == 0.0


def test_log_loss():
    # (−ln 0.25 − ln 1.0) / 2 = ln 4 / 2 = ln 2
    loss = -torch.tensor([0.25, 1.0], dtype=torch.float64).log()
    assert float(stats.log_loss(loss, stats.full(2))[0]) == pytest.approx(math.log(2))


def test_holm_and_benjamini_hochberg_match_hand_computed_values():
    from promptcli.evaluation.stats import benjamini_hochberg, holm

    p = [0.01, 0.04, 0.03, 0.005]
    # Holm: sorted 0.005·4, 0.01·3, 0.03·2, 0.04·1 = .02, .03, .06, .04 → non-decreasing .02, .03, .06, .06
    assert holm(p) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    # BH: sorted 0.005·4/1, 0.01·4/2, 0.03·4/3, 0.04·4/4 = .02, .02, .04, .04 (already monotone)
    assert benjamini_hochberg(p) == pytest.approx([0.02, 0.04, 0.04, 0.02])
    q = [0.01, 0.02, 0.03, 0.04, 0.05]
    assert holm(q) == pytest.approx([0.05, 0.08, 0.09, 0.09, 0.09])
    assert benjamini_hochberg(q) == pytest.approx([0.05] * 5)
    assert holm([0.5, 0.9]) == [1.0, 1.0] and benjamini_hochberg([0.9, 0.5]) == pytest.approx([0.9, 0.9])
    assert holm([]) == [] and benjamini_hochberg([0.2]) == [0.2]
