"""The one Jinja environment: sandboxed, strict, bounded.

Templates are data, not code. The sandbox blocks attribute tricks; StrictUndefined turns a
missing field into an error instead of an empty string; and bounds keep a template from
hanging a run or filling memory: `range` stops at MAX_RANGE items, `*` and `**` may not build
values over MAX_OUTPUT characters, one rendering may take MAX_SECONDS (in the main thread,
where a timer can interrupt it), and every `{{ … }}` must print text or a number (a list or a
boolean would otherwise appear as Python's repr).
"""
from __future__ import annotations

import math
import signal
import threading
from contextlib import contextmanager
from typing import Any, Iterator

from jinja2 import StrictUndefined, Undefined
from jinja2.sandbox import SandboxedEnvironment

from ..spec.template import SOFT

MAX_RANGE = 10_000
MAX_OUTPUT = 1_000_000  # characters of one rendered part (or of a value built with * or **)
MAX_SECONDS = 5.0
MAX_SOFT = 4096


class TemplateLimit(Exception):
    """A template went past a bound (its author's to fix, not the data's)."""


class NotPrintable(ValueError):
    """A `{{ … }}` gave a value a prompt cannot hold as text."""


def printable(value: Any) -> Any:
    if isinstance(value, Undefined):  # StrictUndefined raises its own, clearer error when printed
        return value
    if isinstance(value, str) or (isinstance(value, (int, float)) and not isinstance(value, bool)
                                  and math.isfinite(value)):
        return value
    shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
    raise NotPrintable(f"a {{{{ … }}}} expression gave {type(value).__name__} {shown} where text was expected; a "
                       "prompt holds text and numbers (join a list with {{ x | join(', ') }})")


def bounded_range(*args: int) -> range:
    items = range(*args)
    if len(items) > MAX_RANGE:
        raise TemplateLimit(f"range() of {len(items):,} items; templates may loop at most {MAX_RANGE:,} times")
    return items


def soft(count: int) -> str:
    """Jinja global: n soft-prompt token places."""
    if not isinstance(count, int) or not 1 <= count <= MAX_SOFT:
        raise TemplateLimit(f"soft() takes a number of tokens from 1 to {MAX_SOFT}, got {count!r}")
    return SOFT * count


class BoundedSandbox(SandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "**" and isinstance(right, (int, float)) and abs(right) > 64:
            raise TemplateLimit(f"{left!r} ** {right!r}: exponents above 64 are refused")
        if operator == "*":
            seq, times = (left, right) if isinstance(left, (str, list, tuple)) else (right, left)
            if isinstance(seq, (str, list, tuple)) and isinstance(times, int) and len(seq) * times > MAX_OUTPUT:
                raise TemplateLimit(f"a value of {len(seq) * times:,} items built with *; the limit is {MAX_OUTPUT:,}")
        return super().call_binop(context, operator, left, right)


def make_environment() -> BoundedSandbox:
    """Built once: strict, sandboxed, bounded, no autoescape (prompts are not HTML)."""
    env = BoundedSandbox(undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
                         autoescape=False, finalize=printable)
    env.globals.update(range=bounded_range, soft=soft)
    return env


ENV = make_environment()


class RenderTimeout(TemplateLimit):
    pass


@contextmanager
def time_limit(seconds: float | None = None) -> Iterator[None]:
    """Interrupt a rendering that runs too long (nested loops). Only the main thread can take a timer, and one
    already running (the caller's own alarm) is left alone: then there is no limit."""
    seconds = seconds or MAX_SECONDS
    if (threading.current_thread() is not threading.main_thread() or not hasattr(signal, "setitimer")
            or signal.getitimer(signal.ITIMER_REAL)[0] > 0):  # no timer here, or someone else's is running
        yield
        return

    def expired(signum: int, frame: Any) -> None:
        raise RenderTimeout(f"rendering took over {seconds:g} s; templates must render a row quickly")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)

