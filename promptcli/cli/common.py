"""What every command shares: the app, the consoles, option types and the error boundary.

Every user-facing error is a PromptcliError, rendered here once with its exit code.
"""
from __future__ import annotations

import os
import signal
from enum import Enum
from functools import wraps
from pathlib import Path
from typing import Annotated, Callable, Optional

import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperOption
from typer.exceptions import TyperException

from ..errors import PromptcliError
from ..spec import options
from ..spec.options import choices


def _flags_take_no_type(option: type[TyperOption]) -> None:
    """Typer 0.2x shows `<bool>` after every flag, as if it took a value (`--quiet <bool>`); a flag takes none.
    (Older typer shows nothing there and has no such method.)"""
    shown = getattr(option, "display_type_rich", None)
    if shown is not None:
        option.display_type_rich = lambda self, ctx: None if self.is_flag else shown(self, ctx)


_flags_take_no_type(TyperOption)

app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode="rich",
                  help="Declarative prompts and verbalizers for zero- and few-shot classification.")
OUT = Console()
ERR = Console(stderr=True)


def _version(value: bool) -> None:
    if value:
        from .. import __version__

        OUT.print(f"promptcli {__version__}", highlight=False)
        raise typer.Exit()


@app.callback()
def _options(version: Annotated[Optional[bool], typer.Option("--version", callback=_version, is_eager=True,
                                                             help="Print the version and exit.")] = None) -> None:
    """Declarative prompts and verbalizers for zero- and few-shot classification."""


Scorer = choices(options.Scorer, "Scorer")
Normalize = choices(options.Normalize, "Normalize")
Calibrate = choices(options.Calibrate, "Calibrate")
Strategy = choices(options.Strategy, "Strategy")
Dtype = choices(options.Dtype, "Dtype")
DeviceMap = choices(options.DeviceMap, "DeviceMap")
DataFormat = choices(options.DataFormat, "DataFormat")


class OutputFormat(str, Enum):
    table = "table"
    json = "json"


def given(**values: object) -> dict:
    """The options the user typed: an Enum becomes its value, a path its text, and an option left at
    None is left out, so the library's defaults (and its resume rule) apply to the rest."""
    out = {}
    for key, value in values.items():
        if value is None:
            continue
        out[key] = value.value if isinstance(value, Enum) else str(value) if isinstance(value, Path) else value
    return out


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C: the run is marked interrupted and can resume."""


def main_process() -> bool:
    """The first process of a torchrun / accelerate launch (or the only one): the one that prints."""
    return int(os.environ.get("RANK", "0")) == 0


def terminate_gracefully() -> None:
    def handler(signum: int, frame: object) -> None:
        raise Terminated()

    signal.signal(signal.SIGTERM, handler)


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
        except KeyboardInterrupt as exc:
            resume = getattr(exc, "resume", None)
            ERR.print("[yellow]interrupted[/]: what was computed so far is saved"
                      + (f"; continue with [bold]{escape(resume)}[/]" if resume else ""), soft_wrap=True)
            raise typer.Exit(143 if isinstance(exc, Terminated) else 130) from None
        except Exception as exc:  # a bug, not bad input
            if os.environ.get("PROMPTCLI_DEBUG"):
                raise
            ERR.print(f"[bold red]internal error:[/] {type(exc).__name__}: {escape(str(exc))}\n"
                      "  set PROMPTCLI_DEBUG=1 for the traceback, and please report it")
            raise typer.Exit(70) from None
    return wrapper


ModelOpt = Annotated[Optional[str], typer.Option("--model", "-m", help="Embedded model name (`promptcli models`), .gguf file, local folder or hub id \\[default: the template's, else gemma-3-270m].")]
VerbalizerOpt = Annotated[Optional[Path], typer.Option(help="Verbalizer YAML overriding the template's.")]
ScorerOpt = Annotated[Optional[Scorer], typer.Option(help="Force the scorer \\[default: auto, from the model config].")]
LabelFieldOpt = Annotated[Optional[str], typer.Option(help="Data field holding the gold label \\[default: the template's, or 'label'].")]
DataFormatOpt = Annotated[Optional[DataFormat], typer.Option(help="The data file's format \\[default: from the extension].")]
DeviceOpt = Annotated[Optional[str], typer.Option(help="auto, cpu, cuda, cuda:N or mps \\[default: auto].")]
MaxLengthOpt = Annotated[Optional[int], typer.Option(min=1, help="Cap on input tokens \\[default: the model's maximum].")]
TrustOpt = Annotated[Optional[bool], typer.Option("--trust-remote-code", help="Allow model code from the hub (off unless you pass it).")]
TrainOpt = Annotated[Optional[Path], typer.Option(help="Labelled rows to draw demonstrations from.")]
ShotsOpt = Annotated[Optional[int], typer.Option(min=0, help="Number of demonstrations \\[default: the template's; 0: zero-shot].")]
SeedOpt = Annotated[Optional[int], typer.Option(help="Seed for demonstrations and sampling \\[default: the template's].")]
CacheOpt = Annotated[bool, typer.Option(help="Reuse scores of identical inputs from the score cache.")]
StoreOpt = Annotated[Optional[Path], typer.Option(help="Run store (SQLite) \\[default: ~/.cache/promptcli/store.sqlite].")]
