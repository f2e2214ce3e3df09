"""`tune`: learn a soft prompt."""
from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from .common import OUT, LabelFieldOpt, MaxLengthOpt, ModelOpt, VerbalizerOpt, app, reports_errors

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
    from ..tuning import tune as tune_api

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
