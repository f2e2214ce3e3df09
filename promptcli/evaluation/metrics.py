"""What metrics.json holds: classification metrics, and the summaries of abstentions, paths and votes."""
from __future__ import annotations

from typing import Sequence

import torch

from . import stats


def classification_metrics(gold: Sequence[str], pred: Sequence[str | None], labels: Sequence[str],
                           abstention: bool = False) -> dict:
    """Accuracy, macro-F1, per-class precision/recall/F1/support and the confusion matrix.

    `confusion.matrix[i][j]` counts examples of gold label i predicted as label j, in
    verbalizer label order. A prediction of None is an abstention: it counts as wrong in
    accuracy and recall; with `abstention`, coverage and accuracy over answered are added.
    The scores come from `stats.class_scores`, the code the leaderboard resamples.
    """
    index = {label: i for i, label in enumerate(labels)}
    n = len(gold)
    gold_ids = torch.tensor([index[g] for g in gold], dtype=torch.long)
    pred_ids = torch.tensor([index[p] if p is not None else -1 for p in pred], dtype=torch.long)
    matrix = stats.confusion(gold_ids, pred_ids, len(labels), stats.full(n))
    scores = stats.class_scores(matrix)
    counts = matrix[0].long().tolist()
    abstained = [row[-1] for row in counts]
    correct = sum(counts[i][i] for i in range(len(labels)))
    per_class = {label: {"precision": float(scores.precision[0, i]), "recall": float(scores.recall[0, i]),
                         "f1": float(scores.f1[0, i]), "support": int(scores.support[0, i])}
                 for i, label in enumerate(labels)}
    result = {
        "n": n,
        "accuracy": float(stats.accuracy((gold_ids == pred_ids).double(), stats.full(n))[0]) if n else 0.0,
        "macro_f1": float(scores.macro_f1[0]),
        "per_class": per_class,
        "confusion": {"labels": list(labels), "matrix": [row[:-1] for row in counts]},
    }
    if abstention or any(abstained):
        answered = n - sum(abstained)
        result.update(abstentions=sum(abstained), coverage=answered / n if n else 0.0,
                      accuracy_answered=correct / answered if answered else 0.0,
                      abstained_by_gold=dict(zip(labels, abstained)))
    return result


def agreement_summary(agreements: Sequence[float]) -> dict:
    """Self-consistency: mean agreement and how many examples reached each level."""
    histogram: dict[str, int] = {}
    for a in sorted(agreements):
        histogram[f"{a:.2f}"] = histogram.get(f"{a:.2f}", 0) + 1
    return {"mean": sum(agreements) / len(agreements) if agreements else 0.0, "histogram": histogram}


def path_summary(answers: Sequence[Sequence[str | None]]) -> dict:
    """Self-consistency, per reasoning path: how many paths gave an answer that maps to a label.

    Example-level `coverage` only says whether *some* path answered; this says how many did.
    """
    total = sum(len(a) for a in answers)
    answered = sum(1 for paths in answers for a in paths if a is not None)
    return {"total": total, "answered": answered, "abstained": total - answered,
            "coverage": answered / total if total else 0.0}


def tie_summary(ties: Sequence[bool], pred: Sequence[str | None], labels: Sequence[str], rule: str,
                gold: Sequence[str | None] | None = None) -> dict:
    """Self-consistency: examples whose vote was tied, the rule that broke the ties, and which label
    each tie went to (`given_to`); with gold labels, how many broken ties were right (`correct`)."""
    tied = [i for i, t in enumerate(ties) if t]
    out = {"count": len(tied), "rule": rule,
           "given_to": {label: sum(1 for i in tied if pred[i] == label) for label in labels}}
    if gold is not None:
        out["correct"] = sum(1 for i in tied if pred[i] is not None and pred[i] == gold[i])
    return out


def prediction_counts(pred: Sequence[str | None], labels: Sequence[str]) -> dict[str, int]:
    """How often each label was predicted (the only summary possible without gold labels)."""
    counts = {label: sum(1 for p in pred if p == label) for label in labels}
    if None in pred:
        counts["(abstained)"] = sum(1 for p in pred if p is None)
    return counts
