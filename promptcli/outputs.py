"""The output folder: predictions streamed as they are produced, metrics, and run.json.

Predictions are appended and flushed batch by batch, so an interrupted run keeps what it
computed; `resume` reads them back (dropping a half-written last line) and the finished
file is rewritten in row order, identical to an uninterrupted run's.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable

from .errors import RunError

PREDICTIONS = "predictions.jsonl"
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


def write_json(path: Path, data: Any) -> None:
    """Write atomically: a crash leaves the old file or the new one, never half of one."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunError(f"{path.name} not found in {path.parent}", path=str(path)) from None
    except json.JSONDecodeError as exc:
        raise RunError(f"{path.name} is not valid JSON: {exc.msg}", path=str(path), line=exc.lineno) from None


def prepare_new(out: Path) -> None:
    if out.exists() and any(out.iterdir()):
        raise RunError("the output folder already exists and is not empty", path=str(out),
                       hint=f"pass a new --out, or --resume {out} to continue that run")
    out.mkdir(parents=True, exist_ok=True)


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


def finalize_predictions(path: Path, predictions: list[Prediction]) -> None:
    """Rewrite the streamed file with `predictions` (given in row order), atomically."""
    tmp = path.with_suffix(".jsonl.tmp")
    tmp.write_text("".join(p.to_json() + "\n" for p in predictions),
                   encoding="utf-8")
    os.replace(tmp, path)
