"""Word scores → a distribution over the verbalizer's labels: the one road for `run`, `tune` and its dev
evaluation, so a soft prompt is trained on exactly the distribution it is evaluated with.

1. PMI (Holtzman et al., 2021), causal models: each word's score minus its score after the domain premise;
2. the verbalizer: a label's score is the log of the mean / max / sum of its words' probabilities;
3. softmax over the labels only (the arg-max can never be a word outside the verbalizer);
4. contextual calibration (Zhao et al., 2021): divide by p_cf, the mean distribution of content-free
   inputs through the same prompt, and renormalise.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from ..prompt.encode import Encoded
from ..prompt.verbalizer import Verbalizer
from ..spec.runconfig import ScoringConfig


def combine(verbalizer: Verbalizer, word_scores: torch.Tensor) -> torch.Tensor:
    """(B, W) word log-scores → (B, L) label log-scores: log of mean / max / sum of word probabilities."""
    membership = torch.zeros(len(verbalizer.words), len(verbalizer.labels), dtype=word_scores.dtype,
                             device=word_scores.device)  # (W, L) one-hot: which label each word belongs to
    membership[torch.arange(len(verbalizer.words)), torch.tensor(verbalizer.word_label)] = 1.0
    masked = word_scores[:, :, None] + membership.log()[None]  # (B, W, L)
    if verbalizer.aggregate == "max":
        return masked.max(dim=1).values
    total = torch.logsumexp(masked, dim=1)
    if verbalizer.aggregate == "sum":
        return total
    return total - membership.sum(0).log()


def calibrate(log_probs: torch.Tensor, p_cf: torch.Tensor) -> torch.Tensor:
    """(B, L) label log-probs divided by the content-free distribution (L,), renormalised."""
    return (log_probs - p_cf.log().to(log_probs)).log_softmax(-1)


@dataclass
class LabelDistribution:
    verbalizer: Verbalizer
    premise: torch.Tensor | None = None  # (W,) word scores after the domain premise (PMI)
    p_cf: torch.Tensor | None = None  # (L,) content-free label distribution (calibration)

    def __call__(self, word_scores: torch.Tensor, calibrated: bool = True) -> torch.Tensor:
        """(B, W) word scores → (B, L) label log-probabilities."""
        if self.premise is not None:
            word_scores = word_scores - self.premise
        log_probs = combine(self.verbalizer, word_scores).log_softmax(-1)
        if calibrated and self.p_cf is not None:
            log_probs = calibrate(log_probs, self.p_cf)
        return log_probs

    @classmethod
    def fit(cls, verbalizer: Verbalizer, scoring: ScoringConfig,
            word_scores: Callable[[Sequence[Encoded]], torch.Tensor], premise: Encoded | None,
            content_free: Sequence[Encoded]) -> LabelDistribution:
        """The terms a template × model (× soft prompt) needs, from the same word scorer as the examples."""
        dist = cls(verbalizer)
        if scoring.normalize == "pmi":
            dist.premise = word_scores([premise])[0]
        if scoring.calibrate == "contextual" and content_free:
            dist.p_cf = dist(word_scores(content_free)).exp().mean(0)
        return dist
