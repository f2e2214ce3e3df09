"""The benchmark scenarios: which template, data, model kind and methods each one runs.

The first method of a scenario is its baseline (the "× base" column): the hand-written floor
(raw forward, raw generate loop) or, for soft-prompt training, PEFT. promptcli's method is
the one whose key starts with `promptcli`. A scenario that promptcli cannot run is listed
with the reason in `missing`, and the table shows it as "not available yet" (never a number).
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
    targets: tuple[tuple[str, float], ...] = ()  # (other method, minimum): promptcli's rate ≥ minimum × other's
    train: str | None = None  # demonstrations (d) or training rows (f), relative to --data-dir
    max_rows: int | None = None  # a cap on --rows where every row is costly (long prompts, generation)
    quick_rows: int = 32  # rows under --quick (with 2-layer models)
    batch_size: int | None = None  # overrides --batch-size for every method (lm-eval's full logits need room)
    unit: str = "ex"  # what the rate counts: examples, or optimizer steps


SCENARIOS: dict[str, Scenario] = {s.key: s for s in [
    Scenario("a", "MLM, 1-token words, SST-2", "mlm", HERE / "templates/sst2-mlm.yaml", "sst2/dev.jsonl",
             targets=(("raw", 0.9),)),
    Scenario("b", "causal, 1-token words, SST-2", "causal", HERE / "templates/sst2-causal.yaml",
             "sst2/dev.jsonl", ("raw", "promptcli", "lmeval"), targets=(("raw", 0.9), ("lmeval", 1.0))),
    Scenario("c", "causal, 5 labels × 2–4 tokens, SST-5", "causal", HERE / "templates/sst5-causal-phrases.yaml",
             "sst5/test.jsonl", ("raw", "promptcli", "lmeval"), targets=(("raw", 0.9), ("lmeval", 2.0))),
    Scenario("d", "causal, 16 shared demos, SST-2", "causal", HERE / "templates/sst2-causal-fewshot16.yaml",
             "sst2/dev.jsonl", ("raw", "promptcli", "lmeval"), targets=(("raw", 0.9), ("lmeval", 3.0)),
             train="sst2/train-16-13.jsonl", max_rows=64, quick_rows=8, batch_size=8),
    Scenario("e", "self-consistency, N=5, 32 new tokens", "causal", HERE / "templates/sst2-self-consistency.yaml",
             "sst2/dev.jsonl", ("raw-generate", "promptcli"), targets=(("raw-generate", 0.9),), max_rows=64,
             quick_rows=8),
    Scenario("f", "soft prompt (20 tokens) training", "causal", HERE / "templates/sst2-causal.yaml",
             methods=("peft", "promptcli-tune"), train="sst2/train-16-13.jsonl", unit="steps"),
]}

METHOD_NAMES = {"raw": "raw forward", "raw-naive": "raw, full logits", "promptcli": "promptcli",
                "lmeval": "lm-eval", "raw-generate": "raw generate loop", "peft": "PEFT + hand loop",
                "promptcli-tune": "promptcli tune"}


def promptcli_method(methods) -> str | None:
    """The key of promptcli's own method among `methods` (None when it did not run)."""
    return next((m for m in methods if m.startswith("promptcli")), None)
