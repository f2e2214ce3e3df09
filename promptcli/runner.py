"""The main road: load spec → read examples → load scorer → evaluate → write outputs.

`promptcli.run(...)` and `promptcli run` are the same call; the CLI only parses and prints.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, fields, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch

from .data import Dataset, LabelSpace, Skipped, load_dataset
from .encode import Encoded, Encoder
from .errors import DataError, RunError
from .evaluate import Evaluation, evaluate
from .metrics import classification_metrics, prediction_counts
from .models import ModelInfo, load_info, load_model
from .outputs import (METRICS, PREDICTIONS, RUN, Prediction, finalize_predictions, prepare_new,
                      read_json, read_predictions, write_json)
from .render import Renderer
from .spec import TemplateFile, load_template
from .tokens import Segmenter
from .verbalizer import Verbalizer
from .versions import peak_memory_mb, versions


@dataclass(frozen=True)
class RunConfig:
    """Everything that decides a run's predictions (stored in run.json, reused by --resume)."""

    template: str
    data: str
    model: str | None = None
    verbalizer: str | None = None
    scorer: str = "auto"
    device: str = "auto"
    dtype: str = "auto"
    batch_size: int = 32
    max_length: int | None = None
    normalize: str | None = None
    label_field: str | None = None
    data_format: str | None = None
    skip_invalid: bool = False
    limit: int | None = None
    trust_remote_code: bool = False
    seed: int = 0  # recorded for reproducibility; scoring itself is deterministic


@dataclass
class Prepared:
    """A run's inputs, checked and encoded, before any weights are loaded."""

    template: TemplateFile
    renderer: Renderer
    verbalizer: Verbalizer
    info: ModelInfo
    dataset: Dataset
    encoder: Encoder
    encoded: list[Encoded]


@dataclass
class RunResult:
    out_dir: Path
    labels: list[str]
    predictions: list[Prediction]
    metrics: dict[str, Any]
    record: dict[str, Any]  # the content of run.json

    @property
    def accuracy(self) -> float | None:
        return self.metrics.get("accuracy")

    def summary(self) -> dict[str, Any]:
        """The metrics plus speed and counts: what `--format json` prints."""
        return {**self.metrics, "examples_per_s": self.record["timing"]["examples_per_s"],
                "out": str(self.out_dir), "counts": self.record["counts"]}


def model_name(template: TemplateFile, model: str | None) -> str:
    name = model or template.spec.model
    if not name:
        raise RunError("no model given and the template names no default model", path=str(template.path),
                       hint="pass --model (a hub id or a local folder)")
    return name


def prepare(config: RunConfig, rows: Sequence[Mapping[str, Any]] | None = None) -> Prepared:
    """Load and check the template, verbalizer, tokenizer and data, then encode every example."""
    template = load_template(config.template, config.verbalizer)
    renderer = Renderer(template)
    verbalizer = Verbalizer(template.verbalizer)
    info = load_info(model_name(template, config.model), scorer=config.scorer,
                     trust_remote_code=config.trust_remote_code, max_length=config.max_length)
    labels = LabelSpace(verbalizer.labels, template.verbalizer.spec.label_map)
    dataset = load_dataset(rows if rows is not None else config.data, renderer.fields,
                           config.label_field or template.spec.label_field, labels,
                           skip_invalid=config.skip_invalid, limit=config.limit, data_format=config.data_format)
    tok = info.tokenizer
    start = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
    encoder = Encoder(renderer, verbalizer, Segmenter(tok), info.kind, info.max_length, start)
    encoded = []
    kept = []
    for example in dataset.examples:
        where = f"{dataset.source}:{example.line}"
        try:
            encoded.append(encoder.encode(example, where))
            kept.append(example)
        except DataError as exc:
            if not config.skip_invalid:
                raise
            dataset.skipped.append(Skipped(line=example.line, reason=exc.message))
    dataset.examples = kept
    return Prepared(template, renderer, verbalizer, info, dataset, encoder, encoded)


def _resume_config(out: Path, overrides: dict[str, Any]) -> RunConfig:
    record = read_json(out / RUN)
    stored = RunConfig(**record["config"])
    given = {k: v for k, v in overrides.items() if v is not None and k in {f.name for f in fields(RunConfig)}}
    conflicts = [f"{k}: run has {getattr(stored, k)!r}, now {v!r}" for k, v in given.items()
                 if k not in ("device", "batch_size") and getattr(stored, k) != v]
    if conflicts:
        raise RunError("--resume continues a run with its own settings; these differ:\n    " + "\n    ".join(conflicts),
                       path=str(out / RUN), hint="drop those options, or start a new run with --out")
    return replace(stored, device=given.get("device", stored.device))


def _check_unchanged(record: dict, hashes: dict) -> None:
    for key, value in hashes.items():
        if key in record.get("hashes", {}) and record["hashes"][key] != value:
            raise RunError(f"the {key.replace('_', ' ')} changed since this run started; its predictions would mix "
                           "two different runs", hint="start a new run with --out")


def run(template: str | Path | None = None, data: str | Path | Sequence[Mapping[str, Any]] | None = None,
        model: str | None = None, *, out: str | Path | None = None, resume: str | Path | None = None,
        progress: bool = True, command: str | None = None,
        on_batch: Callable[[int, int], None] | None = None, **options: Any) -> RunResult:
    """Evaluate one template on one data file with one model; write and return the results.

    `options` are RunConfig fields (batch_size, scorer, device, dtype, normalize, ...).
    `resume` continues an interrupted run in that folder without recomputing finished rows.
    """
    rows = None if data is None or isinstance(data, (str, Path)) else list(data)
    if resume is not None:
        out_dir = Path(resume)
        config = _resume_config(out_dir, {"template": str(template) if template else None,
                                          "data": str(data) if rows is None and data else None,
                                          "model": model, **options})
        previous = read_json(out_dir / RUN)
    else:
        if template is None or data is None:
            raise RunError("a template and data are needed (or --resume DIR)")
        config = RunConfig(template=str(template), data=str(data) if rows is None else "<rows>", model=model,
                           **options)
        out_dir = Path(out) if out else default_out_dir(Path(config.template))
        previous = None
    if config.batch_size < 1:
        raise RunError("batch size must be at least 1")

    started = time.perf_counter()
    torch.manual_seed(config.seed)
    prepared = prepare(config, rows)
    hashes = {"template": prepared.template.sha256, "verbalizer": prepared.template.verbalizer.sha256,
              "data": prepared.dataset.sha256, "model_config": prepared.info.config_sha256}
    if previous is not None:
        _check_unchanged(previous, hashes)
    else:
        prepare_new(out_dir)
    record = {
        "status": "running", "command": command, "started": _now(), "config": asdict(config),
        "template_name": prepared.template.name, "kind": prepared.template.kind,
        "scorer": prepared.info.kind, "labels": prepared.verbalizer.labels, "hashes": hashes,
        "versions": versions(), "counts": _counts(prepared), "skipped_rows": [asdict(s) for s in prepared.dataset.skipped],
    }
    write_json(out_dir / RUN, record)

    load_start = time.perf_counter()
    loaded = load_model(prepared.info, device=config.device, dtype=config.dtype)
    record["hashes"]["model"] = loaded.fingerprint()
    load_s = time.perf_counter() - load_start

    done = read_predictions(out_dir / PREDICTIONS) if previous is not None else []
    try:
        evaluation = evaluate(prepared, loaded, config, out_dir / PREDICTIONS, done, progress, on_batch)
    except BaseException:
        record.update(status="interrupted", stopped=_now())
        write_json(out_dir / RUN, record)
        raise
    predictions = evaluation.predictions
    finalize_predictions(out_dir / PREDICTIONS, predictions)

    labels = prepared.verbalizer.labels
    if prepared.dataset.labeled:
        metrics = classification_metrics([p.gold for p in predictions], [p.pred for p in predictions], labels)
    else:
        metrics = {"n": len(predictions), "predicted": prediction_counts([p.pred for p in predictions], labels)}
    write_json(out_dir / METRICS, metrics)
    record.update(status="finished", finished=_now(), resumed_rows=len(done), timing=_timing(evaluation, load_s, time.perf_counter() - started),
                  memory=peak_memory_mb(loaded.device), work=evaluation.work())
    write_json(out_dir / RUN, record)
    return RunResult(out_dir=out_dir, labels=labels, predictions=predictions, metrics=metrics, record=record)


def _counts(prepared: Prepared) -> dict[str, Any]:
    return {"examples": len(prepared.encoded), "skipped": len(prepared.dataset.skipped),
            "truncated": sum(e.truncated for e in prepared.encoded), "labeled": prepared.dataset.labeled}


def _timing(evaluation: Evaluation, load_s: float, wall_s: float) -> dict[str, float]:
    rate = evaluation.computed / evaluation.seconds if evaluation.seconds > 0 else 0.0
    return {"wall_s": round(wall_s, 3), "load_model_s": round(load_s, 3), "scoring_s": round(evaluation.seconds, 3),
            "examples_per_s": round(rate, 2)}


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def default_out_dir(template: Path) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    base = Path("runs") / f"{template.stem}-{stamp}"
    out, n = base, 1
    while out.exists():
        n += 1
        out = base.with_name(f"{base.name}-{n}")
    return out
