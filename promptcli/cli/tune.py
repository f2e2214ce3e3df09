"""`tune`: learn a soft prompt."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from ..spec import options
from ..spec.options import choices
from .common import OUT, Calibrate, DeviceOpt, LabelFieldOpt, MaxLengthOpt, ModelOpt, Normalize, VerbalizerOpt, app, given, \
    reports_errors

Init = choices(options.Init, "Init")
Optimizer = choices(options.Optimizer, "Optimizer")
Schedule = choices(options.Schedule, "Schedule")
Precision = choices(options.Precision, "Precision")
Method = choices(options.TuneMethod, "Method")
EncoderKind = choices(options.EncoderKind, "EncoderKind")
TRAINING, SCORING = "Training", "Scoring (default: the template's; recorded for run --soft-prompt)"


@app.command()
@reports_errors
def tune(
    template: Annotated[Optional[Path], typer.Argument(help="Template YAML (soft tokens where it writes {{ soft(n) }}, else a prefix).")] = None,
    train: Annotated[Optional[Path], typer.Option(help="Labelled training rows (and the demonstrations of a few-shot template); needed unless --resume.")] = None,
    model: ModelOpt = None,
    dev: Annotated[Optional[Path], typer.Option(help="Labelled rows for evaluation, early stopping and the best checkpoint.")] = None,
    verbalizer: VerbalizerOpt = None,
    out: Annotated[Optional[Path], typer.Option(help="Folder for the soft prompt \\[default: runs/tune-<template>-<time>].")] = None,
    virtual_tokens: Annotated[Optional[int], typer.Option(min=1, help="Soft tokens (must match the template's soft slots, if any) \\[default: 20].")] = None,
    init: Annotated[Optional[Init], typer.Option(help="random (±0.5), vocab (frequent tokens), text, or labels (label words) \\[default: random].")] = None,
    init_text: Annotated[Optional[str], typer.Option(help="The text for --init text.")] = None,
    method: Annotated[Optional[Method], typer.Option(help="prompt (the embeddings train), p-tuning (a prompt encoder produces them; only its output is saved) or prefix (key/value prefixes at every layer) \\[default: prompt].")] = None,
    encoder: Annotated[Optional[EncoderKind], typer.Option(help="P-tuning's prompt encoder: mlp or lstm \\[default: mlp].")] = None,
    prefix_projection: Annotated[Optional[bool], typer.Option("--prefix-projection", help="Prefix tuning through an MLP (Li & Liang): the table is its output during training; only the table is saved.")] = None,
    encoder_hidden: Annotated[Optional[int], typer.Option(min=1, help="The prompt encoder's or prefix projection's width \\[default: its input width].")] = None,
    epochs: Annotated[Optional[int], typer.Option(min=1, help="Passes over the training rows \\[default: 30].", rich_help_panel=TRAINING)] = None,
    lr: Annotated[Optional[float], typer.Option(min=0.0, help="Learning rate \\[default: 0.03].", rich_help_panel=TRAINING)] = None,
    optimizer: Annotated[Optional[Optimizer], typer.Option(help="adamw, adafactor, or sgd (momentum 0.9) \\[default: adamw].", rich_help_panel=TRAINING)] = None,
    weight_decay: Annotated[Optional[float], typer.Option(min=0.0, help="Decoupled weight decay of the prompt \\[default: 0].", rich_help_panel=TRAINING)] = None,
    schedule: Annotated[Optional[Schedule], typer.Option(help="Learning-rate schedule after the warmup \\[default: linear].", rich_help_panel=TRAINING)] = None,
    warmup: Annotated[Optional[int], typer.Option(min=0, help="Warmup steps \\[default: 0].", rich_help_panel=TRAINING)] = None,
    max_grad_norm: Annotated[Optional[float], typer.Option(min=0.0, help="Gradient clipping \\[default: 1].", rich_help_panel=TRAINING)] = None,
    accumulation: Annotated[Optional[int], typer.Option(min=1, help="Batches per optimizer step \\[default: 1].", rich_help_panel=TRAINING)] = None,
    batch_size: Annotated[Optional[int], typer.Option(min=1, help="Training rows per batch \\[default: 8].", rich_help_panel=TRAINING)] = None,
    max_steps: Annotated[Optional[int], typer.Option(min=1, help="Stop after this many optimizer steps \\[default: all the epochs].", rich_help_panel=TRAINING)] = None,
    eval_every: Annotated[Optional[int], typer.Option(min=0, help="Evaluate on --dev every K steps; 0: each epoch \\[default: about ten evaluations in all, and after the last step].", rich_help_panel=TRAINING)] = None,
    patience: Annotated[Optional[int], typer.Option(min=1, help="Stop after this many evaluations without improvement.", rich_help_panel=TRAINING)] = None,
    seed: Annotated[Optional[int], typer.Option(help="Seed of the initial prompt and the data order \\[default: 42].", rich_help_panel=TRAINING)] = None,
    precision: Annotated[Optional[Precision], typer.Option(help="Autocast precision \\[default: fp32].", rich_help_panel=TRAINING)] = None,
    gradient_checkpointing: Annotated[Optional[bool], typer.Option("--gradient-checkpointing", help="Trade compute for memory (puts the model in train mode).", rich_help_panel=TRAINING)] = None,
    normalize: Annotated[Optional[Normalize], typer.Option(help="Causal length normalisation, or pmi, that training "
                                                           "optimises.", rich_help_panel=SCORING)] = None,
    calibrate: Annotated[Optional[Calibrate], typer.Option(help="contextual: train through the content-free "
                                                           "correction.", rich_help_panel=SCORING)] = None,
    shots: Annotated[Optional[int], typer.Option(min=0, help="Demonstrations per prompt, drawn from --train \\[default: the template's].", rich_help_panel=SCORING)] = None,
    device: DeviceOpt = None,
    max_length: MaxLengthOpt = None,
    label_field: LabelFieldOpt = None,
    limit: Annotated[Optional[int], typer.Option(min=1, help="Use only the first N rows of each file.")] = None,
    dev_subsample: Annotated[Optional[int], typer.Option(min=1, help="Evaluate on a seeded sample of N --dev rows, stratified by label.")] = None,
    dev_rows: Annotated[Optional[str], typer.Option(help="Evaluate on a range of --dev rows, e.g. 200:300 (0-based, end excluded).")] = None,
    resume: Annotated[Optional[Path], typer.Option(help="Continue the interrupted tune in this folder, with its own options (like run --resume).")] = None,
    quiet: Annotated[bool, typer.Option(help="No progress bar.")] = False,
) -> None:
    """Learn a soft prompt (prompt embeddings only; every model weight stays frozen)."""
    from ..report.format import pct
    from ..tuning.tuner import tune as tune_api

    if resume is None and (template is None or train is None):
        raise typer.BadParameter("a TEMPLATE and --train are needed (or --resume DIR)")
    result = tune_api(template, train, model, out=out, dev=dev, resume=resume or False, progress=not quiet, **given(
        verbalizer=verbalizer, virtual_tokens=virtual_tokens, init=init, init_text=init_text, method=method,
        encoder=encoder, prefix_projection=prefix_projection, encoder_hidden=encoder_hidden, epochs=epochs, lr=lr,
        optimizer=optimizer, weight_decay=weight_decay, schedule=schedule, warmup=warmup, max_grad_norm=max_grad_norm,
        accumulation=accumulation, batch_size=batch_size, max_steps=max_steps, eval_every=eval_every, patience=patience, seed=seed,
        precision=precision, gradient_checkpointing=gradient_checkpointing, normalize=normalize, calibrate=calibrate,
        shots=shots, device=device, max_length=max_length, label_field=label_field, limit=limit,
        dev_subsample=dev_subsample, dev_rows=dev_rows))
    training = result.manifest.training
    table = Table(title=f"tune · {result.out_dir}", show_header=False, title_justify="left")
    rows = [("dev accuracy, untrained", result.initial_dev_accuracy), ("dev accuracy, best", result.best_dev_accuracy)]
    for label, value in rows:
        table.add_row(label, "—" if value is None else pct(value))
    table.add_row("optimizer steps", str(training["steps"]))
    table.add_row("steps/s", str(training["steps_per_s"]))
    parameters = result.manifest.parameters
    table.add_row("trainable / frozen parameters", f"{parameters['trainable']:,} / {parameters['frozen']:,}")
    table.add_row("peak memory (MB)", f"{training['memory']['peak_rss_mb']:.0f}")
    table.add_row("stopped early", "yes" if training["stopped_early"] else "no")
    table.add_row("scoring", " · ".join(f"{k} {v}" for k, v in result.manifest.scoring.items()))
    OUT.print(table)
