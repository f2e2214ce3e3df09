"""Encoded examples → label distributions (or generated answers) → predictions, streamed to disk.

Batches are formed from the examples sorted by length (longest first, so a memory problem
shows at once), so padding stays small; the plan depends only on the data and the batch
size, so a resumed run recomputes exactly the batches an uninterrupted run had.
"""
from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import torch

from .answers import AnswerMap, extract, vote
from .encode import Encoded
from .generate import Decoding, Generator
from .models import LoadedModel
from .outputs import Prediction, PredictionWriter
from .progress import progress_bar
from .scoring import Scorer, make_scorer
from .scoring.base import ScoringOptions, chunks
from .verbalizer import Verbalizer

if TYPE_CHECKING:
    from .runner import Prepared, RunConfig

Predict = Callable[[list[Encoded]], list[Prediction]]


@dataclass
class Evaluation:
    predictions: list[Prediction]
    computed: int  # examples scored in this call (not read back from an earlier run)
    seconds: float
    calls: int
    sequences: int
    positions: int
    shared_prefix: int  # tokens of prompt prefix computed once for all examples

    def work(self) -> dict[str, float]:
        """What the model did: batched calls, sequences (forward passes) and token positions."""
        per = max(self.computed, 1)
        return {"model_calls": self.calls, "forward_passes": self.sequences, "positions": self.positions,
                "forward_passes_per_example": round(self.sequences / per, 4),
                "positions_per_example": round(self.positions / per, 2), "shared_prefix_tokens": self.shared_prefix}


def plan_batches(encoded: Sequence[Encoded], batch_size: int) -> list[list[Encoded]]:
    order = sorted(encoded, key=lambda e: (-e.length, e.index))
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


def label_log_probs(scorer: Scorer, verbalizer: Verbalizer, batch: Sequence[Encoded]) -> torch.Tensor:
    """(B, L) log-probabilities over the verbalizer's labels only."""
    return verbalizer.combine(scorer.word_scores(batch)).log_softmax(-1)


def _rounded(labels: Sequence[str], probs: Sequence[float]) -> dict[str, float]:
    return {label: round(float(p), 6) for label, p in zip(labels, probs)}


def evaluate(prepared: Prepared, loaded: LoadedModel, config: RunConfig, path: Path, done: list[Prediction],
             progress: bool, on_batch: Callable[[int, int], None] | None = None) -> Evaluation:
    verbalizer = prepared.verbalizer
    template = prepared.template
    scorer = make_scorer(loaded, ScoringOptions(
        batch_size=config.batch_size, multi_token=verbalizer.multi_token,
        normalize=config.normalize or template.spec.scoring.normalize, prefix_cache=config.prefix_cache))
    shared = 0
    if loaded.kind == "causal" and prepared.encoded:
        # the prefix every full prompt shares (instructions, fixed demonstrations); prompts that lost
        # demonstrations to the length limit don't share it and are computed whole
        full = [e.context for e in prepared.encoded if not e.dropped] or [e.context for e in prepared.encoded]
        with torch.inference_mode():
            shared = scorer.share_prefix(full)
    gold = {e.index: e.gold for e in prepared.dataset.examples}
    fields = {e.index: e.fields for e in prepared.dataset.examples}
    labels = verbalizer.labels

    def score(batch: list[Encoded]) -> list[Prediction]:
        probs = label_log_probs(scorer, verbalizer, batch).exp().tolist()
        return [Prediction(index=e.index, gold=gold[e.index], pred=labels[max(range(len(row)), key=row.__getitem__)],
                           probs=_rounded(labels, row), truncated=e.truncated) for e, row in zip(batch, probs)]

    predict: Predict = score
    if template.generative:
        samples = config.samples or getattr(template.spec, "samples", 1)
        decoding = Decoding.from_spec(template.spec.decoding, samples, config.seed or 0, strategy=config.strategy,
                                      temperature=config.temperature, top_k=config.top_k, top_p=config.top_p,
                                      max_new_tokens=config.max_new_tokens)
        predict = GenerativePredictor(prepared, scorer, Generator(loaded, scorer, decoding), gold, fields)

    finished = {p.index: p for p in done}
    writer = PredictionWriter(path)
    computed = 0
    start = time.perf_counter()
    try:
        with torch.inference_mode(), progress_bar(progress, template.name, len(prepared.encoded)) as bar:
            bar.advance(len(finished))
            for batch in plan_batches(prepared.encoded, config.batch_size):
                if all(e.index in finished for e in batch):
                    continue
                new = [p for p in predict(batch) if p.index not in finished]
                writer.write(new)
                finished.update((p.index, p) for p in new)
                computed += len(new)
                bar.advance(len(new))
                if on_batch is not None:
                    on_batch(len(finished), len(prepared.encoded))
    finally:
        writer.close()
    return Evaluation(predictions=list(finished.values()), computed=computed, seconds=time.perf_counter() - start,
                      calls=scorer.calls, sequences=scorer.sequences, positions=scorer.positions,
                      shared_prefix=shared)


class GenerativePredictor:
    """CoT / self-consistency: generate reasoning, then read the answer by pattern or by trigger scoring."""

    def __init__(self, prepared: Prepared, scorer: Scorer, generator: Generator, gold: dict, fields: dict):
        self.prepared, self.scorer, self.generator = prepared, scorer, generator
        self.gold, self.fields = gold, fields
        spec = prepared.template.spec
        self.pattern = re.compile(spec.answer_pattern) if spec.answer_pattern else None
        self.answers = AnswerMap(prepared.verbalizer)
        self.labels = prepared.verbalizer.labels
        self.self_consistency = spec.kind == "self-consistency"

    def __call__(self, batch: list[Encoded]) -> list[Prediction]:
        reasoning = self.generator.generate(batch)
        if self.pattern is not None:
            return [self._by_pattern(e, texts) for e, texts in zip(batch, reasoning)]
        return self._by_trigger(batch, reasoning)

    def _prediction(self, enc: Encoded, pred: str | None, probs: dict[str, float], texts: list[str],
                    answers: list, agreement: float) -> Prediction:
        sc = self.self_consistency
        return Prediction(index=enc.index, gold=self.gold[enc.index], pred=pred, probs=probs, truncated=enc.truncated,
                          abstained=pred is None, reasoning=texts if sc else texts[0],
                          answers=answers if sc else None, agreement=round(agreement, 6) if sc else None)

    def _by_pattern(self, enc: Encoded, texts: list[str]) -> Prediction:
        extracted = [extract(t, self.pattern) for t in texts]
        mapped = [self.answers.label(a) for a in extracted]
        result = vote(mapped, self.labels)
        return self._prediction(enc, result.pred, _rounded(self.labels, result.shares.values()), texts, mapped,
                                result.agreement)

    def _by_trigger(self, batch: list[Encoded], reasoning: list[list[str]]) -> list[Prediction]:
        """Score the label words after `prompt + reasoning + trigger` (the same causal scoring as `run`)."""
        encoder = self.prepared.encoder
        second = [encoder.split(self.prepared.renderer.after_reasoning(e.text, text, self.fields[e.index]))
                  for e, texts in zip(batch, reasoning) for text in texts]
        dists = []
        for group in chunks(second, self.generator.scorer.options.batch_size):
            dists.append(label_log_probs(self.scorer, self.prepared.verbalizer, group).exp())
        probs = torch.cat(dists).view(len(batch), -1, len(self.labels))  # (B, N, L)
        out = []
        for e, texts, per_sample in zip(batch, reasoning, probs):
            mean = per_sample.mean(0)
            pred = self.labels[int(mean.argmax())]
            own = [self.labels[int(p.argmax())] for p in per_sample]
            agreement = sum(label == pred for label in own) / len(own)
            out.append(self._prediction(e, pred, _rounded(self.labels, mean.tolist()), texts, own, agreement))
        return out
