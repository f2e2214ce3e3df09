"""One rich progress bar style for long work, drawn on stderr so stdout stays parseable."""
from __future__ import annotations

from contextlib import contextmanager
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
