"""The main road: load spec → read examples → load scorer → evaluate → write outputs.

`promptcli.run(...)` and `promptcli run` are the same call; the CLI only parses and prints.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, fields, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence


from rich.progress import Progress

from .data import Dataset, LabelSpace, Skipped, load_dataset
from .demos import DemoSelector
from .embedded import default_model
from .encode import Encoded, Encoder, make_encoder
from .errors import DataError, RunError
from .evaluate import Evaluation, evaluate
from .answers import TIE_RULE
from .metrics import agreement_summary, classification_metrics, path_summary, prediction_counts, tie_summary
from .models import LoadedModel, ModelInfo, load_info, load_model, resolve_device
from .progress import warn
from .scorecache import ScoreCache
from .sqlitedb import default_cache_path, default_store_path
from .store import RunStore
from .outputs import (METRICS, PREDICTIONS, RUN, Prediction, finalize_predictions, prepare_new,
                      read_json, read_predictions, write_json)
from .rendering import Renderer
from .softprompt import SoftPrompt, check_compatible, load_soft_prompt
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
    calibrate: str | None = None
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
    soft_prompt: str | None = None  # a folder written by `promptcli tune`
    force: bool = False  # use a soft prompt trained for another model or template version


@dataclass
class Inputs:
    """What a run reads, checked, before any model is involved."""

    template: TemplateFile
    renderer: Renderer
    verbalizer: Verbalizer
    dataset: Dataset
    selector: DemoSelector | None

    @property
    def gold(self) -> dict[int, str | None]:
        return {e.index: e.gold for e in self.dataset.examples}

    @property
    def fields(self) -> dict[int, Mapping[str, Any]]:
        return {e.index: e.fields for e in self.dataset.examples}


@dataclass
class Prepared(Inputs):
    """A run's inputs encoded for one model (tokenizer loaded, weights not yet)."""

    info: ModelInfo
    encoder: Encoder
    encoded: list[Encoded]
    soft: SoftPrompt | None = None


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
    """--model, else the template's `model`, else the embedded default model (when installed)."""
    return model or template.spec.model or default_model()


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


def prepare(config: RunConfig, rows: Sequence[Mapping[str, Any]] | None = None,
            soft: SoftPrompt | None = None) -> Prepared:
    """Inputs plus the model's tokenizer: every example encoded (invalid ones skipped with --skip-invalid).

    `soft` (or `config.soft_prompt`) puts a soft prompt's virtual tokens into every input."""
    inputs = load_inputs(config, rows)
    info = load_info(model_name(inputs.template, config.model), scorer=config.scorer,
                     trust_remote_code=config.trust_remote_code, max_length=config.max_length)
    check_model_fits(inputs.template, info, config)
    if soft is None and config.soft_prompt:
        soft = load_soft_prompt(config.soft_prompt)
        check_compatible(soft, inputs.template.sha256, info.config_sha256, config.force)
    encoder = make_encoder(inputs.renderer, inputs.verbalizer, info, inputs.selector, config.max_new_tokens,
                           soft.tokens if soft is not None else None)
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
    if soft is not None and encoded:
        placed = sum(1 for i in encoded[0].context if i >= encoder.virtual.base)
        if placed != soft.tokens:
            raise RunError(f"the soft prompt has {soft.tokens} tokens but the template places {placed}",
                           path=str(inputs.template.path))
    return Prepared(**vars(inputs), info=info, encoder=encoder, encoded=encoded, soft=soft)


def check_model_fits(template: TemplateFile, info: ModelInfo, config: RunConfig | None = None) -> None:
    """Combinations that cannot work are errors before anything runs (a sweep skips them with the reason)."""
    if info.kind == "mlm" and (template.generative or template.spec.chat):
        what = f"kind '{template.kind}'" if template.generative else "chat: true"
        raise RunError(f"{what} needs a causal model (scorer 'causal'); '{info.name}' is a masked LM, which "
                       "supports the manual, co-star and xml kinds without chat", path=str(template.path))
    scoring = template.spec.scoring
    normalize = (config.normalize if config else None) or scoring.normalize
    calibrate = (config.calibrate if config else None) or scoring.calibrate
    if normalize == "pmi" and info.kind == "mlm":
        raise RunError("normalize: pmi scores continuations, so it needs a causal model", path=str(template.path))
    if template.generative and (normalize == "pmi" or calibrate != "none"):
        raise RunError(f"calibration and PMI apply to scored templates, not to kind '{template.kind}'",
                       path=str(template.path))


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


class ModelPool:
    """Loads each model once and keeps it for every run that needs it (a sweep groups runs by model)."""

    def __init__(self) -> None:
        self._models: dict[tuple, LoadedModel] = {}
        self.load_seconds = 0.0

    def get(self, info: ModelInfo, device: str, dtype: str) -> LoadedModel:
        key = (info.path, info.kind, device, dtype)
        if key not in self._models:
            start = time.perf_counter()
            self._models[key] = load_model(info, device=device, dtype=dtype)
            self.load_seconds += time.perf_counter() - start
        return self._models[key]


def open_cache(cache: bool | str | Path | None) -> ScoreCache | None:
    """True: the default score cache; a path: that file; False/None: no cache."""
    if not cache:
        return None
    path = default_cache_path() if cache is True else Path(cache)
    return ScoreCache(path, on_warning=warn)


def open_store(store: bool | str | Path | None) -> RunStore | None:
    if store is False:
        return None
    return RunStore(default_store_path() if store in (None, True) else Path(store), on_warning=warn)


def run(template: str | Path | None = None, data: str | Path | Sequence[Mapping[str, Any]] | None = None,
        model: str | None = None, *, out: str | Path | None = None, resume: str | Path | None = None,
        progress: bool | Progress = True, command: str | None = None, cache: bool | str | Path | None = True,
        store: bool | str | Path | None = None, models: ModelPool | None = None, parent: int | None = None,
        on_batch: Callable[[int, int], None] | None = None, **options: Any) -> RunResult:
    """Evaluate one template on one data file with one model; write and return the results.

    `options` are RunConfig fields (batch_size, scorer, device, dtype, normalize, ...).
    `resume` continues an interrupted run in that folder without recomputing finished rows.
    `cache` (score cache) and `store` (run store) default to files under the user's cache folder;
    pass False to turn either off.
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
              "data": prepared.dataset.sha256, "model_config": prepared.info.config_sha256,
              "model": prepared.info.fingerprint()}
    if prepared.selector is not None:
        hashes["train"] = prepared.selector.sha256
    if prepared.soft is not None:
        hashes["soft_prompt"] = prepared.soft.sha256()
    if previous is not None:
        _check_unchanged(previous, hashes)
    else:
        prepare_new(out_dir)
    record = {
        "status": "running", "command": command, "started": _now(), "config": asdict(config),
        "template_name": prepared.template.name, "kind": prepared.template.kind,
        "scorer": prepared.info.kind, "labels": prepared.verbalizer.labels, "hashes": hashes,
        "model": {"name": prepared.info.name, "path": prepared.info.path, "gguf": prepared.info.source},
        "versions": versions(), "counts": _counts(prepared), "skipped_rows": [asdict(s) for s in prepared.dataset.skipped],
    }
    write_json(out_dir / RUN, record)
    runs = open_store(store)
    run_id = previous.get("store_id") if previous else None
    if runs is not None and run_id is None:
        run_id = runs.add("run", record, {}, str(out_dir.resolve()), parent=parent, name=prepared.template.name,
                          status="running")
        record["store_id"] = run_id
        write_json(out_dir / RUN, record)

    pool = models or ModelPool()
    loaded_before = pool.load_seconds
    scores = open_cache(cache if not prepared.template.generative else False)
    done = read_predictions(out_dir / PREDICTIONS) if previous is not None else []
    try:
        evaluation = evaluate(prepared, config, lambda: pool.get(prepared.info, config.device, config.dtype),
                              out_dir / PREDICTIONS, done, progress, scores, on_batch)
    except BaseException:
        record.update(status="interrupted", stopped=_now())
        write_json(out_dir / RUN, record)
        _update_store(runs, run_id, record, {})
        raise
    predictions = sorted(evaluation.predictions, key=lambda p: p.index)  # row order, as in the file
    finalize_predictions(out_dir / PREDICTIONS, predictions)
    metrics = run_metrics(prepared, predictions)
    write_json(out_dir / METRICS, metrics)
    load_s = pool.load_seconds - loaded_before
    record.update(status="finished", finished=_now(), resumed_rows=len(done),
                  timing=_timing(evaluation, load_s, time.perf_counter() - started),
                  memory=peak_memory_mb(resolve_device(config.device)), work=evaluation.work())
    if evaluation.calibration:
        record["calibration"] = evaluation.calibration
    if scores is not None:
        record["cache"] = asdict(scores.stats)
        scores.close()
    write_json(out_dir / RUN, record)
    _update_store(runs, run_id, record, metrics)
    return RunResult(out_dir=out_dir, labels=prepared.verbalizer.labels, predictions=predictions, metrics=metrics,
                     record=record)


def run_metrics(prepared: Prepared, predictions: list[Prediction]) -> dict[str, Any]:
    labels = prepared.verbalizer.labels
    if prepared.dataset.labeled:
        metrics = classification_metrics([p.gold for p in predictions], [p.pred for p in predictions], labels,
                                         abstention=prepared.template.generative)
    else:
        metrics = {"n": len(predictions), "predicted": prediction_counts([p.pred for p in predictions], labels)}
    if prepared.template.kind == "self-consistency":
        metrics["agreement"] = agreement_summary([p.agreement for p in predictions])
        metrics["paths"] = path_summary([p.answers or [] for p in predictions])
        metrics["ties"] = tie_summary([bool(p.tie) for p in predictions], [p.pred for p in predictions], labels,
                                      TIE_RULE, [p.gold for p in predictions] if prepared.dataset.labeled else None)
    return metrics


def _update_store(runs: RunStore | None, run_id: int | None, record: dict, metrics: dict) -> None:
    if runs is not None and run_id is not None:
        runs.update(run_id, status=record["status"], record=record, metrics=metrics)
        runs.close()


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
