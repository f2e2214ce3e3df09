"""Encoded examples → predictions, streamed to disk batch by batch.

Batches are formed from the examples sorted by length (longest first, so a memory problem
shows at once), so padding stays small; the plan depends only on the data and the batch
size, so a resumed run recomputes exactly the batches an uninterrupted run had. Several
processes (`torchrun`, `accelerate launch`) deal the same plan's batches out in turn (process r
takes batches r, r + N, r + 2N, …): every process gets long and short batches alike, and every
row is scored in the very batch a single process would have given it, so the scores are the same
bit for bit.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch
from rich.progress import Progress

from ..models.processes import Processes
from ..models.weights import LoadedModel
from ..progress import progress_bar
from ..prompt.encode import Encoded
from ..store.scores import ScoreCache
from .inputs import Prepared
from .outputs import Prediction, PredictionWriter
from .predict import GenerativePredictor, ScorePredictor


@dataclass
class Evaluation:
    predictions: list[Prediction]
    computed: int  # examples predicted in this call (not read back from an earlier run)
    seconds: float
    calls: int
    sequences: int
    positions: int
    prefills: int
    shared_prefix: int  # tokens of prompt prefix computed once for all examples
    calibration: dict

    def summed(self, processes: Processes) -> Evaluation:
        """The work of all processes together (the slowest one's time)."""
        if processes.world == 1:
            return self
        computed, calls, sequences, positions, prefills = processes.total(
            [self.computed, self.calls, self.sequences, self.positions, self.prefills])
        (seconds,) = processes.most([self.seconds])
        return Evaluation(self.predictions, int(computed), seconds, int(calls), int(sequences), int(positions),
                          int(prefills), self.shared_prefix, self.calibration)

    def work(self) -> dict[str, float]:
        """What the model did: batched calls, sequences (forward passes) and token positions."""
        per = max(self.computed, 1)
        return {"model_calls": self.calls, "forward_passes": self.sequences, "positions": self.positions,
                "forward_passes_per_example": round(self.sequences / per, 4),
                "positions_per_example": round(self.positions / per, 2),
                "prefills_per_example": round(self.prefills / per, 4), "shared_prefix_tokens": self.shared_prefix}


def plan_batches(encoded: Sequence[Encoded], batch_size: int) -> list[list[Encoded]]:
    order = sorted(encoded, key=lambda e: (-e.length, e.index))
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


class PeerLines:
    """Lines the other processes have streamed so far, read incrementally (each byte once)."""

    def __init__(self, paths: Sequence[Path]):
        self.offsets = {path: 0 for path in paths}
        self.lines = 0

    def count(self) -> int:
        for path, offset in self.offsets.items():
            if path.exists():
                with path.open("rb") as handle:
                    handle.seek(offset)
                    chunk = handle.read()
                self.offsets[path] = offset + len(chunk)
                self.lines += chunk.count(b"\n")
        return self.lines


def evaluate(prepared: Prepared, load: Callable[[], LoadedModel], path: Path,
             done: list[Prediction], progress: bool | Progress, cache: ScoreCache | None = None,
             on_batch: Callable[[int, int], None] | None = None, processes: Processes = Processes(),
             peers: Sequence[Path] = ()) -> Evaluation:
    """Predict this process's share of the batches not in `done`, streaming them to `path`; the progress
    bar also counts the lines the other processes have streamed to `peers`."""
    finished = {p.index: p for p in done}
    others = PeerLines(peers)
    before = others.count()  # lines already there (an earlier run's) are in `done`
    writer = PredictionWriter(path)
    computed = 0
    start = time.perf_counter()
    scoring = None
    try:
        with torch.inference_mode():
            scoring = ScorePredictor(prepared, load, cache if not prepared.template.generative else None)
            predict = GenerativePredictor(prepared, scoring) if prepared.template.generative else scoring
            with progress_bar(progress, prepared.template.name, len(prepared.encoded)) as bar:
                bar.advance(len(finished))
                plan = plan_batches(prepared.encoded, prepared.config.batch_size)
                for batch in plan[processes.rank::processes.world]:
                    if all(e.index in finished for e in batch):
                        continue
                    new = [p for p in predict(batch) if p.index not in finished]
                    writer.write(new)
                    finished.update((p.index, p) for p in new)
                    computed += len(new)
                    bar.update(completed=len(finished) + others.count() - before)
                    if on_batch is not None:
                        on_batch(len(finished), len(prepared.encoded))
    finally:
        writer.close()
        if scoring is not None:
            scoring.close()
    scorer = scoring._scorer
    return Evaluation(predictions=list(finished.values()), computed=computed, seconds=time.perf_counter() - start,
                      calls=scorer.calls if scorer else 0, sequences=scorer.sequences if scorer else 0,
                      positions=scorer.positions if scorer else 0, prefills=scorer.prefills if scorer else 0,
                      shared_prefix=scoring.shared_prefix,
                      calibration=scoring.record())
