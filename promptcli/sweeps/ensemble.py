"""Ensembles: the mean of label log-probabilities over several templates, optionally weighted.

Members must have scored the same examples with the same labels. Weights (e.g. each
template's dev accuracy) are normalised to sum to one.
"""
from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Sequence

from ..errors import RunError
from ..evaluation.leaderboard import Scored
from ..evaluation.metrics import classification_metrics
from ..evaluation.outputs import METRICS, PREDICTIONS, Prediction, write_predictions
from ..files import write_json
from ..models.processes import Processes
from ..spec.loading import load_template
from ..spec.sweepfile import SweepSpec
from .variants import Variant, group_name, template_labels

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


def accuracy(scored: Scored) -> float:
    """A member's weight in a weighted ensemble: its accuracy on the rows it was ranked on."""
    return classification_metrics([p.gold for p in scored.predictions], [p.pred for p in scored.predictions],
                                  scored.labels)["accuracy"]


def ensembles(results: dict[Variant, Scored], names: dict[Variant, str], spec: SweepSpec, out: Path) -> list[Scored]:
    """One ensemble per setting of the other axes, over the templates that scored it; each written to
    `ensembles/<name>/` (predictions, metrics, members)."""
    groups: dict[tuple, list[tuple[Variant, Scored]]] = {}
    for variant, scored in results.items():
        if any(p.pred is None for p in scored.predictions) or load_template(variant.template).generative:
            continue
        key = (variant.verbalizer, variant.model, variant.shots, variant.seed, variant.normalize, variant.calibrate,
               tuple(scored.labels))
        groups.setdefault(key, []).append((variant, scored))
    made = []
    labels_of = template_labels([v.template for v in names])
    for key, members in groups.items():
        if len(members) < 2:
            continue
        labels = list(key[-1])
        weights = [accuracy(s) for _, s in members] if spec.weighted else None
        predictions = ensemble([s.predictions for _, s in members], labels, weights)
        first = members[0][0]
        name = names[first].replace(labels_of[first.template], "ensemble" + ("(weighted)" if spec.weighted else ""), 1)
        if Processes.current().main:  # every process computes the ensemble; the first writes it
            folder = out / "ensembles" / re.sub(r"[^\w.=-]+", "_", name)
            folder.mkdir(parents=True, exist_ok=True)
            write_predictions(folder / PREDICTIONS, predictions)
            write_json(folder / METRICS, classification_metrics([p.gold for p in predictions],
                                                                [p.pred for p in predictions], labels))
            write_json(folder / "members.json", {"members": [names[v] for v, _ in members], "weights": weights})
        rate = 1 / sum(1 / max(s.examples_per_s, 1e-9) for _, s in members)
        made.append(Scored(name=name, group=group_name(name), labels=labels, predictions=predictions,
                           examples_per_s=rate))
    return made
