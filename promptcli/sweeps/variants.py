"""A sweep's variants: the cross product of its axes, their names, and what can be skipped up front."""
from __future__ import annotations

import hashlib
import itertools
import json
import re
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

from ..spec.sweepfile import AXES, SweepSpec


@dataclass(frozen=True)
class Variant:
    template: str
    verbalizer: str | None
    model: str
    shots: int | None
    seed: int | None
    normalize: str | None
    calibrate: str | None

    def slug(self) -> str:
        """A folder name: readable, and unique through a hash of every axis value."""
        parts = [Path(self.template).stem, Path(self.model.rstrip("/")).name]
        parts += [f"{k}-{Path(str(v)).stem}" for k, v in asdict(self).items() if k not in ("template", "model")
                  and v is not None]
        digest = hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:6]
        return re.sub(r"[^\w.-]+", "_", "-".join(parts))[:120] + "-" + digest


def expand(spec: SweepSpec) -> list[Variant]:
    return [Variant(*values) for values in itertools.product(
        spec.templates, spec.verbalizers, spec.models, spec.shots, spec.seeds, spec.normalize, spec.calibrate)]


def template_labels(templates: list[str]) -> dict[str, str]:
    """A template's file stem, or `folder/stem` where two templates share a stem (their rows would merge)."""
    stems = Counter(Path(t).stem for t in set(templates))
    labels = {t: Path(t).stem if stems[Path(t).stem] == 1 else f"{Path(t).parent.name}/{Path(t).stem}"
              for t in set(templates)}
    clashes = Counter(labels.values())
    return {t: label if clashes[label] == 1 else t for t, label in labels.items()}


def display_names(variants: list[Variant]) -> dict[Variant, str]:
    """Short names: the template, the model, and only the axes that take several values."""
    varying = [a for a in AXES[2:] if len({getattr(v, a) for v in variants}) > 1]
    labels = template_labels([v.template for v in variants])
    names = {}
    for v in variants:
        parts = [labels[v.template]]
        if v.verbalizer or len({x.verbalizer for x in variants}) > 1:
            parts.append(f"verbalizer={Path(v.verbalizer).stem if v.verbalizer else 'own'}")
        parts += [f"model={Path(v.model.rstrip('/')).name}" if a == "model" else f"{a}={getattr(v, a)}"
                  for a in varying]
        names[v] = " · ".join(parts)
    return names


def group_name(name: str) -> str:
    """A variant's name without its seed: the seeds of one variant are one leaderboard row."""
    return re.sub(r" · seed=[^·]+", "", name)


def skip_reason(variant: Variant, kind: str, spec: SweepSpec) -> str | None:
    """Reasons known before running; the rest (a cot template on an MLM, …) come from the run itself."""
    if kind == "mlm" and variant.normalize not in (None, "none"):
        return f"normalize {variant.normalize} applies to causal models only"
    if variant.shots and not spec.train:
        return "demonstrations need training data (train: in the sweep file, or --train)"
    return None
