"""Surface variants of a template that a person would call the same prompt (`promptcli search formats`).

A template's text is read line by line: *field lines* (`Review: {{ text }}`), the *slot line*
(`Sentiment: {{ mask }}`) and *instruction lines* (no field, no slot). The variants change only the
template's own words and layout, never the data or the answer slot:
- field names: as written, a generic word ("Text:" / "Input:"), or none;
- the separator between lines: a newline, a blank line, or a space;
- casing of the template's own words: as written, lower case, upper case;
- the instruction lines: kept or dropped.
"""
from __future__ import annotations

import itertools
import random
import re
from dataclasses import dataclass

JINJA = re.compile(r"(\{\{.*?\}\}|\{%.*?%\})")
FIELD_LINE = re.compile(r"^(?P<name>[A-Za-z][\w ]*?):(?P<space>\s*)(?P<rest>\{\{.*)$")
SLOT = re.compile(r"\{\{\s*mask\s*\}\}")

NAMES = ("as written", "Text", "Input", "none")
SEPARATORS = {"newline": "\n", "blank line": "\n\n", "space": " "}
CASES = ("as written", "lower", "upper")


@dataclass(frozen=True)
class Format:
    names: str = "as written"
    separator: str = "newline"
    case: str = "as written"
    instruction: bool = True

    def describe(self) -> str:
        return (f"field names {self.names}, lines joined by {self.separator}, case {self.case}, "
                f"instruction {'kept' if self.instruction else 'dropped'}")

    @property
    def original(self) -> bool:
        return self == Format()


def _own_words(text: str, change) -> str:
    """Apply `change` to the template's own words only (not to Jinja expressions)."""
    return "".join(part if JINJA.fullmatch(part) else change(part) for part in JINJA.split(text))


def apply(text: str, fmt: Format) -> str:
    """The template text in format `fmt` (a trailing newline is kept as it was)."""
    lines = [line for line in text.rstrip("\n").split("\n")]
    out = []
    for line in lines:
        has_jinja = "{{" in line
        if not has_jinja and not fmt.instruction:
            continue
        found = FIELD_LINE.match(line)
        if found and not SLOT.search(found.group("rest").split("}}", 1)[0] + "}}") and fmt.names != "as written":
            line = found.group("rest") if fmt.names == "none" else f"{fmt.names}:{found.group('space')}{found.group('rest')}"
        if fmt.case != "as written":
            line = _own_words(line, str.lower if fmt.case == "lower" else str.upper)
        out.append(line)
    joined = SEPARATORS[fmt.separator].join(out)
    return joined + ("\n" if text.endswith("\n") else "")


def variants(text: str, count: int, seed: int) -> list[Format]:
    """The original format and up to `count` − 1 others, drawn with `seed` among those that change the text."""
    has_instruction = any("{{" not in line and line.strip() for line in text.split("\n"))
    has_names = any(FIELD_LINE.match(line) for line in text.split("\n"))
    every = [Format(n, s, c, i) for n, s, c, i in itertools.product(
        NAMES if has_names else NAMES[:1], SEPARATORS, CASES, (True, False) if has_instruction else (True,))]
    seen = {apply(text, Format())}
    distinct = []
    for fmt in every[1:]:
        rendered = apply(text, fmt)
        if rendered not in seen:  # two formats that write the same text are one variant
            seen.add(rendered)
            distinct.append(fmt)
    random.Random(seed).shuffle(distinct)
    return [Format()] + distinct[:max(count - 1, 0)]
