"""Batch evaluation of prompt variants: the cross product of a sweep's axes, run and ranked.

Each model is loaded once and serves every variant that uses it. A variant that cannot work
(a `cot` template on a masked LM, demonstrations without training data) is skipped with the
reason. Finished variants are never recomputed: running the same sweep into the same folder
continues where it stopped.
"""
from __future__ import annotations

import glob
import hashlib
import itertools
import json
import re
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError

from .ensemble import ensemble
from .errors import PromptcliError, RunError, SpecError
from .leaderboard import Row, Scored, leaderboard
from .metrics import classification_metrics
from .models import load_info
from .outputs import METRICS, PREDICTIONS, RUN, read_json, read_predictions, write_json
from .progress import new_progress
from .runner import ModelPool, open_store, run
from .spec import Strict, _spec_error, load_template
from .yamlfile import load_yaml

AXES = ("template", "verbalizer", "model", "shots", "seed", "normalize", "calibrate")


class SweepOptions(Strict):
    batch_size: int = Field(32, ge=1)
    limit: int | None = Field(None, ge=1)
    label_field: str | None = None
    data_format: str | None = None
    device: str = "auto"
    dtype: str = "auto"
    max_length: int | None = None
    skip_invalid: bool = False
    samples: int | None = None


class SweepSpec(Strict):
    """A sweep file: the data, the axes, and how to rank. Paths are relative to the file."""

    name: str | None = None
    data: str
    train: str | None = None
    templates: list[str] = Field(min_length=1, description="template files (globs allowed)")
    verbalizers: list[str | None] = [None]  # None: each template's own
    models: list[str] = Field(min_length=1)
    shots: list[int | None] = [None]  # None: the template's
    seeds: list[int | None] = [None]
    normalize: list[Literal["none", "tokens", "chars", "pmi"] | None] = [None]
    calibrate: list[Literal["none", "contextual"] | None] = [None]
    ensemble: bool = False
    weighted: bool = Field(False, description="weight ensemble members by their accuracy")
    metric: Literal["accuracy", "macro_f1", "ece", "log_loss"] = "accuracy"
    show: str | None = Field(None, description="a variant whose confusion matrix the report shows beside the best's")
    options: SweepOptions = SweepOptions()


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
        parts = [Path(self.template).stem, Path(self.model.rstrip("/")).name]
        parts += [f"{k}-{Path(str(v)).stem}" for k, v in asdict(self).items() if k not in ("template", "model")
                  and v is not None]
        digest = hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:6]
        return re.sub(r"[^\w.-]+", "_", "-".join(parts))[:120] + "-" + digest


def load_sweep(path: str | Path) -> tuple[SweepSpec, Path]:
    doc = load_yaml(path)
    try:
        spec = SweepSpec.model_validate(doc.data)
    except ValidationError as exc:
        raise _spec_error(exc, doc) from None
    base = doc.path.parent
    resolve = (lambda p: None if p is None else str(p) if Path(p).is_absolute() else str(base / p))
    templates = []
    for pattern in spec.templates:
        found = sorted(glob.glob(resolve(pattern)))
        if not found:
            raise SpecError(f"no template file matches '{pattern}'", path=str(doc.path), field="templates")
        templates += found
    models = [m if not (base / m).exists() else str(base / m) for m in spec.models]
    return spec.model_copy(update={"data": resolve(spec.data), "train": resolve(spec.train), "templates": templates,
                                   "verbalizers": [resolve(v) for v in spec.verbalizers], "models": models}), base


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
    return re.sub(r" · seed=[^·]+", "", name)


def skip_reason(variant: Variant, kinds: dict[str, str], spec: SweepSpec) -> str | None:
    """Reasons known before running; the rest (a cot template on an MLM, …) come from the run itself."""
    if kinds[variant.model] == "mlm" and variant.normalize not in (None, "none"):
        return f"normalize {variant.normalize} applies to causal models only"
    if variant.shots and not spec.train:
        return "demonstrations need training data (train: in the sweep file, or --train)"
    return None


def default_sweep_dir(spec: SweepSpec) -> Path:
    from .runner import default_out_dir
    return default_out_dir(Path(f"sweep-{spec.name or 'variants'}"))


def run_sweep(spec: SweepSpec, out: Path, *, progress: bool = True, cache: bool = True, store: Any = None,
              command: str | None = None) -> dict[str, Any]:
    """Run every variant (skipping finished ones), then write the leaderboard and reports."""
    variants = expand(spec)
    names = display_names(variants)
    state_path = out / "sweep.json"
    previous = read_json(state_path) if state_path.exists() else None
    if previous is not None and previous["spec"] != spec.model_dump(mode="json"):
        raise RunError("the output folder holds a different sweep", path=str(out),
                       hint="use another --out, or the same sweep file and options")
    if previous is None and out.exists() and any(out.iterdir()):
        raise RunError("the output folder exists and holds no sweep", path=str(out), hint="pass a new --out")
    out.mkdir(parents=True, exist_ok=True)
    runs = open_store(store)
    sweep_id = previous["store_id"] if previous else (runs.add("sweep", {"spec": spec.model_dump(mode="json")}, {},
                                                                str(out.resolve()), name=spec.name or out.name,
                                                                status="running") if runs else None)
    state = {"spec": spec.model_dump(mode="json"), "store_id": sweep_id, "command": command, "variants": {}}
    kinds = {m: load_info(m, scorer="auto").kind for m in spec.models}
    pool = ModelPool()
    results: dict[Variant, Scored] = {}
    with new_progress() if progress else _NoProgress() as display:
        overall = display.add_task("sweep", total=len(variants)) if progress else None
        for model in spec.models:  # each model loads once
            for variant in [v for v in variants if v.model == model]:
                folder = out / "variants" / variant.slug()
                entry = {"name": names[variant], "folder": str(folder.relative_to(out)), **asdict(variant)}
                reason = skip_reason(variant, kinds, spec)
                if reason is None:
                    try:
                        results[variant] = _run_variant(variant, names[variant], folder, spec, pool,
                                                        display if progress else False, cache, store, sweep_id)
                        entry["status"] = "finished"
                    except PromptcliError as exc:
                        reason = exc.message
                if reason is not None:
                    entry.update(status="skipped", reason=reason)
                state["variants"][variant.slug()] = entry
                write_json(state_path, state)
                if progress:
                    display.advance(overall)
            pool = ModelPool()  # free this model before loading the next
    entries = list(results.values())
    if spec.ensemble:
        entries += _ensembles(results, names, spec, out)
    rows = leaderboard(entries, spec.metric)
    state["leaderboard"] = [r.to_dict() for r in rows]
    write_json(state_path, state)
    from .sweep_report import write_reports
    write_reports(out, spec, rows, entries, state)
    if runs is not None and sweep_id is not None:
        runs.update(sweep_id, status="finished", record=state, metrics={"leaderboard": state["leaderboard"]})
        runs.close()
    return state


def _run_variant(variant: Variant, name: str, folder: Path, spec: SweepSpec, pool: ModelPool, display: Any,
                 cache: bool, store: Any, parent: int | None) -> Scored:
    record_path = folder / RUN
    status = read_json(record_path).get("status") if record_path.exists() else None
    if status == "finished":  # done in an earlier call: read it back, never recompute
        record = read_json(record_path)
        predictions = read_predictions(folder / PREDICTIONS)
        metrics = read_json(folder / METRICS)
    else:
        options = spec.options.model_dump()
        result = run(variant.template, spec.data, variant.model, out=None if status else folder,
                     resume=folder if status else None, progress=display, cache=cache, store=store, models=pool,
                     parent=parent, verbalizer=variant.verbalizer, train=spec.train, shots=variant.shots,
                     seed=variant.seed, normalize=variant.normalize, calibrate=variant.calibrate,
                     **({} if status else options))
        record, predictions, metrics = result.record, result.predictions, result.metrics
    return Scored(name=name, group=group_name(name), labels=record["labels"],
                  predictions=sorted(predictions, key=lambda p: p.index),
                  examples_per_s=record["timing"]["examples_per_s"], agreement=metrics.get("agreement"),
                  cached=min(1.0, (record.get("cache") or {}).get("hits", 0) / max(len(predictions), 1)))


def _ensembles(results: dict[Variant, Scored], names: dict[Variant, str], spec: SweepSpec, out: Path) -> list[Scored]:
    """One ensemble per setting of the other axes, over the templates that scored it."""
    groups: dict[tuple, list[tuple[Variant, Scored]]] = {}
    for variant, scored in results.items():
        if any(p.pred is None for p in scored.predictions) or load_template(variant.template).generative:
            continue
        key = (variant.verbalizer, variant.model, variant.shots, variant.seed, variant.normalize, variant.calibrate,
               tuple(scored.labels))
        groups.setdefault(key, []).append((variant, scored))
    made = []
    for key, members in groups.items():
        if len(members) < 2:
            continue
        labels = list(key[-1])
        weights = None
        if spec.weighted:
            weights = [classification_metrics([p.gold for p in s.predictions], [p.pred for p in s.predictions],
                                               labels)["accuracy"] for _, s in members]
        predictions = ensemble([s.predictions for _, s in members], labels, weights)
        first = members[0][0]
        label = template_labels([v.template for v in names])[first.template]
        name = names[first].replace(label, "ensemble" + ("(weighted)" if spec.weighted else ""), 1)
        folder = out / "ensembles" / re.sub(r"[^\w.=-]+", "_", name)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / PREDICTIONS).write_text("".join(p.to_json() + "\n" for p in predictions), encoding="utf-8")
        write_json(folder / METRICS, classification_metrics([p.gold for p in predictions],
                                                            [p.pred for p in predictions], labels))
        write_json(folder / "members.json", {"members": [names[v] for v, _ in members], "weights": weights})
        rate = 1 / sum(1 / max(s.examples_per_s, 1e-9) for _, s in members)
        made.append(Scored(name=name, group=group_name(name), labels=labels, predictions=predictions,
                           examples_per_s=rate))
    return made


class _NoProgress:
    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        return None
