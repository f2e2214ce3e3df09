"""`models`: the embedded models (installed or not) and the cache of converted GGUF models."""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape
from rich.table import Table

from .common import ERR, OUT, OutputFormat, app, reports_errors

models_app = typer.Typer(help="Embedded models and the converted-model cache.", invoke_without_command=True)
app.add_typer(models_app, name="models")


@models_app.callback()
def _default(context: typer.Context) -> None:
    """`promptcli models` alone lists them."""
    if context.invoked_subcommand is None:
        list_models(OutputFormat.table)


@models_app.command("list")
@reports_errors
def list_models(
    format: Annotated[OutputFormat, typer.Option("--format", help="table or json.")] = OutputFormat.table,
) -> None:
    """The known short names (installed or not) and every converted model in the cache."""
    from ..models.embedded import DEFAULT, MODELS
    from ..models.gguf import cache_entries, model_cache_dir

    known = [{"name": m.name, "model": m.title, "kind": m.kind, "size_mb": m.size_mb, "licence": m.licence,
              "installed": m.installed, "converted": str(m.cached()) if m.cached() else None,
              "default": m.name == DEFAULT, "install": m.install} for m in MODELS.values()]
    cache = cache_entries()
    if format is OutputFormat.json:
        print(json.dumps({"models": known, "cache": {"folder": str(model_cache_dir()), "entries": cache}}))
        return
    table = Table(title="embedded models (--model NAME)", title_justify="left")
    for column in ("name", "model", "kind", "size", "licence", "status"):
        table.add_column(column)
    for m in known:
        status = ("[green]converted[/]" if m["converted"] else "[green]installed[/] (converted on first use)"
                  ) if m["installed"] else f"[yellow]not installed[/]: {escape(m['install'])}"
        table.add_row(m["name"] + (" (default)" if m["default"] else ""), m["model"], m["kind"],
                      f"{m['size_mb']} MB", m["licence"], status)
    OUT.print(table)
    folder = model_cache_dir()
    if not cache:
        OUT.print(f"converted-model cache: {escape(str(folder))} (empty)", highlight=False)
        return
    listing = Table(title=f"converted-model cache: {escape(str(folder))}", title_justify="left")
    for column in ("name", "from", "quantization", "size", "state"):
        listing.add_column(column)
    for entry in cache:
        gguf = entry["gguf"] or {}
        listing.add_row(escape(entry["name"]), escape(Path(gguf.get("file", "?")).name), gguf.get("quantization", "?"),
                        f"{entry['bytes'] / 2**20:,.0f} MB",
                        "ok" if entry["complete"] else "[yellow]incomplete (removed and rebuilt on use)[/]")
    OUT.print(listing)
    OUT.print(f"total {sum(e['bytes'] for e in cache) / 2**20:,.0f} MB; `promptcli models rm --all` clears it")


@models_app.command("rm")
@reports_errors
def remove(
    names: Annotated[Optional[list[str]], typer.Argument(help="Short names or cache folder names to remove.")] = None,
    all: Annotated[bool, typer.Option("--all", help="Remove every converted model.")] = False,
) -> None:
    """Remove converted models from the cache (the installed packages stay; they convert again on use)."""
    from ..models.gguf import cache_entries

    entries = cache_entries()
    if not all and not names:
        raise typer.BadParameter("name the models to remove, or pass --all")
    chosen = entries if all else [e for e in entries if e["name"] in names or Path(e["folder"]).name in names]
    unknown = [] if all else [n for n in names if not any(n in (e["name"], Path(e["folder"]).name) for e in entries)]
    for entry in chosen:
        shutil.rmtree(entry["folder"], ignore_errors=True)
        OUT.print(f"removed {escape(entry['folder'])} ({entry['bytes'] / 2**20:,.0f} MB)", highlight=False)
    if unknown:
        ERR.print(f"[yellow]not in the cache:[/] {escape(', '.join(unknown))}")
        raise typer.Exit(1)


@models_app.command("convert")
@reports_errors
def convert(
    model: Annotated[str, typer.Argument(help="An embedded model's short name, a .gguf file, or a folder with one.")],
) -> None:
    """Convert a GGUF model now (runs do it on first use), e.g. while building a machine image."""
    from ..models.info import resolve_model

    path, source = resolve_model(model)
    if source is None:
        raise typer.BadParameter(f"'{model}' is not a GGUF model or an embedded model's name")
    OUT.print(f"{escape(model)} → {escape(path)} ({source['quantization']}, sha256 {source['sha256'][:16]}…)",
              highlight=False)
