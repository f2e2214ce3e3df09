"""Which way of asking works best, and is the difference real?

Each leaderboard row is a variant (its seeds together: value = mean over seeds, with their
std). The 95% interval is a percentile bootstrap over examples (1,000 resamples, seeded); the
same resampled example sets serve every variant, so comparisons are paired. Each row is compared
with the best by McNemar's exact test (accuracy, one seed each) or else by a paired bootstrap of the
metric's difference (two-sided). With many variants some would look "significantly worse" by chance,
so the p-values are adjusted for the number of comparisons (Holm by default, which bounds the chance
of any false "worse"; Benjamini–Hochberg, which bounds the share of false ones, on request): a row is
significantly worse when its adjusted p < 0.05, and the rows that are not are *tied with the best*.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

import torch

from . import stats
from .outputs import Prediction

HIGHER_IS_BETTER = {"accuracy": True, "macro_f1": True, "ece": False, "log_loss": False}
ALPHA = 0.05
CORRECTIONS = {"holm": stats.holm, "bh": stats.benjamini_hochberg, "none": list}
CORRECTION_NAMES = {"holm": "Holm", "bh": "Benjamini–Hochberg", "none": "no correction"}


@dataclass
class Scored:
    """A finished variant: its predictions and what the report needs about it."""

    name: str
    group: str  # the name without the seed: seeds of one variant share a group
    labels: list[str]
    predictions: list[Prediction]
    examples_per_s: float
    agreement: dict | None = None
    cached: float = 0.0  # share of examples read from the score cache (their speed is the cache's)


@dataclass
class Row:
    rank: int
    variant: str
    metric: str
    value: float
    std: float
    low: float
    high: float
    seeds: int
    n: int
    examples_per_s: float
    p_value: float | None  # against the best row
    test: str | None
    significant: bool | None  # adjusted p < ALPHA
    accuracy: float
    macro_f1: float
    ece: float
    log_loss: float
    cached: float = 0.0  # share of examples read from the score cache
    p_adjusted: float | None = None  # p_value adjusted for the number of comparisons with the best
    correction: str = "none"
    tied: bool = True  # the best, or not significantly worse than it

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Row:
        return cls(**data)


class Columns:
    """One run's predictions as aligned per-example tensors, so metrics vectorise over resamples."""

    def __init__(self, predictions: Sequence[Prediction], labels: Sequence[str]):
        index = {label: i for i, label in enumerate(labels)}
        self.gold = torch.tensor([index[p.gold] for p in predictions], dtype=torch.long)
        self.pred = torch.tensor([index[p.pred] if p.pred is not None else -1 for p in predictions], dtype=torch.long)
        probs = torch.tensor([[p.probs.get(label, 0.0) for label in labels] for p in predictions], dtype=torch.float64)
        self.correct = (self.gold == self.pred).double()
        self.confidence = probs.max(1).values if len(predictions) else torch.zeros(0, dtype=torch.float64)
        self.loss = -probs.gather(1, self.gold[:, None])[:, 0].clamp(min=1e-12).log()
        self.n_labels = len(labels)

    def metric(self, name: str, idx: torch.Tensor) -> torch.Tensor:
        """The metric on each resample: idx (R, n) example indices → (R,)."""
        if name == "accuracy":
            return stats.accuracy(self.correct, idx)
        if name == "log_loss":
            return stats.log_loss(self.loss, idx)
        if name == "ece":
            return stats.ece(self.correct, self.confidence, idx)
        if name == "macro_f1":
            return stats.class_scores(stats.confusion(self.gold, self.pred, self.n_labels, idx)).macro_f1
        raise ValueError(f"unknown metric '{name}' (one of: {', '.join(HIGHER_IS_BETTER)})")


def align(entries: Sequence[Scored]) -> list[int]:
    """The examples every variant predicted (normally all of them)."""
    common = set.intersection(*({p.index for p in e.predictions} for e in entries))
    return sorted(common)


def leaderboard(entries: Sequence[Scored], metric: str = "accuracy", resamples: int = 1000, seed: int = 0,
                correction: str = "holm") -> list[Row]:
    if metric not in HIGHER_IS_BETTER:
        raise ValueError(f"unknown metric '{metric}' (one of: {', '.join(HIGHER_IS_BETTER)})")
    if correction not in CORRECTIONS:
        raise ValueError(f"unknown correction '{correction}' (one of: {', '.join(CORRECTIONS)})")
    entries = [e for e in entries if e.predictions and all(p.gold is not None for p in e.predictions)]
    if not entries:
        return []
    keep = align(entries)
    groups: dict[str, list[Scored]] = {}
    for entry in entries:
        groups.setdefault(entry.group, []).append(entry)
    columns = {name: [Columns(_subset(e.predictions, keep), e.labels) for e in members]
               for name, members in groups.items()}
    n = len(keep)
    full = stats.full(n)
    boot = stats.resample_indices(n, resamples, seed)  # (R, n): shared by every variant

    def value(name: str, which: str, idx: torch.Tensor) -> torch.Tensor:  # mean over seeds
        return torch.stack([c.metric(which, idx) for c in columns[name]]).mean(0)

    summary = {}
    for name, cols in columns.items():
        per_seed = [float(c.metric(metric, full)[0]) for c in cols]
        mean = sum(per_seed) / len(per_seed)
        std = (sum((v - mean) ** 2 for v in per_seed) / (len(per_seed) - 1)) ** 0.5 if len(per_seed) > 1 else 0.0
        samples = value(name, metric, boot)
        low, high = torch.quantile(samples, torch.tensor([ALPHA / 2, 1 - ALPHA / 2], dtype=samples.dtype)).tolist()
        summary[name] = (mean, std, low, high, samples)
    better = HIGHER_IS_BETTER[metric]
    order = sorted(summary, key=lambda name: (-summary[name][0] if better else summary[name][0], name))
    best = order[0]
    tests = {name: _compare(columns[best], columns[name], summary[best][4], summary[name][4], metric)
             for name in order[1:]}
    adjusted = dict(zip(tests, CORRECTIONS[correction]([p for p, _ in tests.values()])))
    rows = []
    for rank, name in enumerate(order, start=1):
        mean, std, low, high, _ = summary[name]
        p_value, test = tests.get(name, (None, None))
        p_adjusted = adjusted.get(name)
        members = groups[name]
        rows.append(Row(rank=rank, variant=name, metric=metric, value=mean, std=std, low=low, high=high,
                        seeds=len(members), n=n,
                        examples_per_s=sum(e.examples_per_s for e in members) / len(members),
                        cached=sum(e.cached for e in members) / len(members), p_value=p_value,
                        test=test, significant=None if p_adjusted is None else p_adjusted < ALPHA,
                        p_adjusted=p_adjusted, correction=correction,
                        tied=p_adjusted is None or p_adjusted >= ALPHA,
                        **{m: float(value(name, m, full)[0]) for m in HIGHER_IS_BETTER}))
    return rows


def _compare(best: list[Columns], other: list[Columns], best_samples: torch.Tensor, samples: torch.Tensor,
             metric: str) -> tuple[float, str]:
    if metric == "accuracy" and len(best) == len(other) == 1:
        result = stats.mcnemar_exact(best[0].correct.bool().tolist(), other[0].correct.bool().tolist())
        return result.p_value, "mcnemar"
    diff = best_samples - samples
    resamples = diff.numel()
    low = (int((diff <= 0).sum()) + 1) / (resamples + 1)
    high = (int((diff >= 0).sum()) + 1) / (resamples + 1)
    return min(1.0, 2 * min(low, high)), "paired-bootstrap"


def _subset(predictions: Sequence[Prediction], keep: Sequence[int]) -> list[Prediction]:
    by_index = {p.index: p for p in predictions}
    return [by_index[i] for i in keep]
