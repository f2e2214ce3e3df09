"""What the terminal shows while work runs: one rich progress bar style and promptcli's warnings (on stderr,
so stdout stays parseable); other libraries' warnings go to the run folder instead."""
from __future__ import annotations

import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, ProgressColumn, Task, TextColumn,
                           TimeElapsedColumn, TimeRemainingColumn)
from rich.text import Text

STDERR = Console(stderr=True)


def warn(message: str) -> None:
    """A warning the user should see (a corrupted cache moved aside, a forced soft prompt, …)."""
    STDERR.print(f"[yellow]warning:[/] {message}", soft_wrap=True, highlight=False)


class RateColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        unit = task.fields.get("unit", "ex")
        return Text(f"{speed:.1f} {unit}/s" if speed else f"– {unit}/s", style="progress.data.speed")


class Bar:
    def __init__(self, progress: Progress | None, task: int | None):
        self._progress, self._task = progress, task

    def advance(self, n: int) -> None:
        if self._progress is not None and n:
            self._progress.advance(self._task, n)

    def update(self, completed: int) -> None:
        if self._progress is not None:
            self._progress.update(self._task, completed=completed)


COLUMNS = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), RateColumn(),
           TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn())


def new_progress() -> Progress:
    return Progress(*COLUMNS, console=STDERR)


@contextmanager
def progress_bar(enabled: bool | Progress, description: str, total: int) -> Iterator[Bar]:
    """A bar of its own, a task on a shared display (a sweep's), or nothing."""
    if enabled is False:
        yield Bar(None, None)
        return
    if isinstance(enabled, Progress):
        task = enabled.add_task(description, total=total)
        try:
            yield Bar(enabled, task)
        finally:
            enabled.remove_task(task)
        return
    with new_progress() as progress:
        yield Bar(progress, progress.add_task(description, total=total))


@contextmanager
def library_warnings(log: Path | None, show: bool = False) -> Iterator[list[str]]:
    """Warnings of torch, transformers and other libraries, kept off the terminal (they are about their
    internals, and some are false where promptcli truncates inputs itself) and appended to `log` when given;
    `show` (--verbose) lets them through."""
    captured: list[str] = []
    if show:
        yield captured
        return
    import logging

    hf = logging.getLogger("transformers")
    level = hf.level
    hf.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield captured
        captured += [f"{w.category.__name__}: {w.message} ({w.filename}:{w.lineno})" for w in caught]
    finally:
        hf.setLevel(level)
        if captured and log is not None and log.parent.is_dir():
            with open(log, "a", encoding="utf-8") as handle:  # an append-only log, not a replaced file
                handle.write("".join(line + "\n" for line in dict.fromkeys(captured)))
