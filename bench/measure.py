"""One method of one scenario, measured in its own process (so peak RSS is its own).

The parent writes a job (JSON), runs `scoring.py --child JOB RESULT`, and reads the result
back: the timed seconds of each repeat (after one warm-up run that is not kept), the peak
RSS at the end of the timed runs, and what the agreement checks need (predictions, token
ids and log-scores on a sample). Those extras are computed after the RSS is read.
"""
from __future__ import annotations

import itertools
import json
import resource
import shutil
import sys
import time
from pathlib import Path
from typing import Callable

import torch


class Clock:
    """`clock(once)` runs `once` warm-up + repeats times; keeps the repeats and the peak RSS after them."""

    def __init__(self, repeats: int, warmup: int = 1):
        self.repeats = repeats
        self.warmup = warmup
        self.peak_rss_mb = 0.0

    def __call__(self, once: Callable[[], float]) -> list[float]:
        for _ in range(self.warmup):
            once()
        seconds = [once() for _ in range(self.repeats)]
        self.peak_rss_mb = peak_rss_mb()
        return seconds


def peak_rss_mb() -> float:
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(kb / (1024 * 1024 if sys.platform == "darwin" else 1024), 1)


def measure_promptcli(job: dict, clock: Clock) -> dict:
    """`promptcli.run` as a user calls it; its time is the whole call minus loading the weights."""
    import promptcli

    work = Path(job["workdir"]) / "promptcli-runs"
    counter = itertools.count()
    last: dict = {}
    scoring: list[float] = []

    def once() -> float:
        out = work / f"run-{next(counter)}"
        start = time.perf_counter()
        result = promptcli.run(job["template"], job["data"], job["model"], out=out, progress=False,
                               batch_size=job["batch_size"], limit=job["rows"], device="cpu", dtype="float32")
        wall = time.perf_counter() - start
        last["result"] = result
        scoring.append(result.record["timing"]["scoring_s"])
        shutil.rmtree(out, ignore_errors=True)
        return wall - result.record["timing"]["load_model_s"]

    seconds = clock(once)
    result = last["result"]
    return {"seconds": seconds, "scoring_seconds": scoring[clock.warmup:], "examples": len(result.predictions),
            "work": result.record["work"], "accuracy": result.accuracy,
            "predictions": {p.index: {"pred": p.pred, "probs": list(p.probs.values())} for p in result.predictions},
            **(sample_scores(job) if job["sample"] and job["kind"] == "causal" else {})}


def sample_scores(job: dict) -> dict:
    """promptcli's token ids and raw word log-scores (normalize none and chars) on the first rows."""
    from promptcli.evaluate import plan_batches
    from promptcli.models import load_model
    from promptcli.runner import RunConfig, prepare
    from promptcli.scoring import make_scorer
    from promptcli.scoring.base import ScoringOptions

    config = RunConfig(template=job["template"], data=job["data"], model=job["model"], device="cpu",
                       dtype="float32", batch_size=job["batch_size"], limit=job["sample"])
    prepared = prepare(config)
    loaded = load_model(prepared.info, device="cpu", dtype="float32")
    labels = prepared.verbalizer.labels
    out: dict = {}
    for normalize in ("none", "chars"):
        scorer = make_scorer(loaded, ScoringOptions(batch_size=job["batch_size"], normalize=normalize,
                                                    multi_token=prepared.verbalizer.multi_token))
        with torch.inference_mode():
            for batch in plan_batches(prepared.encoded, job["batch_size"]):
                for enc, row in zip(batch, prepared.verbalizer.combine(scorer.word_scores(batch)).tolist()):
                    entry = out.setdefault(enc.index, {
                        "context": list(enc.context), "conts": [list(w + enc.suffix) for w in enc.words.ids]})
                    best = labels[max(range(len(row)), key=lambda k: row[k])]
                    if normalize == "none":
                        entry.update(scores=row, pred=best)
                    else:
                        entry["pred_norm"] = best
    return {"sample": out}


def child(job_path: str, result_path: str) -> None:
    job = json.loads(Path(job_path).read_text())
    from .floor import measure_floor
    from .lmeval_task import measure_lmeval

    methods = {"raw": measure_floor, "raw-naive": measure_floor, "promptcli": measure_promptcli,
               "lmeval": measure_lmeval}
    if job.get("threads"):
        torch.set_num_threads(job["threads"])
    clock = Clock(job["repeats"])
    result = methods[job["method"]](job, clock)
    result.update(peak_rss_mb=clock.peak_rss_mb, torch_threads=torch.get_num_threads())
    Path(result_path).write_text(json.dumps(result))
