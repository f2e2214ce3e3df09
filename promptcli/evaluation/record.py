"""run.json: everything recorded about one run, as one dataclass that is serialised only when written.

The field order is the file's key order; optional parts (`store_id`, `stopped`, the results of
a finished run) are left out while they are None, as they were before the record had a type.
"""
from __future__ import annotations

import os
import socket
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping

from ..files import read_json, write_json

ALWAYS = ("status", "command", "started", "config", "template_name", "kind", "scorer", "labels", "hashes", "model",
          "versions", "counts", "skipped_rows", "score_cache", "process")


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass
class RunRecord:
    status: str  # running | interrupted | finished
    command: str | None
    started: str
    config: dict[str, Any]  # RunConfig's fields
    template_name: str
    kind: str
    scorer: str
    labels: list[str]
    hashes: dict[str, str]  # template, verbalizer, data, model_config, model (+ train, soft_prompt)
    model: dict[str, Any]  # name, path, gguf (file, sha256, quantization …) or None
    versions: dict[str, str]
    counts: dict[str, Any]
    skipped_rows: list[dict[str, Any]] = field(default_factory=list)
    score_cache: bool | str = True  # the score cache asked for (off, the default file, or a path): --resume keeps it
    process: dict[str, Any] = field(default_factory=lambda: {"pid": os.getpid(), "host": socket.gethostname()})
    store_id: int | None = None
    stopped: str | None = None
    finished: str | None = None
    resumed_rows: int | None = None
    timing: dict[str, float] | None = None
    memory: dict[str, float] | None = None
    work: dict[str, float] | None = None
    calibration: dict[str, Any] | None = None
    cache: dict[str, int] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k in ALWAYS or v is not None}

    def write(self, folder: Path) -> None:
        write_json(Path(folder) / "run.json", self.to_dict())

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunRecord:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    @classmethod
    def read(cls, folder: Path) -> RunRecord:
        return cls.from_dict(read_json(Path(folder) / "run.json"))

    @property
    def examples_per_s(self) -> float:
        return (self.timing or {}).get("examples_per_s", 0.0)
