"""The one Jinja environment, and rendering a data row into text around the answer slot.

Templates are data, not code: Jinja runs sandboxed, and StrictUndefined turns a field
missing from a row into an error instead of an empty string in the prompt.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Mapping

from jinja2 import StrictUndefined, TemplateSyntaxError, meta
from jinja2.exceptions import SecurityError, TemplateError, UndefinedError
from jinja2.sandbox import SandboxedEnvironment

from .errors import DataError, SpecError
from .layouts import layout
from .spec import TemplateFile

# The answer slot renders to a private-use character that no tokenizer sees: the text is
# split there, and each side is tokenised on its own.
MASK = "\ue000"
RESERVED = frozenset({"mask"})


def make_environment() -> SandboxedEnvironment:
    """Built once: strict, sandboxed, no autoescape (prompts are not HTML)."""
    return SandboxedEnvironment(undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                                keep_trailing_newline=False, autoescape=False)


ENV = make_environment()


@dataclass(frozen=True)
class Prompt:
    """Rendered text split at the answer slot."""

    prefix: str
    suffix: str

    def show(self, mask: str = "{{ mask }}") -> str:
        return self.prefix + mask + self.suffix


class Renderer:
    """A template compiled once; `render(row)` gives the prompt for one data row."""

    def __init__(self, template: TemplateFile):
        self.template = template
        pieces = layout(template.spec)
        for piece in pieces:
            if piece.user_written:
                self._check_syntax(piece.text, piece.loc)
        self.source = "".join(p.text for p in pieces)
        self._compiled = ENV.from_string(self.source)
        names = meta.find_undeclared_variables(ENV.parse(self.source))
        used = sorted(names - RESERVED)
        declared = template.spec.fields
        if declared is not None:
            missing = [f for f in used if f not in declared]
            if missing:
                raise self._error(f"the template uses {', '.join(missing)} but `fields` does not list "
                                  f"{'it' if len(missing) == 1 else 'them'}", ("fields",))
        self.fields: list[str] = list(declared) if declared is not None else used
        if "mask" not in names:
            raise self._error("the template has no answer slot; put {{ mask }} where the label word goes",
                              ("text",) if template.kind == "manual" else ("answer",))

    def _error(self, message: str, loc: tuple[str, ...]) -> SpecError:
        line, column = self.template.doc.locate(loc)
        return SpecError(message, path=str(self.template.path), line=line, column=column, field=".".join(loc))

    def _check_syntax(self, text: str, loc: tuple[str, ...]) -> None:
        try:
            ENV.parse(text)
        except TemplateSyntaxError as exc:
            line, column = self.template.doc.locate(loc)
            raise SpecError(f"Jinja syntax error on line {exc.lineno} of the text: {exc.message}",
                            path=str(self.template.path), line=line, column=column, field=".".join(loc)) from None

    def render(self, row: Mapping[str, Any], where: str = "") -> Prompt:
        """Render one row. `where` (e.g. 'data.jsonl:12') prefixes data errors."""
        try:
            text = self._compiled.render({**row, "mask": MASK})
        except UndefinedError as exc:
            name = re.search(r"'([^']+)' is undefined", str(exc))
            field = name.group(1) if name else None
            raise DataError(f"the row has no field '{field}'" if field else f"missing value: {exc}",
                            path=where or None, field=field) from None
        except SecurityError as exc:
            raise SpecError(f"the template tried something the sandbox forbids: {exc}",
                            path=str(self.template.path)) from None
        except TemplateError as exc:
            raise DataError(f"rendering failed: {exc}", path=where or None) from None
        except (TypeError, ValueError) as exc:
            raise DataError(f"rendering failed: {exc}", path=where or None) from None
        text = text.strip()
        count = text.count(MASK)
        if count != 1:
            raise SpecError(f"a rendered prompt must hold exactly one answer slot, this one holds {count}",
                            path=str(self.template.path), hint="use {{ mask }} once, outside loops")
        prefix, suffix = text.split(MASK)
        return Prompt(prefix=prefix, suffix=suffix)
