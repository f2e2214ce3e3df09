"""Adaptive sweeps: every variant on a first slice of rows, then only the ones still in the race on all rows.

The slice is a seeded sample of the data, stratified by label (`subsample`), the same rows for every
variant, so the comparisons are paired. A variant (all its seeds) leaves the race when it is
significantly worse than the slice's best by the leaderboard's test, adjusted for the number of
comparisons (Holm by default): the variants statistically tied with the best stay. The full runs
reuse the slice's scores through the score cache, so a surviving variant costs no more than in a
full sweep. Risk: a variant that is worse on the slice only by chance is dropped with probability
about the test's level (0.05, corrected), which is the price of the saved work; `sweep.json` and the
report name every dropped variant with its slice figures.
"""
from __future__ import annotations

from typing import Any, Sequence

from ..evaluation.leaderboard import Row, Scored, leaderboard


def race(entries: Sequence[Scored], metric: str, correction: str) -> tuple[set[str], list[Row]]:
    """The slice's leaderboard: the groups still in the race (tied with the best) and the rows of those out."""
    rows = leaderboard(entries, metric, correction=correction)
    return {r.variant for r in rows if r.tied}, [r for r in rows if not r.tied]


def work(slice_rows: int, sliced: Sequence[Scored], full: Sequence[Scored]) -> dict[str, Any]:
    """Rows × variants scored (each survivor's slice rows come from the score cache in its full run) against
    what scoring every variant on every row would take."""
    n = max((len(s.predictions) for s in full), default=0)
    computed = slice_rows * len(sliced) + sum(len(s.predictions) - slice_rows for s in full)
    total = n * len(sliced)
    return {"computed": computed, "full": total, "saved": total - computed,
            "saved_share": round((total - computed) / total, 4) if total else 0.0}
