"""`run`, `render` and `validate`: the commands on one template."""
from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape
from rich.rule import Rule
from rich.table import Table

from .common import (ERR, OUT, CacheOpt, Calibrate, DataFormatOpt, LabelFieldOpt, MaxLengthOpt, ModelOpt, Normalize,
                     OutputFormat, Scorer, ScorerOpt, SeedOpt, ShotsOpt, StoreOpt, Strategy, TrainOpt, TrustOpt,
                     VerbalizerOpt, app, reports_errors)

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
    from ..report import print_run
    from ..runner import run as run_api

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
    from ..sweep import SweepOptions, SweepSpec
    from .sweeps import run_and_print_sweep

    if not model:
        raise typer.BadParameter("--model is needed with --ensemble")
    spec = SweepSpec(data=str(data), train=str(train) if train else None, templates=[str(t) for t in templates],
                     models=[model], shots=[shots], seeds=[seed], normalize=[normalize.value if normalize else None],
                     calibrate=[calibrate.value if calibrate else None], ensemble=True, weighted=weighted,
                     options=SweepOptions(batch_size=batch_size, limit=limit, device=device, dtype=dtype))
    run_and_print_sweep(spec, out, cache, store, format, quiet)


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
    from ..preview import render_rows

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
    from ..lint import validate_paths

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
