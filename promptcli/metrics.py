"""Classification metrics from gold and predicted labels (plain Python, no extra dependency)."""
from __future__ import annotations

from typing import Sequence


def classification_metrics(gold: Sequence[str], pred: Sequence[str | None], labels: Sequence[str],
                           abstention: bool = False) -> dict:
    """Accuracy, macro-F1, per-class precision/recall/F1/support and the confusion matrix.

    `confusion.matrix[i][j]` counts examples of gold label i predicted as label j, in
    verbalizer label order. A prediction of None is an abstention: it counts as wrong in
    accuracy and recall; with `abstention`, coverage and accuracy over answered are added.
    """
    index = {label: i for i, label in enumerate(labels)}
    matrix = [[0] * len(labels) for _ in labels]
    abstained = [0] * len(labels)
    for g, p in zip(gold, pred):
        if p is None:
            abstained[index[g]] += 1
        else:
            matrix[index[g]][index[p]] += 1
    n = len(gold)
    correct = sum(matrix[i][i] for i in range(len(labels)))
    per_class = {}
    for i, label in enumerate(labels):
        tp = matrix[i][i]
        predicted = sum(row[i] for row in matrix)
        support = sum(matrix[i]) + abstained[i]  # an abstention is a miss for its gold label
        precision = tp / predicted if predicted else 0.0
        recall = tp / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[label] = {"precision": precision, "recall": recall, "f1": f1, "support": support}
    present = [label for label in labels if per_class[label]["support"] > 0]
    macro_f1 = sum(per_class[label]["f1"] for label in present) / len(present) if present else 0.0
    result = {
        "n": n,
        "accuracy": correct / n if n else 0.0,
        "macro_f1": macro_f1,
        "per_class": per_class,
        "confusion": {"labels": list(labels), "matrix": matrix},
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
