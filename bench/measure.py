"""One method of one scenario, in its own process (so its peak RSS is its own).

The parent starts one process per method, each of which loads what it needs, does one
warm-up run (not kept), says `ready` and waits. The parent then asks the processes for one
timed run each, in turn, round after round (the order rotating), so a slow spell of a
shared machine hits every method alike and no two runs ever overlap. After the last round
each process reads its peak RSS, computes what the agreement checks need (predictions,
token ids and log-scores on a sample) and writes its result file.
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

REPLY = "@@bench "  # marks the protocol's lines on stdout (libraries may print there too)
Setup = Callable[[dict], tuple[Callable[[], float], Callable[[], dict]]]


def peak_rss_mb() -> float:
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(kb / (1024 * 1024 if sys.platform == "darwin" else 1024), 1)


def measure_promptcli(job: dict) -> tuple[Callable[[], float], Callable[[], dict]]:
    """`promptcli.run` as a user calls it; its time is the whole call minus loading the weights."""
    import promptcli

    work = Path(job["workdir"]) / "promptcli-runs"
    counter = itertools.count()
    last: dict = {}
    scoring: list[float] = []

    def once() -> float:
        out = work / f"run-{next(counter)}"
        start = time.perf_counter()
        # no score cache: every timed run computes its scores (a cached run would time a file read)
        result = promptcli.run(job["template"], job["data"], job["model"], out=out, progress=False, cache=False,
                               batch_size=job["batch_size"], limit=job["rows"], device="cpu", dtype="float32",
                               train=job.get("train"))
        wall = time.perf_counter() - start
        last["result"] = result
        scoring.append(result.record.timing["scoring_s"])
        shutil.rmtree(out, ignore_errors=True)
        return wall - result.record.timing["load_model_s"]

    def finish() -> dict:
        result = last["result"]
        return {"loop_seconds": scoring[1:], "examples": len(result.predictions),  # [0] was the warm-up
                "work": result.record.work, "accuracy": result.accuracy,
                "predictions": {p.index: {"pred": p.pred, "probs": list(p.probs.values())}
                                for p in result.predictions},
                **(sample_scores(job) if job["sample"] else {})}

    return once, finish


def sample_scores(job: dict) -> dict:
    """promptcli's token ids and raw word log-scores (normalize none and chars) on the first rows."""
    from promptcli.evaluation.batches import plan_batches
    from promptcli.models.weights import load_model
    from promptcli.evaluation.inputs import prepare
    from promptcli.scoring import make_scorer
    from promptcli.scoring.labels import combine
    from promptcli.spec.runconfig import ScoringConfig

    from .floor import run_config

    prepared = prepare(run_config(job, limit=job["sample"]))
    loaded = load_model(prepared.info, device="cpu", dtype="float32")
    labels = prepared.verbalizer.labels
    out: dict = {}
    for normalize in ("none", "chars"):
        scorer = make_scorer(loaded, ScoringConfig(batch_size=job["batch_size"], normalize=normalize,
                                                    multi_token=prepared.verbalizer.multi_token))
        with torch.inference_mode():
            if loaded.kind == "causal":  # fixed demonstrations: their prefix once, as `run` does
                scorer.share_prefix([e.context for e in prepared.encoded])
            for batch in plan_batches(prepared.encoded, job["batch_size"]):
                for enc, row in zip(batch, combine(prepared.verbalizer, scorer.word_scores(batch)).tolist()):
                    entry = out.setdefault(enc.index, {
                        "context": list(enc.context), "conts": [list(w + enc.suffix) for w in enc.words.ids]})
                    best = labels[max(range(len(row)), key=lambda k: row[k])]
                    if normalize == "none":
                        entry.update(scores=row, pred=best)
                    else:
                        entry["pred_norm"] = best
    return {"sample": out}


def method_setups() -> dict[str, Setup]:
    """Every method's setup, by the key scenarios name it with."""
    from .floor import measure_floor
    from .floor_generate import measure_generate_floor
    from .lmeval_task import measure_lmeval
    from .prompt_tuning import measure_peft, measure_promptcli_tune

    return {"raw": measure_floor, "raw-naive": measure_floor, "promptcli": measure_promptcli, "lmeval": measure_lmeval,
            "raw-generate": measure_generate_floor, "peft": measure_peft, "promptcli-tune": measure_promptcli_tune}


def child(job_path: str, result_path: str) -> None:
    job = json.loads(Path(job_path).read_text())
    if job.get("threads"):
        torch.set_num_threads(job["threads"])
    once, finish = method_setups()[job["method"]](job)
    once()  # warm-up
    say("ready")
    seconds = []
    for line in sys.stdin:
        if line.strip() != "run":
            break
        seconds.append(once())
        say(seconds[-1])
    rss = peak_rss_mb()
    result = {**finish(), "seconds": seconds, "peak_rss_mb": rss, "torch_threads": torch.get_num_threads()}
    Path(result_path).write_text(json.dumps(result))


def say(message) -> None:
    print(REPLY + json.dumps(message), flush=True)
