"""How numbers read, the same in the terminal, report.md, report.html and `runs compare`."""
from __future__ import annotations

import math
from typing import Any

# Shares of examples (or of a class's examples): shown as percentages with two decimals.
PERCENT = frozenset({"accuracy", "macro_f1", "ece", "coverage", "accuracy_answered", "precision", "recall", "f1"})


def pct(value: float) -> str:
    return f"{100 * value:.2f}"


def number(value: Any, metric: str) -> str:
    """A metric's value: a percentage for the shares in PERCENT, four decimals otherwise; '—' when absent."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return pct(value) if metric in PERCENT else f"{value:.4f}"
    return str(value)


def unit(metric: str) -> str:
    """' (%)' after a metric's name when its values are percentages."""
    return " (%)" if metric in PERCENT else ""


def speed_cell(examples_per_s: float, cached: float = 0.0) -> str:
    """ex/s, flagged when the score cache served the examples (then it is not the model's speed)."""
    if cached >= 0.995:
        return f"{examples_per_s:.1f} (cached)"
    return f"{examples_per_s:.1f}" + (f" ({100 * cached:.0f}% cached)" if cached >= 0.005 else "")
