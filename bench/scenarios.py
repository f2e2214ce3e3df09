"""The benchmark scenarios: which template, data, model kind and methods each one runs.

A scenario that promptcli cannot run yet is listed with the reason, and the table shows
it as "not available yet" (never a number). When few-shot, CoT or tuning lands, fill in its
template and methods here (and, for a new kind of measurement, a method in `measure.py`).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Scenario:
    key: str
    title: str  # short: it is the table's first column
    kind: str  # mlm | causal: which --*-model it uses
    template: Path | None = None
    data: str | None = None  # relative to --data-dir
    methods: tuple[str, ...] = ("raw", "promptcli")
    missing: str | None = None  # why it cannot run yet
    targets: tuple[tuple[str, float], ...] = ()  # (ratio name, minimum): promptcli vs raw / lm-eval


SCENARIOS: dict[str, Scenario] = {s.key: s for s in [
    Scenario("a", "MLM, 1-token words, SST-2", "mlm", HERE / "templates/sst2-mlm.yaml", "sst2/dev.jsonl",
             targets=(("raw", 0.9),)),
    Scenario("b", "causal, 1-token words, SST-2", "causal", HERE / "templates/sst2-causal.yaml",
             "sst2/dev.jsonl", ("raw", "promptcli", "lmeval"), targets=(("raw", 0.9), ("lmeval", 1.0))),
    Scenario("c", "causal, 5 labels × 2–4 tokens, SST-5", "causal", HERE / "templates/sst5-causal-phrases.yaml",
             "sst5/test.jsonl", ("raw", "promptcli", "lmeval"), targets=(("raw", 0.9), ("lmeval", 2.0))),
    Scenario("d", "causal, 16 shared demos", "causal",
             missing="needs few-shot demonstrations in promptcli", targets=(("raw", 0.9), ("lmeval", 3.0))),
    Scenario("e", "self-consistency, N=5", "causal", missing="needs CoT / self-consistency in promptcli",
             targets=(("raw", 0.9),)),
    Scenario("f", "soft-prompt steps/s vs PEFT", "causal", missing="needs soft-prompt tuning in promptcli"),
]}

METHOD_NAMES = {"raw": "raw forward", "raw-naive": "raw, full logits", "promptcli": "promptcli",
                "lmeval": "lm-eval"}
