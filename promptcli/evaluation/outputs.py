"""The output folder: predictions streamed as they are produced, metrics, and run.json.

Predictions are appended and flushed batch by batch, so an interrupted run keeps what it
computed; `resume` reads them back (dropping a half-written last line) and the finished
file is rewritten in row order, identical to an uninterrupted run's. With several processes each
streams to its own `predictions.rank<R>.jsonl`; the first merges them into `predictions.jsonl` at
the end and removes them (a resumed run reads whichever files are there, with any number of processes).
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable

from ..errors import RunError
from ..files import remove, write_text

PREDICTIONS = "predictions.jsonl"
RANK_FILES = "predictions.rank*.jsonl"
METRICS = "metrics.json"
RUN = "run.json"


@dataclass(frozen=True)
class Prediction:
    index: int
    gold: str | None
    pred: str | None  # None: the model's answer mapped to no label (an abstention)
    probs: dict[str, float]
    truncated: bool
    # generation kinds only (left out of the file otherwise)
    abstained: bool | None = None
    reasoning: str | list[str] | None = None
    answers: list[str | None] | None = None  # self-consistency: each path's label
    agreement: float | None = None  # self-consistency: share of paths that agree with `pred`
    tie: bool | None = None  # self-consistency: the vote was tied, `pred` is the first tied label

    def to_json(self) -> str:
        data = {k: v for k, v in asdict(self).items() if v is not None or k in ("gold", "pred")}
        return json.dumps(data, ensure_ascii=False)


def check_new(out: Path) -> None:
    """A new run's folder must not exist, or be empty."""
    if out.exists() and not out.is_dir():
        raise RunError("the output folder is a file", path=str(out), hint="pass a folder to --out")
    if out.exists() and any(out.iterdir()):
        raise RunError("the output folder already exists and is not empty", path=str(out),
                       hint=f"pass a new --out, or --resume {out} to continue that run")


def prepare_new(out: Path) -> None:
    check_new(out)
    out.mkdir(parents=True, exist_ok=True)


def prediction_files(out: Path, processes: int) -> list[Path]:
    """Where each process streams its predictions."""
    if processes == 1:
        return [out / PREDICTIONS]
    return [out / RANK_FILES.replace("*", str(rank)) for rank in range(processes)]


def remove_rank_files(out: Path) -> None:
    for path in out.glob(RANK_FILES):
        remove(path)


def read_predictions(path: Path) -> list[Prediction]:
    """Predictions written so far; a torn last line (the run was killed mid-write) is dropped."""
    if not path.exists():
        return []
    good: list[Prediction] = []
    keep_bytes = 0
    with path.open("rb") as handle:
        for raw in handle:
            if not raw.endswith(b"\n"):
                break
            try:
                good.append(Prediction(**json.loads(raw)))
            except (json.JSONDecodeError, TypeError):
                break
            keep_bytes += len(raw)
    if keep_bytes != path.stat().st_size:
        with path.open("r+b") as handle:
            handle.truncate(keep_bytes)
    return good


class PredictionWriter:
    """Appends one batch of predictions at a time, flushed to disk before returning."""

    def __init__(self, path: Path):
        self.path = path
        self._handle = path.open("a", encoding="utf-8")

    def write(self, predictions: Iterable[Prediction]) -> None:
        text = "".join(p.to_json() + "\n" for p in predictions)
        if text:
            self._handle.write(text)
            self._handle.flush()
            os.fsync(self._handle.fileno())

    def close(self) -> None:
        self._handle.close()


def write_predictions(path: Path, predictions: Iterable[Prediction]) -> None:
    """Write the whole file (the streamed one rewritten in row order, an ensemble's), atomically."""
    write_text(path, "".join(p.to_json() + "\n" for p in predictions))
