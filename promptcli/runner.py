"""The main road: load spec → read examples → load scorer → evaluate → write outputs.

`promptcli.run(...)` and `promptcli run` are the same call; the CLI only parses and prints.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, fields, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence


from .data import Dataset, LabelSpace, Skipped, load_dataset
from .demos import DemoSelector
from .encode import Encoded, Encoder, make_encoder
from .errors import DataError, RunError
from .evaluate import Evaluation, evaluate
from .metrics import agreement_summary, classification_metrics, prediction_counts
from .models import ModelInfo, load_info, load_model
from .outputs import (METRICS, PREDICTIONS, RUN, Prediction, finalize_predictions, prepare_new,
                      read_json, read_predictions, write_json)
from .rendering import Renderer
from .spec import DemonstrationsSpec, TemplateFile, load_template
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
    seed: int | None = None  # demonstrations and sampling; default: the template's demonstration seed, 0 for sampling
    train: str | None = None  # where demonstrations come from
    shots: int | None = None  # overrides the template's demonstration count
    samples: int | None = None  # self-consistency: overrides the template's number of paths
    prefix_cache: bool = True  # causal: compute the prompt prefix shared by all examples once
    # decoding overrides for cot / self-consistency (None: the template's)
    strategy: str | None = None
    temperature: float | None = None
    top_k: int | None = None
    top_p: float | None = None
    max_new_tokens: int | None = None


@dataclass
class Inputs:
    """What a run reads, checked, before any model is involved."""

    template: TemplateFile
    renderer: Renderer
    verbalizer: Verbalizer
    dataset: Dataset
    selector: DemoSelector | None


@dataclass
class Prepared(Inputs):
    """A run's inputs encoded for one model (tokenizer loaded, weights not yet)."""

    info: ModelInfo
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


def load_inputs(config: RunConfig, rows: Sequence[Mapping[str, Any]] | None = None) -> Inputs:
    """Load and check the template, verbalizer, data and demonstrations (no model needed)."""
    template = load_template(config.template, config.verbalizer)
    renderer = Renderer(template)
    verbalizer = Verbalizer(template.verbalizer)
    labels = LabelSpace(verbalizer.labels, template.verbalizer.spec.label_map)
    dataset = load_dataset(rows if rows is not None else config.data, renderer.fields,
                           config.label_field or template.spec.label_field, labels,
                           skip_invalid=config.skip_invalid, limit=config.limit, data_format=config.data_format)
    selector = demo_selector(template, renderer, verbalizer, config, labels)
    return Inputs(template, renderer, verbalizer, dataset, selector)


def prepare(config: RunConfig, rows: Sequence[Mapping[str, Any]] | None = None) -> Prepared:
    """Inputs plus the model's tokenizer: every example encoded (invalid ones skipped with --skip-invalid)."""
    inputs = load_inputs(config, rows)
    info = load_info(model_name(inputs.template, config.model), scorer=config.scorer,
                     trust_remote_code=config.trust_remote_code, max_length=config.max_length)
    check_model_fits(inputs.template, info)
    encoder = make_encoder(inputs.renderer, inputs.verbalizer, info, inputs.selector, config.max_new_tokens)
    dataset = inputs.dataset
    encoded, kept = [], []
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
    return Prepared(**vars(inputs), info=info, encoder=encoder, encoded=encoded)


def check_model_fits(template: TemplateFile, info: ModelInfo) -> None:
    if info.kind == "mlm" and (template.generative or template.spec.chat):
        what = f"kind '{template.kind}'" if template.generative else "chat: true"
        raise RunError(f"{what} needs a causal model (scorer 'causal'); '{info.name}' is a masked LM, which "
                       "supports the manual, co-star and xml kinds without chat", path=str(template.path))


def demonstrations_spec(template: TemplateFile, config: RunConfig) -> DemonstrationsSpec | None:
    """The template's demonstrations with the run's overrides (`--shots`, `--seed`); None for zero-shot."""
    spec = template.spec.demonstrations
    if config.shots is not None:
        spec = (spec or DemonstrationsSpec()).model_copy(update={"count": config.shots, "per_class": None})
    if spec is not None and config.seed is not None:
        spec = spec.model_copy(update={"seed": config.seed})
    if spec is None or (spec.per_class or spec.count) == 0:
        return None
    return spec


def demo_selector(template: TemplateFile, renderer: Renderer, verbalizer: Verbalizer, config: RunConfig,
                  labels: LabelSpace) -> DemoSelector | None:
    spec = demonstrations_spec(template, config)
    if spec is None:
        return None
    if not config.train:
        raise RunError(f"the template asks for {spec.per_class or spec.count} demonstrations"
                       f"{' per label' if spec.per_class else ''}; pass the training data with --train FILE",
                       path=str(template.path), hint="or --shots 0 for zero-shot")
    pool = load_dataset(config.train, renderer.fields, config.label_field or template.spec.label_field, labels,
                        skip_invalid=config.skip_invalid)
    if not pool.labeled:
        raise RunError("the training data has no labels, so it cannot give demonstrations", path=config.train)
    first_words = {label: words[0] for label, words in template.verbalizer.spec.labels.items()}
    return DemoSelector(pool.examples, spec, verbalizer.labels, first_words, renderer.fields, pool.sha256)


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
    prepared = prepare(config, rows)
    hashes = {"template": prepared.template.sha256, "verbalizer": prepared.template.verbalizer.sha256,
              "data": prepared.dataset.sha256, "model_config": prepared.info.config_sha256}
    if prepared.selector is not None:
        hashes["train"] = prepared.selector.sha256
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
    generative = prepared.template.generative
    if prepared.dataset.labeled:
        metrics = classification_metrics([p.gold for p in predictions], [p.pred for p in predictions], labels,
                                         abstention=generative)
    else:
        metrics = {"n": len(predictions), "predicted": prediction_counts([p.pred for p in predictions], labels)}
    if prepared.template.kind == "self-consistency":
        metrics["agreement"] = agreement_summary([p.agreement for p in predictions])
    write_json(out_dir / METRICS, metrics)
    record.update(status="finished", finished=_now(), resumed_rows=len(done), timing=_timing(evaluation, load_s, time.perf_counter() - started),
                  memory=peak_memory_mb(loaded.device), work=evaluation.work())
    write_json(out_dir / RUN, record)
    return RunResult(out_dir=out_dir, labels=labels, predictions=predictions, metrics=metrics, record=record)


def _counts(prepared: Prepared) -> dict[str, Any]:
    encoded = prepared.encoded
    counts = {"examples": len(encoded), "skipped": len(prepared.dataset.skipped),
              "truncated": sum(e.truncated for e in encoded), "labeled": prepared.dataset.labeled}
    if prepared.selector is not None:
        counts["demonstrations"] = {
            "select": prepared.selector.spec.select, "seed": prepared.selector.spec.seed,
            "per_example": max((e.demos for e in encoded), default=0),
            "lost_to_length": sum(e.dropped > 0 for e in encoded),  # examples that lost demonstrations
            "query_skipped": sum(e.skipped_self for e in encoded),  # training rows equal to the query
        }
    return counts


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
