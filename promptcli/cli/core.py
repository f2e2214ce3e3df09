"""`run`, `render` and `validate`: the commands on one template.

Options left out are not passed on, so the library's defaults, the template's settings and the
library's resume rule decide them; the CLI parses, makes one call, and prints.
"""
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

from ..errors import SpecError
from .common import (ERR, OUT, Calibrate, DataFormat, DataFormatOpt, DeviceMap, DeviceOpt, Dtype, LabelFieldOpt, MaxLengthOpt,
                     ModelOpt, Normalize, OutputFormat, ScorerOpt, SeedOpt, ShotsOpt, Strategy, TrainOpt, TrustOpt, VerbalizerOpt,
                     app, given, main_process, reports_errors)

DATA, SCORING, DEMOS, DECODING, OUTPUT = "Data", "Scoring", "Demonstrations", "Decoding (cot, self-consistency)", \
    "Output and resuming"


@app.command()
@reports_errors
def run(
    templates: Annotated[Optional[list[Path]], typer.Argument(help="Template YAML (optional with --resume); several with --ensemble.")] = None,
    data: Annotated[Optional[Path], typer.Option("--data", "-d", help="JSONL, JSON, CSV or TSV file.", rich_help_panel=DATA)] = None,
    label_field: Annotated[Optional[str], typer.Option(help="Data field holding the gold label \\[default: the template's, or 'label'].", rich_help_panel=DATA)] = None,
    data_format: Annotated[Optional[DataFormat], typer.Option(help="The data file's format \\[default: from the extension].", rich_help_panel=DATA)] = None,
    skip_invalid: Annotated[Optional[bool], typer.Option("--skip-invalid", help="Skip and count invalid rows instead of stopping.", rich_help_panel=DATA)] = None,
    limit: Annotated[Optional[int], typer.Option(min=1, help="Use only the first N rows.", rich_help_panel=DATA)] = None,
    subsample: Annotated[Optional[int], typer.Option(min=1, help="A seeded sample of N rows (--seed), stratified by label, in file order.", rich_help_panel=DATA)] = None,
    rows: Annotated[Optional[str], typer.Option(help="A range of rows, e.g. 200:300 (0-based, end excluded).", rich_help_panel=DATA)] = None,
    model: ModelOpt = None,
    verbalizer: VerbalizerOpt = None,
    scorer: ScorerOpt = None,
    device: DeviceOpt = None,
    dtype: Annotated[Optional[Dtype], typer.Option(help="Weights' precision \\[default: auto: float32 on CPU, bfloat16 on GPUs].")] = None,
    device_map: Annotated[Optional[DeviceMap], typer.Option(help="Spread one model too big for a GPU over all of this process's GPUs (and CPU memory): auto, balanced, balanced_low_0 or sequential (needs accelerate).")] = None,
    batch_size: Annotated[Optional[int], typer.Option(min=1, help="Examples per forward pass \\[default: 32].")] = None,
    max_length: MaxLengthOpt = None,
    trust_remote_code: TrustOpt = None,
    normalize: Annotated[Optional[Normalize], typer.Option(help="Causal length normalisation, or pmi \\[default: the template's].", rich_help_panel=SCORING)] = None,
    calibrate: Annotated[Optional[Calibrate], typer.Option(help="contextual: correct by content-free inputs \\[default: the template's].", rich_help_panel=SCORING)] = None,
    prefix_cache: Annotated[Optional[bool], typer.Option("--prefix-cache/--no-prefix-cache", help="Compute the prompt prefix all examples share once (causal) \\[default: on].", rich_help_panel=SCORING)] = None,
    soft_prompt: Annotated[Optional[Path], typer.Option(help="A soft prompt folder written by `promptcli tune`.", rich_help_panel=SCORING)] = None,
    force: Annotated[Optional[bool], typer.Option("--force", help="Use a soft prompt trained for another model or template version.", rich_help_panel=SCORING)] = None,
    ensemble: Annotated[bool, typer.Option(help="Several templates: also score the mean of their label log-probs.", rich_help_panel=SCORING)] = False,
    weighted: Annotated[bool, typer.Option(help="Weight ensemble members by their accuracy.", rich_help_panel=SCORING)] = False,
    train: Annotated[Optional[Path], typer.Option(help="Labelled rows to draw demonstrations from.", rich_help_panel=DEMOS)] = None,
    shots: Annotated[Optional[int], typer.Option(min=0, help="Number of demonstrations \\[default: the template's; 0: zero-shot].", rich_help_panel=DEMOS)] = None,
    seed: Annotated[Optional[int], typer.Option(help="Seed for demonstrations and sampling \\[default: the template's].", rich_help_panel=DEMOS)] = None,
    samples: Annotated[Optional[int], typer.Option(min=1, help="Self-consistency: reasoning paths per example.", rich_help_panel=DECODING)] = None,
    strategy: Annotated[Optional[Strategy], typer.Option(help="greedy or sample.", rich_help_panel=DECODING)] = None,
    temperature: Annotated[Optional[float], typer.Option(min=0.01, help="Sampling temperature.", rich_help_panel=DECODING)] = None,
    top_k: Annotated[Optional[int], typer.Option(min=1, help="Sample among the k most likely tokens.", rich_help_panel=DECODING)] = None,
    top_p: Annotated[Optional[float], typer.Option(min=0.001, max=1.0, help="Nucleus sampling mass.", rich_help_panel=DECODING)] = None,
    max_new_tokens: Annotated[Optional[int], typer.Option(min=1, help="Longest reasoning to generate.", rich_help_panel=DECODING)] = None,
    out: Annotated[Optional[Path], typer.Option(help="Output folder \\[default: runs/<template>-<time>].", rich_help_panel=OUTPUT)] = None,
    resume: Annotated[Optional[Path], typer.Option(help="Continue an interrupted run in this folder (device, batch size and prefix cache may change).", rich_help_panel=OUTPUT)] = None,
    cache: Annotated[Optional[bool], typer.Option("--cache/--no-cache", help="Reuse scores of identical inputs from the score cache \\[default: on; --resume: the run's choice].", rich_help_panel=OUTPUT)] = None,
    store: Annotated[Optional[Path], typer.Option(help="Run store (SQLite) \\[default: ~/.cache/promptcli/store.sqlite].", rich_help_panel=OUTPUT)] = None,
    format: Annotated[OutputFormat, typer.Option("--format", help="table, or json (metrics on stdout).", rich_help_panel=OUTPUT)] = OutputFormat.table,
    quiet: Annotated[bool, typer.Option(help="No progress bar.", rich_help_panel=OUTPUT)] = False,
    verbose: Annotated[bool, typer.Option(help="Show torch and transformers warnings instead of logging them to warnings.log in the output folder.", rich_help_panel=OUTPUT)] = False,
) -> None:
    """Score a template on a data file and report accuracy, F1 and the confusion matrix."""
    templates = templates or []
    if resume is None and (not templates or data is None):
        raise typer.BadParameter("give a TEMPLATE and --data (or --resume DIR)")
    options = given(verbalizer=verbalizer, scorer=scorer, device=device, dtype=dtype, device_map=device_map,
                    batch_size=batch_size,
                    max_length=max_length, normalize=normalize, calibrate=calibrate, label_field=label_field,
                    data_format=data_format, skip_invalid=skip_invalid, limit=limit, subsample=subsample, rows=rows,
                    trust_remote_code=trust_remote_code, train=train, shots=shots, seed=seed, samples=samples,
                    prefix_cache=prefix_cache, strategy=strategy, temperature=temperature, top_k=top_k, top_p=top_p,
                    max_new_tokens=max_new_tokens, soft_prompt=soft_prompt, force=force)
    if len(templates) > 1:
        if not ensemble:
            raise typer.BadParameter("several templates: add --ensemble, or compare them with `promptcli sweep`")
        return _ensemble_run(templates, data, model, options, weighted, out, cache, store, format, quiet)
    from ..evaluation.runner import run as run_api
    from ..report.terminal import print_run

    result = run_api(templates[0] if templates else None, data, model, out=out, resume=resume, progress=not quiet,
                     cache=cache, store=store, command=shlex.join(["promptcli", *sys.argv[1:]]), verbose=verbose,
                     **options)
    if not main_process():
        return  # under torchrun / accelerate launch the first process prints
    if format is OutputFormat.json:
        print(json.dumps(result.summary()))
    else:
        print_run(result, OUT)


def _ensemble_run(templates: list[Path], data: Path | None, model: str | None, options: dict, weighted: bool,
                  out: Path | None, cache: bool, store: Path | None, format: OutputFormat, quiet: bool) -> None:
    """`run T1 T2 … --ensemble`: a one-model sweep over the templates with every run option, and their ensemble."""
    from ..spec.sweepfile import SweepSpec
    from .sweeps import run_and_print_sweep

    if not model:
        raise typer.BadParameter("--model is needed with --ensemble")
    if "soft_prompt" in options:
        raise typer.BadParameter("--soft-prompt belongs to the one template it was trained with; it cannot join "
                                 "an ensemble")
    options.pop("force", None)
    spec = SweepSpec(data=str(data), train=options.pop("train", None), templates=[str(t) for t in templates],
                     models=[model], verbalizers=[options.pop("verbalizer", None)], shots=[options.pop("shots", None)],
                     seeds=[options.pop("seed", None)], normalize=[options.pop("normalize", None)],
                     calibrate=[options.pop("calibrate", None)], ensemble=True, weighted=weighted, options=options)
    run_and_print_sweep(spec, out, cache, store, format, quiet)


@app.command()
@reports_errors
def render(
    template: Annotated[Path, typer.Argument(help="Template YAML.")],
    data: Annotated[Path, typer.Option("--data", "-d", help="JSONL, JSON, CSV or TSV file.")],
    model: Annotated[Optional[str], typer.Option("--model", "-m", help="Show token-level input for this model (tokenizer only, no weights).")] = None,
    verbalizer: VerbalizerOpt = None,
    limit: Annotated[int, typer.Option(min=1, help="Rows to show.")] = 3,
    scorer: ScorerOpt = None,
    max_length: MaxLengthOpt = None,
    label_field: LabelFieldOpt = None,
    data_format: DataFormatOpt = None,
    trust_remote_code: TrustOpt = None,
    train: TrainOpt = None,
    shots: ShotsOpt = None,
    seed: SeedOpt = None,
    soft_prompt: Annotated[Optional[Path], typer.Option(help="Show where a soft prompt's tokens go.")] = None,
    force: Annotated[Optional[bool], typer.Option("--force", help="Accept a soft prompt trained for another model or template.")] = None,
    format: Annotated[OutputFormat, typer.Option("--format", help="table (readable) or json (one object per row).")] = OutputFormat.table,
) -> None:
    """Show exactly what the model sees for the first rows (demonstrations and chat format included)."""
    from ..evaluation.preview import render_rows

    rows = render_rows(str(template), str(data), model=model, limit=limit, **given(
        verbalizer=verbalizer, label_field=label_field, data_format=data_format, scorer=scorer, max_length=max_length,
        trust_remote_code=trust_remote_code, train=train, shots=shots, seed=seed, soft_prompt=soft_prompt,
        force=force))
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
    scorer: ScorerOpt = None,
    trust_remote_code: TrustOpt = None,
    format: Annotated[OutputFormat, typer.Option("--format", help="table, or json (one object per file).")] = OutputFormat.table,
) -> None:
    """Check template and verbalizer files; with --model, also their tokenisation (a file that does not apply
    to the model, such as a chat template for a tokenizer without one, is n/a, not an error)."""
    from ..evaluation.validate import validate_paths

    findings = validate_paths(paths, model=model, **given(scorer=scorer, trust_remote_code=trust_remote_code))
    if format is OutputFormat.json:
        print(json.dumps([{"path": f.path, "kind": f.kind, "status": f.status, "message": f.message}
                          for f in findings]))
    else:
        table = Table(title="validate" + (f" · {model}" if model else ""), title_justify="left")
        for column in ("file", "kind", "result"):
            table.add_column(column)
        shown = {"ok": "[green]ok[/] ", "error": "[red]error[/] ", "n/a": "[dim]n/a[/] "}
        for f in findings:
            table.add_row(escape(f.path), f.kind, shown[f.status] + escape(f.message))
        OUT.print(table)
    bad = sum(not f.ok for f in findings)
    if bad:
        ERR.print(f"[red]{bad} of {len(findings)} files have errors")
        raise typer.Exit(SpecError.exit_code)
