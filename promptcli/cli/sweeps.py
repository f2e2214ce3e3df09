"""`sweep` and `runs`: many variants ranked, and the store that remembers every run."""
from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape

from ..spec.sweepfile import SweepSpec, load_sweep
from ..spec import options as option_values
from ..spec.options import choices
from .common import OUT, CacheOpt, DeviceOpt, Dtype, OutputFormat, StoreOpt, TrainOpt, app, given, main_process, reports_errors

Metric = choices(option_values.Metric, "Metric")
Correction = choices(option_values.Correction, "Correction")
Parallel = choices(option_values.Parallel, "Parallel")
RunKind = choices(option_values.RunKind, "RunKind")


def run_and_print_sweep(spec: SweepSpec, out: Path | None, cache: bool, store: Path | None, format: OutputFormat,
                        quiet: bool, strict: bool = False) -> None:
    from ..errors import RunError
    from ..report.terminal import leaderboard_table
    from ..sweeps.runner import default_sweep_dir, run_sweep

    folder = out or default_sweep_dir(spec)
    state = run_sweep(spec, folder, progress=not quiet, cache=cache, store=store,
                      command=shlex.join(["promptcli", *sys.argv[1:]]))
    if not main_process():
        return  # under torchrun / accelerate launch the first process prints
    if format is OutputFormat.json:
        print(json.dumps({"out": str(folder), "leaderboard": [r.to_dict() for r in state.leaderboard],
                          "skipped": dict(state.skipped), "report": state.report,
                          "adaptive": state.race}))
    else:
        OUT.print(leaderboard_table(state.leaderboard, spec.metric))
        from ..report.sweep import describe, describe_race

        if state.race:
            OUT.print(f"[bold]adaptive:[/] {escape(describe_race(state.race))}", highlight=False)
        if state.report:
            OUT.print(f"[bold]selected, then reported:[/] {escape(describe(state.report))}", highlight=False)
        for name, reason in state.skipped:
            OUT.print(f"[yellow]skipped[/] {escape(name)}: {escape(reason)}", highlight=False)
        OUT.print(f"files: {folder}/leaderboard.csv, leaderboard.json, report.md, report.html")
    if strict and state.skipped:
        raise RunError(f"{len(state.skipped)} of {len(state.variants)} variants were skipped (--strict)",
                       path=str(folder))


def _values(option: str, text: str | None, kind: type = str) -> list | None:
    """'0,4' → [0, 4]; 'default' → [None] (the template's own setting); a value of the wrong type is a usage
    error naming the option (allowed words are checked by the sweep spec)."""
    if text is None:
        return None
    values = []
    for part in (p.strip() for p in text.split(",")):
        try:
            values.append(None if part.lower() in ("default", "") else kind(part))
        except ValueError:
            raise typer.BadParameter(f"'{part}' is not a {kind.__name__} (give a comma-separated list, e.g. 0,4,16)",
                                     param_hint=option) from None
    return values


@app.command()
@reports_errors
def sweep(
    paths: Annotated[list[Path], typer.Argument(help="A sweep YAML file, or template files (the shorthand).")],
    data: Annotated[Optional[Path], typer.Option("--data", "--select-on", "-d", help="Data file the variants are ranked on (shorthand, or overriding the sweep file's).")] = None,
    report_on: Annotated[Optional[Path], typer.Option(help="Evaluate the variant ranked first once on these rows, after the ranking, and report both numbers.")] = None,
    train: TrainOpt = None,
    model: Annotated[Optional[list[str]], typer.Option("--model", "-m", help="A model; repeat for several.")] = None,
    verbalizer: Annotated[Optional[list[Path]], typer.Option(help="A verbalizer axis value; repeat for several.")] = None,
    shots: Annotated[Optional[str], typer.Option(help="Demonstration counts, e.g. 0,4,16.")] = None,
    seeds: Annotated[Optional[str], typer.Option(help="Seeds, e.g. 13,21,42.")] = None,
    normalize: Annotated[Optional[str], typer.Option(help="Causal normalisations, e.g. none,chars,pmi.")] = None,
    calibrate: Annotated[Optional[str], typer.Option(help="Calibrations, e.g. none,contextual.")] = None,
    ensemble: Annotated[Optional[bool], typer.Option(help="Add the ensemble of the templates as a variant.")] = None,
    weighted: Annotated[Optional[bool], typer.Option(help="Weight ensemble members by their accuracy.")] = None,
    metric: Annotated[Optional[Metric], typer.Option(help="The ranking metric \\[default: accuracy].")] = None,
    correction: Annotated[Optional[Correction], typer.Option(help="Adjust p-values against the best for the number of comparisons: holm, bh (Benjamini–Hochberg) or none \\[default: holm].")] = None,
    adaptive: Annotated[Optional[int], typer.Option(min=2, help="Score every variant on a sample of N rows first; only those not significantly worse than the best there run on all rows.")] = None,
    show: Annotated[Optional[str], typer.Option(help="A variant whose confusion matrix the report shows beside the best's.")] = None,
    parallel: Annotated[Optional[Parallel], typer.Option(help="Under torchrun / accelerate launch: share each variant's rows (rows), give each process whole variants (variants), or variants when there are at least twice as many as processes (auto) \\[default: auto].")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Output folder; the same folder again resumes the sweep.")] = None,
    batch_size: Annotated[Optional[int], typer.Option(min=1, help="Examples per forward pass.")] = None,
    limit: Annotated[Optional[int], typer.Option(min=1, help="Use only the first N rows.")] = None,
    subsample: Annotated[Optional[int], typer.Option(min=1, help="A seeded sample of N rows (seed 0), stratified by label.")] = None,
    rows: Annotated[Optional[str], typer.Option(help="A range of rows, e.g. 200:300.")] = None,
    device: DeviceOpt = None,
    label_field: Annotated[Optional[str], typer.Option(help="Data field holding the gold label \\[default: each template's, or 'label'].")] = None,
    skip_invalid: Annotated[Optional[bool], typer.Option("--skip-invalid", help="Skip and count invalid rows instead of stopping.")] = None,
    max_length: Annotated[Optional[int], typer.Option(min=1, help="Cap on input tokens \\[default: each model's maximum].")] = None,
    dtype: Annotated[Optional[Dtype], typer.Option(help="Weights' precision \\[default: auto].")] = None,
    cache: CacheOpt = True,
    store: StoreOpt = None,
    format: Annotated[OutputFormat, typer.Option("--format", help="table, or json on stdout.")] = OutputFormat.table,
    quiet: Annotated[bool, typer.Option(help="No progress display.")] = False,
    strict: Annotated[bool, typer.Option(help="Exit with an error when any variant was skipped (the report is still written).")] = False,
) -> None:
    """Run every combination of templates × verbalizers × models × shots × seeds × scoring options and rank them."""
    from ..spec.runconfig import checked

    if len(paths) == 1 and _is_sweep_file(paths[0]):
        spec = load_sweep(paths[0])
    else:
        if data is None or not model:
            raise typer.BadParameter("the shorthand needs --data and at least one --model (or pass a sweep file)")
        spec = checked(SweepSpec, {"data": str(data), "templates": [str(p) for p in paths], "models": model},
                       what="sweep option")
    updates = given(data=data, report_on=report_on, train=train, models=model or None,
                    verbalizers=[str(v) for v in verbalizer] if verbalizer else None,
                    shots=_values("--shots", shots, int), seeds=_values("--seeds", seeds, int),
                    normalize=_values("--normalize", normalize), calibrate=_values("--calibrate", calibrate),
                    ensemble=ensemble, weighted=weighted, metric=metric, correction=correction, adaptive=adaptive,
                    show=show, parallel=parallel)
    options = given(batch_size=batch_size, limit=limit, subsample=subsample, rows=rows, device=device, dtype=dtype,
                    label_field=label_field,
                    skip_invalid=skip_invalid, max_length=max_length)
    merged = {**spec.model_dump(), **updates, "options": {**spec.options.model_dump(), **options}}
    spec = checked(SweepSpec, merged, what="sweep option")
    run_and_print_sweep(spec, out, cache, store, format, quiet, strict)


def _is_sweep_file(path: Path) -> bool:
    from ..spec.yamlfile import load_yaml

    return path.suffix in (".yaml", ".yml") and "templates" in load_yaml(path).data


runs_app = typer.Typer(no_args_is_help=True, help="The run store: every run and sweep, with its settings and metrics.")
app.add_typer(runs_app, name="runs")


@runs_app.command("list")
@reports_errors
def runs_list(
    limit: Annotated[int, typer.Option(min=1, help="How many (newest first).")] = 30,
    kind: Annotated[Optional[RunKind], typer.Option(help="Only runs, or only sweeps.")] = None,
    store: StoreOpt = None,
    format: Annotated[OutputFormat, typer.Option("--format", help="table, or json on stdout.")] = OutputFormat.table,
) -> None:
    """List recorded runs and sweeps."""
    from ..report.terminal import runs_table
    from ..store.runs import open_store

    stored = open_store(store or True).list(limit=limit, kind=kind.value if kind else None)
    if format is OutputFormat.json:
        print(json.dumps([{"id": r.id, "kind": r.kind, "parent": r.parent, "name": r.name, "status": r.shown_status,
                           "created": r.created, "out_dir": r.out_dir, "metrics": r.metrics} for r in stored]))
    else:
        OUT.print(runs_table(stored))


@runs_app.command("show")
@reports_errors
def runs_show(run_id: Annotated[int, typer.Argument(help="A run id from `runs list`.")], store: StoreOpt = None) -> None:
    """Everything recorded about one run: settings, hashes, versions, metrics."""
    from ..store.runs import open_store

    stored = open_store(store or True).get(run_id)
    print(json.dumps({"id": stored.id, "kind": stored.kind, "name": stored.name, "status": stored.status,
                      "created": stored.created, "out_dir": stored.out_dir, "metrics": stored.metrics,
                      "record": stored.record}, indent=2, default=str))


@runs_app.command("compare")
@reports_errors
def runs_compare(
    run_ids: Annotated[list[int], typer.Argument(help="Two or more run ids.")],
    store: StoreOpt = None,
) -> None:
    """Runs side by side: metrics, the settings that differ, and McNemar's test for two runs on the same data."""
    from ..report.compare import compare_table
    from ..store.runs import open_store

    OUT.print(compare_table(open_store(store or True).compare(run_ids)))
