"""Encoded examples → label distributions → predictions, streamed to disk batch by batch.

Batches are formed from the examples sorted by length (longest first, so a memory
problem shows at once), so padding stays small; the plan depends only on the data and
the batch size, so a resumed run recomputes exactly the batches an uninterrupted run had.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import torch

from .encode import Encoded
from .models import LoadedModel
from .outputs import Prediction, PredictionWriter
from .progress import progress_bar
from .scoring import Scorer, make_scorer
from .scoring.base import ScoringOptions
from .verbalizer import Verbalizer

if TYPE_CHECKING:
    from .runner import Prepared, RunConfig


@dataclass
class Evaluation:
    predictions: list[Prediction]
    computed: int  # examples scored in this call (not read back from an earlier run)
    seconds: float
    calls: int
    sequences: int
    positions: int

    def work(self) -> dict[str, float]:
        """What the model did: batched calls, sequences (forward passes) and token positions."""
        per = max(self.computed, 1)
        return {"model_calls": self.calls, "forward_passes": self.sequences, "positions": self.positions,
                "forward_passes_per_example": round(self.sequences / per, 4),
                "positions_per_example": round(self.positions / per, 2)}


def plan_batches(encoded: Sequence[Encoded], batch_size: int) -> list[list[Encoded]]:
    order = sorted(encoded, key=lambda e: (-e.length, e.index))
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


def label_log_probs(scorer: Scorer, verbalizer: Verbalizer, batch: Sequence[Encoded]) -> torch.Tensor:
    """(B, L) log-probabilities over the verbalizer's labels only."""
    return verbalizer.combine(scorer.word_scores(batch)).log_softmax(-1)


def evaluate(prepared: Prepared, loaded: LoadedModel, config: RunConfig, path: Path, done: list[Prediction],
             progress: bool, on_batch: Callable[[int, int], None] | None = None) -> Evaluation:
    verbalizer = prepared.verbalizer
    normalize = config.normalize or prepared.template.spec.scoring.normalize
    scorer = make_scorer(loaded, ScoringOptions(batch_size=config.batch_size, multi_token=verbalizer.multi_token,
                                                normalize=normalize))
    gold = {e.index: e.gold for e in prepared.dataset.examples}
    finished = {p.index: p for p in done}
    labels = verbalizer.labels
    writer = PredictionWriter(path)
    computed = 0
    start = time.perf_counter()
    try:
        with torch.inference_mode(), progress_bar(progress, prepared.template.name, len(prepared.encoded)) as bar:
            bar.advance(len(finished))
            for batch in plan_batches(prepared.encoded, config.batch_size):
                todo = [e for e in batch if e.index not in finished]
                if not todo:
                    continue
                probs = label_log_probs(scorer, verbalizer, batch).exp()
                new = []
                for enc, row in zip(batch, probs.tolist()):
                    if enc.index in finished:
                        continue
                    best = max(range(len(labels)), key=lambda k: row[k])
                    new.append(Prediction(index=enc.index, gold=gold[enc.index], pred=labels[best],
                                          probs={label: round(p, 6) for label, p in zip(labels, row)},
                                          truncated=enc.truncated))
                writer.write(new)
                finished.update((p.index, p) for p in new)
                computed += len(new)
                bar.advance(len(new))
                if on_batch is not None:
                    on_batch(len(finished), len(prepared.encoded))
    finally:
        writer.close()
    return Evaluation(predictions=list(finished.values()), computed=computed,
                      seconds=time.perf_counter() - start, calls=scorer.calls, sequences=scorer.sequences,
                      positions=scorer.positions)
