"""Every closed set of option values, written once.

Template files, sweep files, `RunConfig`, `TuneConfig` and the CLI all take their allowed
values from these `Literal`s: the CLI's choices are `choices(Normalize)`, a sweep's value lists
are checked against them, and pydantic rejects anything else with the list of allowed values.
"""
from __future__ import annotations

import os
import re
from enum import Enum
from typing import Annotated, Literal, get_args

from pydantic import AfterValidator, BeforeValidator

Scorer = Literal["auto", "mlm", "causal"]
Normalize = Literal["none", "tokens", "chars", "pmi"]
Calibrate = Literal["none", "contextual"]
Aggregate = Literal["mean", "max", "sum"]
MultiToken = Literal["mean", "sum", "first"]
Select = Literal["random", "balanced", "first", "similar"]
Similarity = Literal["tfidf", "minilm", "model"]  # how `similar` measures nearness
Strategy = Literal["greedy", "sample"]
Dtype = Literal["auto", "float32", "bfloat16", "float16"]
DataFormat = Literal["jsonl", "json", "csv", "tsv"]
Correction = Literal["holm", "bh", "none"]  # multiple comparisons against the best
Metric = Literal["accuracy", "macro_f1", "ece", "log_loss"]
RunKind = Literal["run", "sweep"]
Init = Literal["random", "vocab", "text", "labels"]
TuneMethod = Literal["prompt", "p-tuning", "prefix"]
Parallel = Literal["auto", "rows", "variants"]
DeviceMap = Literal["auto", "balanced", "balanced_low_0", "sequential"]  # one model over several devices  # how a sweep shares its work among processes
EncoderKind = Literal["mlp", "lstm"]
Optimizer = Literal["adamw", "adafactor", "sgd"]
Schedule = Literal["linear", "cosine", "constant"]
Precision = Literal["fp32", "bf16", "fp16"]

DEVICE = re.compile(r"auto|cpu|mps|cuda(:\d+)?")


def _device(value: str) -> str:
    if not DEVICE.fullmatch(value):
        raise ValueError("is not one of: auto, cpu, cuda, cuda:N, mps")
    return value


Device = Annotated[str, AfterValidator(_device)]  # whether it is present is checked before a run writes anything


def _rows(value: str) -> str:
    from .selection import row_range

    row_range(value)  # raises ValueError with the reason
    return value


Rows = Annotated[str, AfterValidator(_rows)]

# A file or folder option: a str, or a pathlib.Path from the Python API (stored as text in run.json).
PathText = Annotated[str, BeforeValidator(lambda v: os.fspath(v) if isinstance(v, os.PathLike) else v)]

DEFAULT_BATCH_SIZE = 32  # examples per forward pass when scoring (run, sweep, tune's dev evaluation)


def values(literal: object) -> tuple[str, ...]:
    return get_args(literal)


def choices(literal: object, name: str) -> type[Enum]:
    """A str Enum of a Literal's values, for typer (which shows them in --help and checks them)."""
    return Enum(name, {v: v for v in values(literal)}, type=str)  # type: ignore[return-value]
