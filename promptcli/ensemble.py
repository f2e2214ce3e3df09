"""Ensembles: the mean of label log-probabilities over several templates, optionally weighted.

Members must have scored the same examples with the same labels. Weights (e.g. each
template's dev accuracy) are normalised to sum to one.
"""
from __future__ import annotations

import math
from typing import Sequence

from .errors import RunError
from .outputs import Prediction

FLOOR = 1e-12  # probabilities are stored to 6 significant digits; never take the log of 0


def ensemble(members: Sequence[Sequence[Prediction]], labels: Sequence[str],
             weights: Sequence[float] | None = None) -> list[Prediction]:
    """One prediction per example: softmax of the weighted mean of the members' label log-probs."""
    if len(members) < 2:
        raise RunError("an ensemble needs at least two members")
    weights = list(weights) if weights is not None else [1.0] * len(members)
    total = sum(weights)
    if total <= 0 or any(w < 0 for w in weights):
        raise RunError("ensemble weights must be non-negative and not all zero")
    by_index = [{p.index: p for p in member} for member in members]
    indices = sorted(by_index[0])
    if any(sorted(m) != indices for m in by_index[1:]):
        raise RunError("ensemble members scored different examples")
    out = []
    for index in indices:
        rows = [m[index] for m in by_index]
        if any(r.pred is None for r in rows):
            raise RunError("an ensemble member abstained; ensembles combine scored templates only")
        mean = [sum(w * math.log(max(r.probs[label], FLOOR)) for w, r in zip(weights, rows)) / total
                for label in labels]
        top = max(mean)
        norm = top + math.log(sum(math.exp(v - top) for v in mean))
        probs = {label: float(f"{math.exp(v - norm):.6g}") for label, v in zip(labels, mean)}
        out.append(Prediction(index=index, gold=rows[0].gold, pred=max(labels, key=probs.__getitem__), probs=probs,
                              truncated=any(r.truncated for r in rows)))
    return out
