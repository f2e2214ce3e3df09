"""Batch evaluation of prompt variants: the cross product of a sweep's axes, run and ranked.

Each model is loaded once and serves every variant that uses it. A variant that cannot work
(a `cot` template on a masked LM, demonstrations without training data) is skipped with the
reason. Finished variants are never recomputed: running the same sweep into the same folder
continues where it stopped.
"""
from __future__ import annotations

import functools
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Mapping

from ..errors import DataError, PromptcliError, RunError
from ..evaluation.leaderboard import Scored, leaderboard
from ..evaluation.outputs import RUN
from ..evaluation.runner import ModelPool, default_out_dir, read_run, run
from ..files import read_json, write_json
from ..models.processes import Processes
from ..models.info import load_info
from ..progress import new_progress
from ..report.sweep import write_reports
from ..spec.runconfig import checked
from ..spec.sweepfile import SweepSpec, load_sweep, shared_options
from ..store.runs import RunStore, open_store
from .ensemble import ensembles
from .adaptive import race, work
from .holdout import report_chosen
from .state import STATE, SweepState, VariantEntry
from .variants import Variant, display_names, expand, group_name, skip_reason, template_labels

def default_sweep_dir(spec: SweepSpec) -> Path:
    return Processes.current().shared(default_out_dir(Path(f"sweep-{spec.name or 'variants'}")))


def run_sweep(spec: SweepSpec, out: Path, *, progress: bool = True, cache: bool = True, store: Any = None,
              command: str | None = None) -> SweepState:
    """Run every variant (skipping finished ones), then write the leaderboard and reports.

    Under `torchrun` / `accelerate launch` every process runs the sweep: each variant's rows are shared
    out among them (`run`), every process reads the merged results back and so ranks alike, and the
    first process alone writes sweep.json, the ensembles and the reports and shows the progress."""
    out = Path(out)
    processes = Processes.current()
    progress = progress and processes.main
    variants = expand(spec)
    names = display_names(variants)
    state_path = out / STATE
    spec_json = spec.model_dump(mode="json")
    previous = SweepState.read(state_path) if state_path.exists() else None
    if previous is not None and previous.spec != spec_json:
        raise RunError("the output folder holds a different sweep", path=str(out),
                       hint="use another --out, or the same sweep file and options")
    if previous is None and out.exists() and any(out.iterdir()):
        raise RunError("the output folder exists and holds no sweep", path=str(out), hint="pass a new --out")
    check_before_running(spec, names)
    processes.barrier()  # every process has looked at the folder before the first one writes in it
    options = spec.options  # every model must load before anything is written
    kinds = {m: load_info(m, scorer=options.scorer, trust_remote_code=options.trust_remote_code).kind
             for m in spec.models}
    out.mkdir(parents=True, exist_ok=True)
    runs = open_store(store) if processes.main else None
    sweep_id = previous.store_id if previous else (
        runs.add("sweep", {"spec": spec_json}, {}, str(out.resolve()), name=spec.name or out.name, status="running")
        if runs else None)
    sweep_id = processes.shared(sweep_id)  # every process's runs name the sweep as their parent
    state = SweepState(spec=spec_json, store_id=sweep_id, command=command)
    try:
        _run_variants(spec, variants, names, kinds, state, out, progress, cache, store)
    except BaseException:
        _close(runs, state, "interrupted")
        raise
    if not any(v.status == "finished" for v in state.variants.values()):
        _close(runs, state, "failed")
        raise RunError("no variant could run: " + "; ".join(f"{name}: {reason}" for name, reason in state.skipped),
                       path=str(out / STATE))
    _close(runs, state, "finished")
    return state


def check_before_running(spec: SweepSpec, names: dict[Variant, str]) -> None:
    """What every variant needs, checked once: the data files, and that `show` names a variant."""
    if spec.adaptive and spec.options.limit is not None:
        raise RunError("adaptive sweeps choose their own first slice of rows (a sample, not the first rows); "
                       "drop limit, or use subsample", field="adaptive")
    if spec.report_on is not None and Path(spec.report_on).resolve() == Path(spec.data).resolve():
        raise RunError("report_on is the selection data itself; the report split must be rows the ranking never saw",
                       field="report_on")
    for key, path in (("data", spec.data), ("train", spec.train), ("report_on", spec.report_on)):
        if path is not None and not Path(path).is_file():
            raise DataError("data file not found" if not Path(path).is_dir() else "this is a folder, not a data file",
                            path=path, field=key)
    if spec.show is not None:
        labels = template_labels([v.template for v in names])
        known = set(names.values()) | {n.replace(labels[v.template], "ensemble" + ("(weighted)" if spec.weighted
                                                                                   else ""), 1)
                                       for v, n in names.items()}
        if spec.show not in known:
            raise RunError(f"show: no variant is named '{spec.show}'", field="show",
                           hint="variants: " + "; ".join(sorted(known)))


def _close(runs: RunStore | None, state: SweepState, status: str) -> None:
    if runs is not None and state.store_id is not None:
        runs.update(state.store_id, status=status, record=state.to_dict(),
                    metrics={"leaderboard": [r.to_dict() for r in state.leaderboard or []]})
        runs.close()


def _run_variants(spec: SweepSpec, variants: list[Variant], names: dict[Variant, str], kinds: dict[str, str],
                  state: SweepState, out: Path, progress: bool, cache: Any, store: Any) -> None:
    """Every variant (each model loaded once; with `adaptive`, first all on a slice of rows, then the ones
    still in the race on all rows), then the ensembles, the leaderboard and the report files."""
    run_one = functools.partial(_run_variant, cache=cache, store=store, parent=state.store_id)
    with new_progress() if progress else nullcontext() as display:
        racing = variants
        if spec.adaptive:
            sliced = spec.model_copy(update={"options": spec.options.model_copy(
                update={"subsample": spec.adaptive, "subsample_from": spec.options.subsample})})
            first = _run_each(sliced, variants, names, kinds, out, "slice", None, display if progress else False,
                              run_one)
            racing = _race(spec, variants, names, first, state)
        results = _run_each(spec, racing, names, kinds, out, "variants", state, display if progress else False,
                            run_one)
    if state.race is not None:
        state.race.update(work(state.race["slice_rows"], list(first.values()), list(results.values())))
    entries = list(results.values())
    if spec.ensemble:
        entries += ensembles(results, names, spec, out)
    state.leaderboard = leaderboard(entries, spec.metric, correction=spec.correction)
    if spec.report_on and state.leaderboard:
        state.report = report_chosen(spec, state.leaderboard[0], results, names, out,
                                     functools.partial(run_one, display=False))
    if Processes.current().main:
        write_json(out / STATE, state.to_dict())
        write_reports(out, spec, state.leaderboard, entries, state.skipped, state.report, state.race)


def _run_each(spec: SweepSpec, variants: list[Variant], names: dict[Variant, str], kinds: dict[str, str], out: Path,
              root: str, state: SweepState | None, display: Any, run_one: Any) -> dict[Variant, Scored]:
    """Run `variants` into `out/root/<slug>` (finished ones are read back); with a `state`, record how each
    ended in sweep.json as it goes. With several processes dealing out whole variants, each runs its own
    alone, then every process reads the others' back (and learns why any was skipped)."""
    processes = Processes.current()
    by_variant = shares_variants(spec, len(variants), processes)
    mine = set(variants[processes.rank::processes.world]) if by_variant else set(variants)
    results: dict[Variant, Scored] = {}
    entries: dict[Variant, VariantEntry] = {}
    overall = display.add_task("sweep" if root == "variants" else f"sweep: {root}", total=len(mine)) \
        if display else None
    for model in spec.models:  # each model loads once
        pool = ModelPool()  # the previous model is freed before this one loads
        for variant in [v for v in variants if v.model == model and v in mine]:
            folder = out / root / variant.slug()
            entry = VariantEntry(name=names[variant], folder=str(folder.relative_to(out)), variant=variant)
            entry.reason = skip_reason(variant, kinds[model], spec)
            if entry.reason is None:
                try:
                    results[variant] = run_one(variant, names[variant], folder, spec, pool, display=display,
                                               processes=Processes() if by_variant else None)
                    entry.status = "finished"
                except PromptcliError as exc:
                    entry.reason = exc.message
                except KeyboardInterrupt as exc:
                    exc.resume = f"the same sweep with --out {out}"
                    raise
            entry.status = "skipped" if entry.reason is not None else entry.status
            entries[variant] = entry
            _record(state, {variant: entry}, out)
            if display:
                display.advance(overall)
    if by_variant:
        reasons = {slug: why for part in processes.gather({v.slug(): e.reason for v, e in entries.items()})
                   for slug, why in part.items()}
        for variant in [v for v in variants if v not in mine]:
            folder = out / root / variant.slug()
            entry = VariantEntry(name=names[variant], folder=str(folder.relative_to(out)), variant=variant,
                                 reason=reasons[variant.slug()])
            entry.status = "skipped" if entry.reason is not None else "finished"
            if entry.reason is None:  # finished by another process: read back
                results[variant] = run_one(variant, names[variant], folder, spec, None, display=False)
            entries[variant] = entry
        _record(state, entries, out)
        by_model = [v for m in spec.models for v in variants if v.model == m]
        results = {v: results[v] for v in by_model if v in results}  # in the order one process has them
    return results


def shares_variants(spec: SweepSpec, count: int, processes: Processes) -> bool:
    """Whether the processes take whole variants (rather than sharing each variant's rows)."""
    if processes.world == 1 or spec.parallel == "rows":
        return False
    return spec.parallel == "variants" or count >= 2 * processes.world


def _record(state: SweepState | None, entries: dict[Variant, VariantEntry], out: Path) -> None:
    """How the variants ended, in sweep.json (written by the first process)."""
    if state is None:
        return
    state.variants.update((v.slug(), e) for v, e in entries.items())
    if Processes.current().main:
        write_json(out / STATE, state.to_dict())


def _race(spec: SweepSpec, variants: list[Variant], names: dict[Variant, str], first: dict[Variant, Scored],
          state: SweepState) -> list[Variant]:
    """Drop the variants significantly worse than the best on the slice; record them and return the rest."""
    staying, out_rows = race(list(first.values()), spec.metric, spec.correction)
    n = max((len(s.predictions) for s in first.values()), default=0)
    state.race = {"slice_rows": n, "dropped": {r.variant: {"value": r.value, "p_adjusted": r.p_adjusted}
                                               for r in out_rows}}
    dropped = [v for v in first if group_name(names[v]) not in staying]
    for v in dropped:
        row = state.race["dropped"][group_name(names[v])]
        state.variants[v.slug()] = VariantEntry(
            name=names[v], folder=str(Path("slice") / v.slug()), variant=v, status="dropped",
            reason=f"significantly worse than the best on the first {n} rows ({spec.metric} "
                   f"{row['value']:.4g}, adjusted p={row['p_adjusted']:.3g})")
    return [v for v in variants if v not in dropped]


def _run_variant(variant: Variant, name: str, folder: Path, spec: SweepSpec, pool: ModelPool | None, *,
                 display: Any, cache: bool, store: Any, parent: int | None, processes: Processes | None = None) -> Scored:
    record_path = folder / RUN
    status = read_json(record_path).get("status") if record_path.exists() else None
    if status == "finished":  # done in an earlier call: read it back, never recompute
        record, predictions, metrics = read_run(folder)
    else:
        result = run(variant.template, spec.data, variant.model, out=None if status else folder,
                     resume=folder if status else None, progress=display, cache=cache, store=store, models=pool,
                     parent=parent, processes=processes, verbalizer=variant.verbalizer, train=spec.train,
                     shots=variant.shots, seed=variant.seed, normalize=variant.normalize, calibrate=variant.calibrate,
                     **({} if status else shared_options(spec)))
        record, predictions, metrics = result.record, result.predictions, result.metrics
    return Scored(name=name, group=group_name(name), labels=record.labels,
                  predictions=sorted(predictions, key=lambda p: p.index),
                  examples_per_s=record.examples_per_s, agreement=metrics.get("agreement"),
                  cached=min(1.0, (record.cache or {}).get("hits", 0) / max(len(predictions), 1)))



def sweep(spec: SweepSpec | str | Path | Mapping[str, Any], out: str | Path | None = None, *, progress: bool = True,
          cache: bool = True, store: Any = None) -> SweepState:
    """`promptcli.sweep`: a sweep file's path, a SweepSpec, or a dict of a sweep file's fields (checked)."""
    if isinstance(spec, (str, Path)):
        spec = load_sweep(spec)
    elif not isinstance(spec, SweepSpec):
        spec = checked(SweepSpec, spec, what="sweep option")
    return run_sweep(spec, Path(out) if out else default_sweep_dir(spec), progress=progress, cache=cache, store=store)
