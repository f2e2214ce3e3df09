"""sweep.json as records: each variant's outcome (`VariantEntry`) and the whole sweep (`SweepState`)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from ..evaluation.leaderboard import Row
from ..files import read_json
from .variants import Variant

STATE = "sweep.json"


@dataclass
class VariantEntry:
    """One variant's line in sweep.json: its name and folder, its axis values, and how it ended."""

    name: str
    folder: str
    variant: Variant
    status: str = "pending"  # finished | skipped
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        data = {"name": self.name, "folder": self.folder, **asdict(self.variant), "status": self.status}
        return data if self.reason is None else {**data, "reason": self.reason}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VariantEntry:
        axes = {f.name: data[f.name] for f in fields(Variant)}
        return cls(name=data["name"], folder=data["folder"], variant=Variant(**axes), status=data["status"],
                   reason=data.get("reason"))


@dataclass
class SweepState:
    """sweep.json: the spec, each variant's outcome, and the leaderboard."""

    spec: dict[str, Any]
    store_id: int | None
    command: str | None
    variants: dict[str, VariantEntry] = field(default_factory=dict)
    leaderboard: list[Row] | None = None
    report: dict[str, Any] | None = None  # the chosen variant on the report split (`report_on`)
    race: dict[str, Any] | None = None  # adaptive sweeps: what the first slice decided, and the work saved

    def to_dict(self) -> dict[str, Any]:
        data = {"spec": self.spec, "store_id": self.store_id, "command": self.command,
                "variants": {slug: v.to_dict() for slug, v in self.variants.items()}}
        if self.leaderboard is not None:
            data["leaderboard"] = [r.to_dict() for r in self.leaderboard]
        for key in ("report", "race"):
            if getattr(self, key) is not None:
                data[key] = getattr(self, key)
        return data

    @classmethod
    def read(cls, path: Path) -> SweepState:
        data = read_json(path)
        rows = data.get("leaderboard")
        return cls(spec=data["spec"], store_id=data.get("store_id"), command=data.get("command"),
                   variants={slug: VariantEntry.from_dict(v) for slug, v in data.get("variants", {}).items()},
                   leaderboard=[Row.from_dict(r) for r in rows] if rows is not None else None,
                   report=data.get("report"), race=data.get("race"))

    @property
    def skipped(self) -> list[tuple[str, str]]:
        return [(v.name, v.reason or "") for v in self.variants.values() if v.status == "skipped"]
