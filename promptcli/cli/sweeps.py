"""`sweep` and `runs`: many variants ranked, and the store that remembers every run."""
from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape

from .common import OUT, CacheOpt, OutputFormat, StoreOpt, TrainOpt, app, reports_errors

def run_and_print_sweep(spec, out, cache, store, format, quiet) -> None:
    from ..leaderboard import Row
    from ..report import leaderboard_table
    from ..sweep import default_sweep_dir, run_sweep

    folder = out or default_sweep_dir(spec)
    state = run_sweep(spec, folder, progress=not quiet, cache=cache, store=store,
                      command=shlex.join(["promptcli", *sys.argv[1:]]))
    if format is OutputFormat.json:
        print(json.dumps({"out": str(folder), "leaderboard": state["leaderboard"],
                          "skipped": {v["name"]: v["reason"] for v in state["variants"].values()
                                      if v["status"] == "skipped"}}))
        return
    OUT.print(leaderboard_table([Row(**r) for r in state["leaderboard"]], spec.metric))
    for v in state["variants"].values():
        if v["status"] == "skipped":
            OUT.print(f"[yellow]skipped[/] {escape(v['name'])}: {escape(v['reason'])}", highlight=False)
    OUT.print(f"files: {folder}/leaderboard.csv, leaderboard.json, report.md, report.html")


def _values(text: str, kind: type) -> list:
    """'0,4' → [0, 4]; 'default' → [None] (the template's own setting)."""
    return [None if part.strip().lower() in ("default", "") else kind(part.strip()) for part in text.split(",")]


@app.command()
@reports_errors
def sweep(
    paths: Annotated[list[Path], typer.Argument(help="A sweep YAML file, or template files (the shorthand).")],
    data: Annotated[Optional[Path], typer.Option("--data", "-d", help="Data file (shorthand, or overriding the sweep file's).")] = None,
    train: TrainOpt = None,
    model: Annotated[Optional[list[str]], typer.Option("--model", "-m", help="A model; repeat for several.")] = None,
    verbalizer: Annotated[Optional[list[Path]], typer.Option(help="A verbalizer axis value; repeat for several.")] = None,
    shots: Annotated[Optional[str], typer.Option(help="Demonstration counts, e.g. 0,4,16.")] = None,
    seeds: Annotated[Optional[str], typer.Option(help="Seeds, e.g. 13,21,42.")] = None,
    normalize: Annotated[Optional[str], typer.Option(help="Causal normalisations, e.g. none,chars,pmi.")] = None,
    calibrate: Annotated[Optional[str], typer.Option(help="Calibrations, e.g. none,contextual.")] = None,
    ensemble: Annotated[Optional[bool], typer.Option(help="Add the ensemble of the templates as a variant.")] = None,
    weighted: Annotated[Optional[bool], typer.Option(help="Weight ensemble members by their accuracy.")] = None,
    metric: Annotated[Optional[str], typer.Option(help="accuracy, macro_f1, ece or log_loss.")] = None,
    show: Annotated[Optional[str], typer.Option(help="A variant whose confusion matrix the report shows beside the best's.")] = None,
    out: Annotated[Optional[Path], typer.Option(help="Output folder; the same folder again resumes the sweep.")] = None,
    batch_size: Annotated[Optional[int], typer.Option(min=1, help="Examples per forward pass.")] = None,
    limit: Annotated[Optional[int], typer.Option(min=1, help="Use only the first N rows.")] = None,
    device: Annotated[Optional[str], typer.Option(help="auto, cpu, cuda, cuda:N or mps.")] = None,
    dtype: Annotated[Optional[str], typer.Option(help="auto, float32, bfloat16 or float16.")] = None,
    cache: CacheOpt = True,
    store: StoreOpt = None,
    format: Annotated[OutputFormat, typer.Option("--format", help="table, or json on stdout.")] = OutputFormat.table,
    quiet: Annotated[bool, typer.Option(help="No progress display.")] = False,
) -> None:
    """Run every combination of templates × verbalizers × models × shots × seeds × scoring options and rank them."""
    from ..sweep import SweepSpec, load_sweep

    if len(paths) == 1 and _is_sweep_file(paths[0]):
        spec, _ = load_sweep(paths[0])
    else:
        if data is None or not model:
            raise typer.BadParameter("the shorthand needs --data and at least one --model (or pass a sweep file)")
        spec = SweepSpec(data=str(data), templates=[str(p) for p in paths], models=model)
    updates: dict = {"data": str(data) if data else None, "train": str(train) if train else None,
                     "models": model or None, "verbalizers": [str(v) for v in verbalizer] if verbalizer else None,
                     "shots": _values(shots, int) if shots else None, "seeds": _values(seeds, int) if seeds else None,
                     "normalize": _values(normalize, str) if normalize else None,
                     "calibrate": _values(calibrate, str) if calibrate else None, "ensemble": ensemble,
                     "weighted": weighted, "metric": metric, "show": show}
    options = {"batch_size": batch_size, "limit": limit, "device": device, "dtype": dtype}
    merged = {**spec.model_dump(), **{k: v for k, v in updates.items() if v is not None}}
    merged["options"] = {**spec.options.model_dump(), **{k: v for k, v in options.items() if v is not None}}
    spec = SweepSpec.model_validate(merged)
    run_and_print_sweep(spec, out, cache, store, format, quiet)


def _is_sweep_file(path: Path) -> bool:
    from ..yamlfile import load_yaml

    return path.suffix in (".yaml", ".yml") and "templates" in load_yaml(path).data


runs_app = typer.Typer(no_args_is_help=True, help="The run store: every run and sweep, with its settings and metrics.")
app.add_typer(runs_app, name="runs")


@runs_app.command("list")
@reports_errors
def runs_list(
    limit: Annotated[int, typer.Option(min=1, help="How many (newest first).")] = 30,
    kind: Annotated[Optional[str], typer.Option(help="run or sweep.")] = None,
    store: StoreOpt = None,
    format: Annotated[OutputFormat, typer.Option("--format", help="table, or json on stdout.")] = OutputFormat.table,
) -> None:
    """List recorded runs and sweeps."""
    from ..report import runs_table
    from ..runner import open_store

    stored = open_store(store or True).list(limit=limit, kind=kind)
    if format is OutputFormat.json:
        print(json.dumps([{"id": r.id, "kind": r.kind, "parent": r.parent, "name": r.name, "status": r.status,
                           "created": r.created, "out_dir": r.out_dir, "metrics": r.metrics} for r in stored]))
    else:
        OUT.print(runs_table(stored))


@runs_app.command("show")
@reports_errors
def runs_show(run_id: Annotated[int, typer.Argument(help="A run id from `runs list`.")], store: StoreOpt = None) -> None:
    """Everything recorded about one run: settings, hashes, versions, metrics."""
    from ..runner import open_store

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
    from ..compare import compare_table
    from ..runner import open_store

    OUT.print(compare_table(open_store(store or True).compare(run_ids)))
