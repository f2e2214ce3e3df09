"""`search`: prompts found from data (`search words`: label words)."""
from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape
from rich.table import Table

from .common import (OUT, Calibrate, DataFormatOpt, DeviceOpt, LabelFieldOpt, MaxLengthOpt, ModelOpt, Normalize,
                     ScorerOpt, TrustOpt, app, given, reports_errors)

search_app = typer.Typer(no_args_is_help=True, help="Find prompts from training data, chosen on it by cross-validation.")
app.add_typer(search_app, name="search")
SEARCH = "Search"


@search_app.command("words")
@reports_errors
def words(
    template: Annotated[Path, typer.Argument(help="Template YAML with an answer slot.")],
    train: Annotated[Path, typer.Option(help="Labelled training rows: the only rows the search reads.")],
    out: Annotated[Path, typer.Option(help="Folder for verbalizer-N.yaml, candidates.yaml and search.json.")],
    model: ModelOpt = None,
    top_k: Annotated[int, typer.Option(min=1, help="Candidate words per label (and per fold).", rich_help_panel=SEARCH)] = 10,
    pool: Annotated[int, typer.Option(min=1, help="Candidates are ranked by lift among the label's this many most likely words.", rich_help_panel=SEARCH)] = 100,
    max_words: Annotated[int, typer.Option(min=1, help="Words per label (more than 1: added greedily while cross-validated accuracy rises).", rich_help_panel=SEARCH)] = 1,
    folds: Annotated[int, typer.Option(min=2, help="Cross-validation folds (at most the rows of the rarest label).", rich_help_panel=SEARCH)] = 4,
    keep: Annotated[int, typer.Option(min=1, help="Verbalizer files to write, best first.", rich_help_panel=SEARCH)] = 3,
    seed_words: Annotated[bool, typer.Option("--seed-words", help="The template's own label words join the candidates.", rich_help_panel=SEARCH)] = False,
    max_assignments: Annotated[int, typer.Option(min=1, help="Cap on one-word-per-label assignments tried (weakest candidates dropped first).", rich_help_panel=SEARCH)] = 100_000,
    seed: Annotated[int, typer.Option(help="Seed of the folds.", rich_help_panel=SEARCH)] = 0,
    normalize: Annotated[Optional[Normalize], typer.Option(help="Causal length normalisation, or pmi \\[default: the template's].")] = None,
    calibrate: Annotated[Optional[Calibrate], typer.Option(help="contextual: correct by content-free inputs \\[default: the template's].")] = None,
    label_field: LabelFieldOpt = None,
    data_format: DataFormatOpt = None,
    scorer: ScorerOpt = None,
    device: DeviceOpt = None,
    batch_size: Annotated[Optional[int], typer.Option(min=1, help="Examples per forward pass \\[default: 32].")] = None,
    max_length: MaxLengthOpt = None,
    trust_remote_code: TrustOpt = None,
    cache: Annotated[bool, typer.Option("--cache/--no-cache", help="Reuse word scores from the score cache.")] = True,
    quiet: Annotated[bool, typer.Option(help="No progress bar.")] = False,
) -> None:
    """Label words for a template, found on training rows (LM-BFF's automatic label words, ranked by lift) and
    chosen by cross-validated accuracy on those rows only."""
    from ..search.words import search_words

    result = search_words(template, train, model, out=out, top_k=top_k, pool=pool, folds=folds, max_words=max_words,
                          keep=keep, seed_words=seed_words, max_assignments=max_assignments, seed=seed,
                          progress=not quiet, cache=cache,
                          command=shlex.join(["promptcli", *sys.argv[1:]]), **given(
                              normalize=normalize, calibrate=calibrate, label_field=label_field,
                              data_format=data_format, scorer=scorer, device=device, batch_size=batch_size,
                              max_length=max_length, trust_remote_code=trust_remote_code))
    table = Table(title=f"label words · {result.rows} training rows · {result.assignments} assignments tried",
                  title_justify="left")
    for column in ("file", "words", "cross-validated", "all training rows"):
        table.add_column(column, justify="right" if "rows" in column or column.startswith("cross") else "left")
    for found in result.found:
        words = "; ".join(f"{label}: {' | '.join(ws)}" for label, ws in found.words.items())
        table.add_row(escape(found.path.name), escape(words), f"{found.cv:.1%}", f"{found.train:.1%}")
    table.add_row("[dim]the template's own words[/]", "", "", f"{result.given:.1%}")
    OUT.print(table)
    OUT.print(f"[dim]{result.forward_passes} forward passes, {result.seconds:.1f} s · candidates in "
              f"{escape(str(result.out_dir / 'candidates.yaml'))}[/]")


@search_app.command("formats")
@reports_errors
def formats(
    templates: Annotated[list[Path], typer.Argument(help="Base template YAML files.")],
    data: Annotated[Path, typer.Option("--data", "-d", help="Labelled rows to measure the variants on.")],
    out: Annotated[Path, typer.Option(help="Folder for the variant templates, the sweep, formats.json and formats.html.")],
    model: ModelOpt = None,
    variants: Annotated[int, typer.Option(min=1, help="Format variants per base template, the template as written included.", rich_help_panel=SEARCH)] = 12,
    seed: Annotated[int, typer.Option(help="Seed for drawing the variants.", rich_help_panel=SEARCH)] = 0,
    verbalizer: Annotated[Optional[list[Path]], typer.Option(help="Also try these label words (e.g. from `search words`); repeat for several.", rich_help_panel=SEARCH)] = None,
    vary: Annotated[Optional[str], typer.Option(help="What may change, comma-separated: names, separator, case, instruction, order \\[default: all].", rich_help_panel=SEARCH)] = None,
    orders: Annotated[int, typer.Option(min=0, help="Few-shot templates: this many permutations of the demonstrations join the variants.", rich_help_panel=SEARCH)] = 0,
    train: Annotated[Optional[Path], typer.Option(help="Labelled rows to draw demonstrations from (few-shot templates).")] = None,
    normalize: Annotated[Optional[Normalize], typer.Option(help="Causal length normalisation, or pmi \\[default: the template's].")] = None,
    calibrate: Annotated[Optional[Calibrate], typer.Option(help="contextual: correct by content-free inputs \\[default: the template's].")] = None,
    subsample: Annotated[Optional[int], typer.Option(min=1, help="A seeded sample of N rows, stratified by label.")] = None,
    label_field: LabelFieldOpt = None,
    device: DeviceOpt = None,
    batch_size: Annotated[Optional[int], typer.Option(min=1, help="Examples per forward pass \\[default: 32].")] = None,
    cache: Annotated[bool, typer.Option("--cache/--no-cache", help="Reuse scores from the score cache.")] = True,
    quiet: Annotated[bool, typer.Option(help="No progress display.")] = False,
) -> None:
    """The format spread of a prompt: equivalent-looking variants (field names, separators, casing, the
    instruction line, label words) run as one sweep; per base template, min / median / max accuracy and
    which variants are statistically tied with its best."""
    from ..search.spread import search_formats

    from ..search.formats import DIMENSIONS

    if model is None:
        raise typer.BadParameter("give the model with --model")
    varied = tuple(v.strip() for v in vary.split(",")) if vary else DIMENSIONS
    unknown = [v for v in varied if v not in DIMENSIONS]
    if unknown:
        raise typer.BadParameter(f"{', '.join(unknown)}: not one of {', '.join(DIMENSIONS)}", param_hint="--vary")
    result = search_formats(templates, data, model, out=out, count=variants, seed=seed,
                            verbalizers=[str(v) for v in verbalizer or []], train=train, vary=varied, orders=orders,
                            progress=not quiet,
                            cache=cache, **given(normalize=normalize, calibrate=calibrate, subsample=subsample,
                                                 label_field=label_field, device=device, batch_size=batch_size))
    table = Table(title=f"format spread · accuracy · {escape(str(data))}", title_justify="left")
    for column in ("template", "variants", "as written", "min", "median", "max", "tied with best", "pairs differing"):
        table.add_column(column, justify="left" if column == "template" else "right")
    for s in result.spreads:
        summary = s.summary
        table.add_row(escape(s.base), str(len(s.values)), f"{s.values[s.original]:.1%}", f"{summary['min']:.1%}",
                      f"{summary['median']:.1%}", f"{summary['max']:.1%}", f"{len(s.tied)} of {len(s.values)}",
                      f"{s.significant_pairs} of {s.pairs}")
    OUT.print(table)
    for name, reason in result.skipped:
        OUT.print(f"[yellow]skipped[/] {escape(name)}: {escape(reason)}", highlight=False)
    OUT.print(f"[dim]pairs differing: McNemar's exact test, Holm over all pairs · files: {escape(str(out))}/formats.json, "
              "formats.html, sweep/report.html[/]")
