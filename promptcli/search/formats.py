"""Surface variants of a template that a person would call the same prompt (`promptcli search formats`).

A template's text is read line by line: *field lines* (`Review: {{ text }}`), the *slot line*
(`Sentiment: {{ mask }}`) and *instruction lines* (no field, no slot). The variants change only the
template's own words and layout, never the data or the answer slot:
- field names: as written, a generic word ("Text:" / "Input:"), or none;
- the separator between lines: a newline, a blank line, or a space;
- casing of the template's own words: as written, lower case, upper case;
- the instruction lines: kept or dropped;
- the order of the demonstrations (few-shot templates): as selected, or permuted with a seed.
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
    order: int | None = None  # demonstrations permuted with this seed

    def describe(self) -> str:
        return (f"field names {self.names}, lines joined by {self.separator}, case {self.case}, "
                f"instruction {'kept' if self.instruction else 'dropped'}"
                + (f", demonstrations in order {self.order}" if self.order is not None else ""))

    @property
    def original(self) -> bool:
        return self == Format()


def _own_words(text: str, change) -> str:
    """Apply `change` to the template's own words only (not to Jinja expressions)."""
    return "".join(part if JINJA.fullmatch(part) else change(part) for part in JINJA.split(text))


def apply(text: str, fmt: Format) -> str:
    """The template text in format `fmt` (a trailing newline is kept as it was)."""
    out = []
    for line in text.rstrip("\n").split("\n"):
        has_jinja = "{{" in line
        if not has_jinja and not fmt.instruction:
            continue
        found = FIELD_LINE.match(line)
        if found and not SLOT.match(found.group("rest")) and fmt.names != "as written":  # not the slot line
            line = found.group("rest") if fmt.names == "none" else f"{fmt.names}:{found.group('space')}{found.group('rest')}"
        if fmt.case != "as written":
            line = _own_words(line, str.lower if fmt.case == "lower" else str.upper)
        out.append(line)
    joined = SEPARATORS[fmt.separator].join(out)
    return joined + ("\n" if text.endswith("\n") else "")


DIMENSIONS = ("names", "separator", "case", "instruction", "order")


def variants(text: str, count: int, seed: int, vary: tuple[str, ...] = DIMENSIONS, orders: int = 0) -> list[Format]:
    """The original format and up to `count` − 1 others, drawn with `seed` among those that differ, varying
    only the dimensions in `vary` (`orders`: how many demonstration orders besides the selected one)."""
    lines = text.split("\n")
    choices = {
        "names": NAMES if any(FIELD_LINE.match(line) for line in lines) else NAMES[:1],
        "separator": tuple(SEPARATORS),
        "case": CASES,
        "instruction": (True, False) if any("{{" not in line and line.strip() for line in lines) else (True,),
        "order": (None, *range(1, orders + 1)),
    }
    default = Format()
    axes = [choices[d] if d in vary else (getattr(default, d),) for d in DIMENSIONS]
    seen = {(apply(text, default), None)}
    distinct = []
    for values in itertools.product(*axes):
        fmt = Format(*values)
        key = (apply(text, fmt), fmt.order)
        if key not in seen:  # two formats that give the same prompt are one variant
            seen.add(key)
            distinct.append(fmt)
    random.Random(seed).shuffle(distinct)
    return [default] + distinct[:max(count - 1, 0)]
