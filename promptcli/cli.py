"""The `promptcli` command: parses arguments, makes one library call, prints the result.

Every user-facing error is a PromptcliError, rendered here once with its exit code.
"""
from __future__ import annotations

import json
import os
import shlex
import sys
from enum import Enum
from functools import wraps
from pathlib import Path
from typing import Annotated, Callable, Optional

import typer
from typer.exceptions import TyperException
from rich.console import Console
from rich.markup import escape
from rich.rule import Rule
from rich.table import Table

from .errors import PromptcliError

app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode="rich",
                  help="Declarative prompts and verbalizers for zero- and few-shot classification.")
OUT = Console()
ERR = Console(stderr=True)


class Scorer(str, Enum):
    auto = "auto"
    mlm = "mlm"
    causal = "causal"


class Normalize(str, Enum):
    none = "none"
    tokens = "tokens"
    chars = "chars"
    pmi = "pmi"


class Calibrate(str, Enum):
    none = "none"
    contextual = "contextual"


class Strategy(str, Enum):
    greedy = "greedy"
    sample = "sample"


class OutputFormat(str, Enum):
    table = "table"
    json = "json"


def reports_errors(command: Callable) -> Callable:
    """Turn promptcli errors and Ctrl-C into a message and an exit code; a bug keeps its traceback
    only when PROMPTCLI_DEBUG is set."""
    @wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except PromptcliError as exc:
            ERR.print(f"[bold red]error:[/] {escape(str(exc))}", soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None
        except (typer.Exit, typer.Abort, TyperException):  # usage errors and exits: typer's own handling
            raise
        except KeyboardInterrupt:
            ERR.print("[yellow]interrupted[/]: predictions computed so far are saved; continue with "
                      "[bold]promptcli run --resume DIR[/]")
            raise typer.Exit(130) from None
        except Exception as exc:  # a bug, not bad input
            if os.environ.get("PROMPTCLI_DEBUG"):
                raise
            ERR.print(f"[bold red]internal error:[/] {type(exc).__name__}: {escape(str(exc))}\n"
                      "  set PROMPTCLI_DEBUG=1 for the traceback, and please report it")
            raise typer.Exit(70) from None
    return wrapper


ModelOpt = Annotated[Optional[str], typer.Option("--model", "-m", help="Hub id or local model folder.")]
VerbalizerOpt = Annotated[Optional[Path], typer.Option(help="Verbalizer YAML overriding the template's.")]
ScorerOpt = Annotated[Scorer, typer.Option(help="Force the scorer; auto detects it from the model config.")]
LabelFieldOpt = Annotated[Optional[str], typer.Option(help="Data field holding the gold label [default: the template's, or 'label'].")]
DataFormatOpt = Annotated[Optional[str], typer.Option(help="jsonl, json, csv or tsv [default: from the extension].")]
MaxLengthOpt = Annotated[Optional[int], typer.Option(help="Cap on input tokens [default: the model's maximum].")]
TrustOpt = Annotated[bool, typer.Option(help="Allow model code from the hub (off unless you pass it).")]
TrainOpt = Annotated[Optional[Path], typer.Option(help="Labelled rows to draw demonstrations from.")]
ShotsOpt = Annotated[Optional[int], typer.Option(min=0, help="Number of demonstrations [default: the template's; 0: zero-shot].")]
SeedOpt = Annotated[Optional[int], typer.Option(help="Seed for demonstrations and sampling [default: the template's].")]
CacheOpt = Annotated[bool, typer.Option(help="Reuse scores of identical inputs from the score cache.")]
StoreOpt = Annotated[Optional[Path], typer.Option(help="Run store (SQLite) [default: ~/.cache/promptcli/store.sqlite].")]


@app.command()
@reports_errors
def run(
    templates: Annotated[Optional[list[Path]], typer.Argument(help="Template YAML (optional with --resume); several with --ensemble.")] = None,
    data: Annotated[Optional[Path], typer.Option("--data", "-d", help="JSONL, JSON, CSV or TSV file.")] = None,
    model: ModelOpt = None,
    verbalizer: VerbalizerOpt = None,
    out: Annotated[Optional[Path], typer.Option(help="Output folder [default: runs/<template>-<time>].")] = None,
    resume: Annotated[Optional[Path], typer.Option(help="Continue an interrupted run in this folder.")] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Examples per forward pass.")] = 32,
    scorer: ScorerOpt = Scorer.auto,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N or mps.")] = "auto",
    dtype: Annotated[str, typer.Option(help="auto, float32, bfloat16 or float16.")] = "auto",
    max_length: MaxLengthOpt = None,
    normalize: Annotated[Optional[Normalize], typer.Option(help="Causal length normalisation, or pmi [default: the template's].")] = None,
    calibrate: Annotated[Optional[Calibrate], typer.Option(help="contextual: correct by content-free inputs [default: the template's].")] = None,
    label_field: LabelFieldOpt = None,
    data_format: DataFormatOpt = None,
    skip_invalid: Annotated[bool, typer.Option(help="Skip and count invalid rows instead of stopping.")] = False,
    limit: Annotated[Optional[int], typer.Option(min=1, help="Use only the first N rows.")] = None,
    trust_remote_code: TrustOpt = False,
    train: TrainOpt = None,
    shots: ShotsOpt = None,
    seed: SeedOpt = None,
    samples: Annotated[Optional[int], typer.Option(min=1, help="Self-consistency: reasoning paths per example.")] = None,
    strategy: Annotated[Optional[Strategy], typer.Option(help="Decoding for cot / self-consistency.")] = None,
    temperature: Annotated[Optional[float], typer.Option(min=0.01, help="Sampling temperature.")] = None,
    top_k: Annotated[Optional[int], typer.Option(min=1, help="Sample among the k most likely tokens.")] = None,
    top_p: Annotated[Optional[float], typer.Option(min=0.001, max=1.0, help="Nucleus sampling mass.")] = None,
    max_new_tokens: Annotated[Optional[int], typer.Option(min=1, help="Longest reasoning to generate.")] = None,
    prefix_cache: Annotated[bool, typer.Option(help="Compute the prompt prefix all examples share once (causal).")] = True,
    cache: CacheOpt = True,
    store: StoreOpt = None,
    soft_prompt: Annotated[Optional[Path], typer.Option(help="A soft prompt folder written by `promptcli tune`.")] = None,
    force: Annotated[bool, typer.Option(help="Use a soft prompt trained for another model or template version.")] = False,
    ensemble: Annotated[bool, typer.Option(help="Several templates: also score the mean of their label log-probs.")] = False,
    weighted: Annotated[bool, typer.Option(help="Weight ensemble members by their accuracy.")] = False,
    format: Annotated[OutputFormat, typer.Option("--format", help="table, or json (metrics on stdout).")] = OutputFormat.table,
    quiet: Annotated[bool, typer.Option(help="No progress bar.")] = False,
) -> None:
    """Score a template on a data file and report accuracy, F1 and the confusion matrix."""
    from .report import print_run
    from .runner import run as run_api

    templates = templates or []
    if resume is None and (not templates or data is None):
        raise typer.BadParameter("give a TEMPLATE and --data (or --resume DIR)")
    if len(templates) > 1:
        if not ensemble:
            raise typer.BadParameter("several templates: add --ensemble, or compare them with `promptcli sweep`")
        return _ensemble_run(templates, data, model, train, shots, seed, normalize, calibrate, weighted, out,
                             batch_size, limit, device, dtype, cache, store, format, quiet)
    template = templates[0] if templates else None
    options = dict(scorer=scorer.value, device=device, dtype=dtype, max_length=max_length,
                   normalize=normalize.value if normalize else None, label_field=label_field,
                   calibrate=calibrate.value if calibrate else None,
                   data_format=data_format, skip_invalid=skip_invalid, limit=limit,
                   trust_remote_code=trust_remote_code, verbalizer=str(verbalizer) if verbalizer else None,
                   batch_size=batch_size, train=str(train) if train else None, shots=shots, seed=seed,
                   samples=samples, strategy=strategy.value if strategy else None, temperature=temperature,
                   top_k=top_k, top_p=top_p, max_new_tokens=max_new_tokens, prefix_cache=prefix_cache,
                   soft_prompt=str(soft_prompt) if soft_prompt else None, force=force)
    if resume is not None:  # only what the user typed may override (and is checked against) the stored run
        options = {k: v for k, v in options.items()
                   if v not in (None, False, "auto") and k not in ("batch_size", "prefix_cache")}
    result = run_api(template, data, model, out=out, resume=resume, progress=not quiet, cache=cache,
                     store=store, command=shlex.join(["promptcli", *sys.argv[1:]]), **options)
    if format is OutputFormat.json:
        print(json.dumps(result.summary()))
    else:
        print_run(result, OUT)


def _ensemble_run(templates, data, model, train, shots, seed, normalize, calibrate, weighted, out, batch_size,
                  limit, device, dtype, cache, store, format, quiet) -> None:
    """`run T1 T2 … --ensemble`: a one-model sweep over the templates, with their ensemble."""
    from .sweep import SweepOptions, SweepSpec

    if not model:
        raise typer.BadParameter("--model is needed with --ensemble")
    spec = SweepSpec(data=str(data), train=str(train) if train else None, templates=[str(t) for t in templates],
                     models=[model], shots=[shots], seeds=[seed], normalize=[normalize.value if normalize else None],
                     calibrate=[calibrate.value if calibrate else None], ensemble=True, weighted=weighted,
                     options=SweepOptions(batch_size=batch_size, limit=limit, device=device, dtype=dtype))
    _run_and_print_sweep(spec, out, cache, store, format, quiet)


def _run_and_print_sweep(spec, out, cache, store, format, quiet) -> None:
    from .leaderboard import Row
    from .report import leaderboard_table
    from .sweep import default_sweep_dir, run_sweep

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
    from .sweep import SweepSpec, load_sweep

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
    _run_and_print_sweep(spec, out, cache, store, format, quiet)


def _is_sweep_file(path: Path) -> bool:
    from .yamlfile import load_yaml

    return path.suffix in (".yaml", ".yml") and "templates" in load_yaml(path).data


class Init(str, Enum):
    random = "random"
    vocab = "vocab"
    text = "text"
    labels = "labels"


@app.command()
@reports_errors
def tune(
    template: Annotated[Path, typer.Argument(help="Template YAML (soft tokens where it writes {{ soft(n) }}, else a prefix).")],
    train: Annotated[Path, typer.Option(help="Labelled training rows.")],
    model: ModelOpt = None,
    dev: Annotated[Optional[Path], typer.Option(help="Labelled rows for evaluation, early stopping and the best checkpoint.")] = None,
    verbalizer: VerbalizerOpt = None,
    out: Annotated[Optional[Path], typer.Option(help="Folder for the soft prompt [default: runs/tune-<template>-<time>].")] = None,
    virtual_tokens: Annotated[int, typer.Option(min=1, help="Soft tokens (must match the template's soft slots, if any).")] = 20,
    init: Annotated[Init, typer.Option(help="random (±0.5), vocab (frequent tokens), text, or labels (label words).")] = Init.random,
    init_text: Annotated[Optional[str], typer.Option(help="The text for --init text.")] = None,
    epochs: Annotated[int, typer.Option(min=1)] = 30,
    lr: Annotated[float, typer.Option(min=0.0, help="Learning rate.")] = 3e-2,
    optimizer: Annotated[str, typer.Option(help="adamw or adafactor.")] = "adamw",
    weight_decay: Annotated[float, typer.Option(min=0.0)] = 0.0,
    schedule: Annotated[str, typer.Option(help="linear or constant (after the warmup).")] = "linear",
    warmup: Annotated[int, typer.Option(min=0, help="Warmup steps.")] = 0,
    max_grad_norm: Annotated[float, typer.Option(min=0.0, help="Gradient clipping.")] = 1.0,
    accumulation: Annotated[int, typer.Option(min=1, help="Batches per optimizer step.")] = 1,
    batch_size: Annotated[int, typer.Option(min=1)] = 8,
    eval_every: Annotated[int, typer.Option(min=0, help="Evaluate on --dev every K steps [default: each epoch].")] = 0,
    patience: Annotated[Optional[int], typer.Option(min=1, help="Stop after this many evaluations without improvement.")] = None,
    seed: Annotated[int, typer.Option()] = 42,
    precision: Annotated[str, typer.Option(help="fp32, bf16 or fp16 (autocast).")] = "fp32",
    gradient_checkpointing: Annotated[bool, typer.Option(help="Trade compute for memory (puts the model in train mode).")] = False,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N or mps.")] = "auto",
    max_length: MaxLengthOpt = None,
    label_field: LabelFieldOpt = None,
    limit: Annotated[Optional[int], typer.Option(min=1, help="Use only the first N rows of each file.")] = None,
    resume: Annotated[bool, typer.Option(help="Continue from the last checkpoint in --out.")] = False,
    quiet: Annotated[bool, typer.Option(help="No progress bar.")] = False,
) -> None:
    """Learn a soft prompt (prompt embeddings only; every model weight stays frozen)."""
    from .tuning import tune as tune_api

    if resume and out is None:
        raise typer.BadParameter("--resume needs the --out folder of the interrupted run")
    result = tune_api(template, train, model, out=out, dev=dev, resume=resume, progress=not quiet,
                      verbalizer=str(verbalizer) if verbalizer else None, virtual_tokens=virtual_tokens,
                      init=init.value, init_text=init_text, epochs=epochs, lr=lr, optimizer=optimizer,
                      weight_decay=weight_decay, schedule=schedule, warmup=warmup, max_grad_norm=max_grad_norm,
                      accumulation=accumulation, batch_size=batch_size, eval_every=eval_every, patience=patience,
                      seed=seed, precision=precision, gradient_checkpointing=gradient_checkpointing, device=device,
                      max_length=max_length, label_field=label_field, limit=limit)
    training = result.manifest["training"]
    table = Table(title=f"tune · {result.out_dir}", show_header=False, title_justify="left")
    rows = [("dev accuracy, untrained", result.initial_dev_accuracy), ("dev accuracy, best", result.best_dev_accuracy)]
    for label, value in rows:
        table.add_row(label, "—" if value is None else f"{100 * value:.2f}")
    table.add_row("optimizer steps", str(training["steps"]))
    table.add_row("steps/s", str(training["steps_per_s"]))
    table.add_row("trainable / frozen parameters",
                  f"{result.manifest['parameters']['trainable']:,} / {result.manifest['parameters']['frozen']:,}")
    table.add_row("peak memory (MB)", f"{training['memory']['peak_rss_mb']:.0f}")
    table.add_row("stopped early", "yes" if training["stopped_early"] else "no")
    OUT.print(table)


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
    from .report import runs_table
    from .runner import open_store

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
    from .runner import open_store

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
    from .compare import compare_table
    from .runner import open_store

    OUT.print(compare_table(open_store(store or True).compare(run_ids)))


@app.command()
@reports_errors
def render(
    template: Annotated[Path, typer.Argument(help="Template YAML.")],
    data: Annotated[Path, typer.Option("--data", "-d", help="JSONL, JSON, CSV or TSV file.")],
    model: Annotated[Optional[str], typer.Option("--model", "-m", help="Show token-level input for this model (tokenizer only, no weights).")] = None,
    verbalizer: VerbalizerOpt = None,
    limit: Annotated[int, typer.Option(min=1, help="Rows to show.")] = 3,
    scorer: ScorerOpt = Scorer.auto,
    max_length: MaxLengthOpt = None,
    label_field: LabelFieldOpt = None,
    data_format: DataFormatOpt = None,
    trust_remote_code: TrustOpt = False,
    train: TrainOpt = None,
    shots: ShotsOpt = None,
    seed: SeedOpt = None,
    soft_prompt: Annotated[Optional[Path], typer.Option(help="Show where a soft prompt's tokens go.")] = None,
    force: Annotated[bool, typer.Option(help="Accept a soft prompt trained for another model or template.")] = False,
    format: Annotated[OutputFormat, typer.Option("--format", help="table (readable) or json (one object per row).")] = OutputFormat.table,
) -> None:
    """Show exactly what the model sees for the first rows (demonstrations and chat format included)."""
    from .preview import render_rows

    rows = render_rows(str(template), str(data), model=model, verbalizer=str(verbalizer) if verbalizer else None,
                       limit=limit, label_field=label_field, data_format=data_format, scorer=scorer.value,
                       max_length=max_length, trust_remote_code=trust_remote_code,
                       train=str(train) if train else None, shots=shots, seed=seed,
                       soft_prompt=str(soft_prompt) if soft_prompt else None, force=force)
    for row in rows:
        if format is OutputFormat.json:
            print(json.dumps(row, ensure_ascii=False))
            continue
        OUT.print(Rule(f"row {row['index']} (line {row['line']})" + (f" · gold: {row['gold']}" if row["gold"] else "")))
        for key in ("text", "prompt", "context"):
            if key in row and not (key == "context" and "text" in row):
                OUT.print(escape(row[key]), highlight=False)
        if "continuations" in row:
            OUT.print(Rule("continuations (scored after the context)", style="dim"))
            for label, texts in row["continuations"].items():
                OUT.print(f"[bold]{escape(label)}[/]: " + " | ".join(escape(repr(t)) for t in texts), highlight=False)
        if "label_tokens" in row:
            OUT.print(Rule("label word tokens (one mask each)", style="dim"))
            for label, tokens in row["label_tokens"].items():
                OUT.print(f"[bold]{escape(label)}[/]: {escape(str(tokens))}", highlight=False)
        if "tokens" in row:
            OUT.print(f"[dim]{row['tokens']} tokens{' · truncated' if row['truncated'] else ''}[/]")


@app.command()
@reports_errors
def validate(
    paths: Annotated[list[str], typer.Argument(help="Template / verbalizer files or folders.")],
    model: Annotated[Optional[str], typer.Option("--model", "-m", help="Also check tokenisation with this model's tokenizer.")] = None,
    scorer: ScorerOpt = Scorer.auto,
    trust_remote_code: TrustOpt = False,
) -> None:
    """Check template and verbalizer files; with --model, also their tokenisation."""
    from .lint import validate_paths

    findings = validate_paths(paths, model=model, scorer=scorer.value, trust_remote_code=trust_remote_code)
    table = Table(title="validate" + (f" · {model}" if model else ""), title_justify="left")
    for column in ("file", "kind", "result"):
        table.add_column(column)
    for f in findings:
        table.add_row(escape(f.path), f.kind, ("[green]ok[/] " if f.ok else "[red]error[/] ") + escape(f.message))
    OUT.print(table)
    bad = sum(not f.ok for f in findings)
    if bad:
        ERR.print(f"[red]{bad} of {len(findings)} files have errors")
        raise typer.Exit(2)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
