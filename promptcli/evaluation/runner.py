"""The main road: load spec → read examples → load scorer → evaluate → write outputs.

`promptcli.run(...)` and `promptcli run` are the same call; the CLI only parses and prints.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from rich.progress import Progress

from ..errors import RunError
from ..files import read_json, write_json
from ..models.info import ModelInfo
from ..models.processes import Processes
from ..models.weights import LoadedModel, check_device_map, load_model, resolve_device, resolve_dtype
from ..progress import library_warnings, warn
from ..scoring.answers import TIE_RULE
from ..spec.runconfig import RunConfig, checked, resumed_config
from ..store.runs import RunStore, open_store
from ..store.scores import open_cache
from ..versions import peak_memory_mb, versions
from .batches import Evaluation, evaluate
from .inputs import Prepared, prepare
from .metrics import agreement_summary, classification_metrics, path_summary, prediction_counts, tie_summary
from .outputs import (METRICS, PREDICTIONS, RANK_FILES, RUN, Prediction, check_new, prediction_files, prepare_new,
                      read_predictions, remove_rank_files, write_predictions)
from .record import RunRecord, now


@dataclass
class RunResult:
    out_dir: Path
    labels: list[str]
    predictions: list[Prediction]
    metrics: dict[str, Any]
    record: RunRecord

    @property
    def accuracy(self) -> float | None:
        return self.metrics.get("accuracy")

    def summary(self) -> dict[str, Any]:
        """The metrics plus speed and counts: what `--format json` prints."""
        cache = self.record.cache or {}
        served = cache.get("hits", 0) / max(cache.get("hits", 0) + cache.get("misses", 0), 1)
        return {**self.metrics, "examples_per_s": self.record.examples_per_s,
                "cached": round(served, 4),  # share of scores read from the score cache: then ex/s is the cache's
                "out": str(self.out_dir), "counts": self.record.counts}


class ModelPool:
    """Loads each model once and keeps it for every run that needs it (a sweep groups runs by model)."""

    def __init__(self) -> None:
        self._models: dict[tuple, LoadedModel] = {}
        self.load_seconds = 0.0

    def get(self, info: ModelInfo, device: str, dtype: str, device_map: str | None = None) -> LoadedModel:
        key = (info.path, info.kind, device, dtype, device_map)
        if key not in self._models:
            start = time.perf_counter()
            self._models[key] = load_model(info, device=device, dtype=dtype, device_map=device_map)
            self.load_seconds += time.perf_counter() - start
        return self._models[key]


def run(template: str | Path | None = None, data: str | Path | Sequence[Mapping[str, Any]] | None = None,
        model: str | None = None, *, out: str | Path | None = None, resume: str | Path | None = None,
        progress: bool | Progress = True, command: str | None = None, cache: bool | str | Path | None = None,
        store: bool | str | Path | None = None, models: ModelPool | None = None, parent: int | None = None,
        on_batch: Callable[[int, int], None] | None = None, verbose: bool = False, processes: Processes | None = None,
        **options: Any) -> RunResult:
    """Evaluate one template on one data file with one model; write and return the results.

    `options` are RunConfig fields (batch_size, scorer, device, dtype, normalize, ...), checked: an
    unknown option or value is a RunError. `resume` continues an interrupted run in that folder
    without recomputing finished rows (options given with it must match the run's, except device,
    batch_size and prefix_cache). `cache` (score cache) and `store` (run store) default to files
    under the user's cache folder; pass False to turn either off (a resumed run keeps its run's
    choice of cache unless given one). Other libraries' warnings go to `warnings.log` in the run
    folder, or to the terminal with `verbose`.
    """
    rows = None if data is None or isinstance(data, (str, Path)) else list(data)
    given = {"template": str(template) if template else None, "data": str(data) if rows is None and data else None,
             "model": model, **options}
    if resume is not None:
        out_dir = Path(resume)
        previous = RunRecord.read(out_dir)
        config = resumed_config(previous.config, given, str(out_dir / RUN))
        cache = previous.score_cache if cache is None else cache
        if previous.status == "finished":  # complete: say so and change nothing
            warn(f"{out_dir} holds a finished run; nothing to resume")
            record, predictions, metrics = read_run(out_dir)
            return RunResult(out_dir=out_dir, labels=record.labels, predictions=predictions, metrics=metrics,
                             record=record)
    else:
        if template is None or data is None:
            raise RunError("a template and data are needed (or --resume DIR)")
        config = checked(RunConfig, {**{k: v for k, v in given.items() if v is not None},
                                     "data": "<rows>" if rows is not None else str(data)})
        out_dir = Path(out) if out else Processes.current().shared(default_out_dir(Path(config.template)))
        previous = None
    cache = True if cache is None else cache
    resolve_dtype(config.dtype, resolve_device(config.device))  # an absent GPU is an error before anything is written
    check_device_map(config.device_map)

    with library_warnings(out_dir / "warnings.log", show=verbose):
        return _run(config, rows, out_dir, previous, progress, command, cache, store, models, parent, on_batch,
                    processes or Processes.current())


def _run(config: RunConfig, rows: Sequence[Mapping[str, Any]] | None, out_dir: Path, previous: RunRecord | None,
         progress: bool | Progress, command: str | None, cache: bool | str | Path, store: bool | str | Path | None,
         models: ModelPool | None, parent: int | None, on_batch: Callable[[int, int], None] | None,
         processes: Processes) -> RunResult:
    """`run` once the options are settled: prepare, open the folder and the stores, evaluate, write.

    Under `torchrun` / `accelerate launch` every process runs this: each predicts its share of the
    batches into its own file, and the first process alone records the run and writes the merged
    outputs, which every process then reads back (so a sweep goes on identically on all of them).
    `processes=Processes()` keeps a run to this process alone (a sweep that deals out whole variants)."""
    started = time.perf_counter()
    config = config.model_copy(update={"device": processes.device(config.device)})
    pool = models or ModelPool()
    loaded_before = pool.load_seconds
    if config.device_map and processes.world > 1:
        raise RunError("--device-map spreads one model over this process's devices; with several processes, "
                       "each takes one GPU instead", hint="drop --device-map, or run one process")
    prepared = prepare(config, rows, load=lambda info: pool.get(info, config.device, config.dtype, config.device_map))
    hashes = run_hashes(prepared)
    if previous is not None:
        _check_unchanged(previous, hashes)
    else:
        check_new(out_dir)
    processes.barrier()  # every process has checked the folder before the first one fills it
    record = RunRecord(
        status="running", command=command, started=now(), config=config.model_dump(),
        template_name=prepared.template.name, kind=prepared.template.kind, scorer=prepared.info.kind,
        labels=prepared.verbalizer.labels, hashes=hashes,
        model={"name": prepared.info.name, "path": prepared.info.path, "gguf": prepared.info.source},
        versions=versions(), counts=_counts(prepared), skipped_rows=[asdict(s) for s in prepared.dataset.skipped],
        score_cache=cache if isinstance(cache, bool) else str(cache))
    if processes.world > 1:
        record.process["processes"] = processes.world
    runs = open_store(store) if processes.main else None
    run_id = previous.store_id if previous else None
    if processes.main:
        if previous is None:
            prepare_new(out_dir)
        record.write(out_dir)
        if runs is not None and run_id is None:
            run_id = runs.add("run", record.to_dict(), {}, str(out_dir.resolve()), parent=parent,
                              name=prepared.template.name, status="running")
            record.store_id = run_id
            record.write(out_dir)

    scores = open_cache(cache if not prepared.template.generative else False)
    files = prediction_files(out_dir, processes.world)
    done = _read_all(out_dir) if previous is not None else []
    processes.barrier()  # all have read what earlier runs wrote before anyone appends
    try:
        evaluation = evaluate(prepared, lambda: pool.get(prepared.info, config.device, config.dtype, config.device_map),
                              files[processes.rank], done, progress if processes.main else False, scores, on_batch,
                              processes, [f for r, f in enumerate(files) if r != processes.rank])
    except BaseException as exc:
        if processes.main:
            record.status, record.stopped = "interrupted", now()
            record.write(out_dir)
            _update_store(runs, run_id, record, {})
        if isinstance(exc, KeyboardInterrupt) and not hasattr(exc, "resume"):
            exc.resume = f"promptcli run --resume {out_dir}"  # what the CLI tells the user to type
        raise
    evaluation = evaluation.summed(processes)
    processes.barrier()  # every process's predictions are on disk
    if processes.main:
        predictions = sorted(_read_all(out_dir) if processes.world > 1 else evaluation.predictions,
                             key=lambda p: p.index)  # row order, as in the file
        write_predictions(out_dir / PREDICTIONS, predictions)
        remove_rank_files(out_dir)
        metrics = run_metrics(prepared, predictions)
        write_json(out_dir / METRICS, metrics)
        record.status, record.finished, record.resumed_rows = "finished", now(), len(done)
        record.timing = _timing(evaluation, pool.load_seconds - loaded_before, time.perf_counter() - started)
        record.memory = peak_memory_mb(resolve_device(config.device))
        record.work = evaluation.work()
        record.calibration = evaluation.calibration or None
        record.cache = asdict(scores.stats) if scores is not None else None
        record.write(out_dir)
        _update_store(runs, run_id, record, metrics)
    if scores is not None:
        scores.close()
    processes.barrier()  # the merged outputs are written
    if not processes.main:
        record = RunRecord.read(out_dir)
        predictions, metrics = read_predictions(out_dir / PREDICTIONS), read_json(out_dir / METRICS)
    return RunResult(out_dir=out_dir, labels=prepared.verbalizer.labels, predictions=predictions, metrics=metrics,
                     record=record)


def _read_all(out_dir: Path) -> list[Prediction]:
    """Every prediction an earlier (or this) run streamed, by one process or several."""
    found: dict[int, Prediction] = {}
    for path in [out_dir / PREDICTIONS, *sorted(out_dir.glob(RANK_FILES))]:
        found.update((p.index, p) for p in read_predictions(path))
    return list(found.values())


def run_hashes(prepared: Prepared) -> dict[str, str]:
    """What a run's predictions depend on, by content: resuming with any of them changed is refused."""
    hashes = {"template": prepared.template.sha256, "verbalizer": prepared.template.verbalizer.sha256,
              "data": prepared.dataset.sha256, "model_config": prepared.info.config_sha256,
              "model": prepared.info.fingerprint()}
    if prepared.selector is not None:
        hashes["train"] = prepared.selector.sha256
    if prepared.soft is not None:
        hashes["soft_prompt"] = prepared.soft.sha256()
    return hashes


def _check_unchanged(record: RunRecord, hashes: dict[str, str]) -> None:
    for key, value in hashes.items():
        if key in record.hashes and record.hashes[key] != value:
            raise RunError(f"the {key.replace('_', ' ')} changed since this run started; its predictions would mix "
                           "two different runs", hint="start a new run with --out")


def run_metrics(prepared: Prepared, predictions: list[Prediction]) -> dict[str, Any]:
    labels = prepared.verbalizer.labels
    gold = [p.gold for p in predictions]
    pred = [p.pred for p in predictions]
    if prepared.dataset.labeled:
        metrics = classification_metrics(gold, pred, labels, abstention=prepared.template.generative)
    else:
        metrics = {"n": len(predictions), "predicted": prediction_counts(pred, labels)}
    if prepared.template.kind == "self-consistency":
        metrics["agreement"] = agreement_summary([p.agreement for p in predictions])
        metrics["paths"] = path_summary([p.answers or [] for p in predictions])
        metrics["ties"] = tie_summary([bool(p.tie) for p in predictions], pred, labels, TIE_RULE,
                                      gold if prepared.dataset.labeled else None)
    return metrics


def _update_store(runs: RunStore | None, run_id: int | None, record: RunRecord, metrics: dict) -> None:
    if runs is not None and run_id is not None:
        runs.update(run_id, status=record.status, record=record.to_dict(), metrics=metrics)
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


def default_out_dir(template: Path) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    base = Path("runs") / f"{template.stem}-{stamp}"
    out, n = base, 1
    while out.exists():
        n += 1
        out = base.with_name(f"{base.name}-{n}")
    return out


def read_run(folder: Path) -> tuple[RunRecord, list[Prediction], dict[str, Any]]:
    """A finished run's record, predictions and metrics, read back from its folder."""
    return RunRecord.read(folder), read_predictions(folder / PREDICTIONS), read_json(folder / METRICS)
