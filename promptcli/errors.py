"""One small error hierarchy; the CLI turns each into a message and an exit code.

Errors are raised where the problem is known, carrying where it happened (file, line,
field) so the message can tell the user exactly what to fix.
"""
from __future__ import annotations


class PromptcliError(Exception):
    """Base of every error promptcli reports to a user (never a traceback)."""

    exit_code = 1

    def __init__(self, message: str, *, path: str | None = None, line: int | None = None,
                 column: int | None = None, field: str | None = None, hint: str | None = None):
        self.message = message
        self.path = path
        self.line = line
        self.column = column
        self.field = field
        self.hint = hint
        super().__init__(str(self))

    def where(self) -> str:
        """`file:line:column` as far as it is known, for editors that jump to it."""
        parts = [p for p in (self.path, self.line, self.column) if p is not None]
        return ":".join(str(p) for p in parts)

    def __str__(self) -> str:
        where = self.where()
        text = f"{where}: " if where else ""
        if self.field:
            text += f"field '{self.field}': "
        text += self.message
        if self.hint:
            text += f"\n  hint: {self.hint}"
        return text


class SpecError(PromptcliError):
    """A template, verbalizer or sweep file is malformed or inconsistent."""

    exit_code = 7


class DataError(PromptcliError):
    """A data file or row cannot be used."""

    exit_code = 3


class ModelError(PromptcliError):
    """A model or tokenizer cannot be loaded or does not fit the request."""

    exit_code = 4


class RunError(PromptcliError):
    """An output folder or resume request is inconsistent."""

    exit_code = 5


class OptionError(RunError):
    """An option's value is not one it accepts: a command-line mistake (exit 2, as for the CLI parser's own
    usage errors), found before anything is written. A RunError, so API callers catching those still do."""

    exit_code = 2


class StoreError(PromptcliError):
    """The run store or score cache cannot be used (unknown run id, locked or unwritable database)."""

    exit_code = 6
