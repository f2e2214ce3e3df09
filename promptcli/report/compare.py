"""`runs compare`: runs side by side, what differs between them, and whether the difference is real."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from rich.console import Group
from rich.table import Table

from ..errors import RunError
from ..evaluation.outputs import PREDICTIONS, read_predictions
from ..evaluation.stats import mcnemar_exact
from ..store.runs import StoredRun
from .format import number

ROWS = ("accuracy", "macro_f1", "coverage", "n")


def _flat(record: dict) -> dict:
    config = dict(record.get("config") or {})
    config.update({f"hash.{k}": v[:12] for k, v in (record.get("hashes") or {}).items()})
    return config


def compare_table(runs: Sequence[StoredRun]) -> Group:
    if len(runs) < 2:
        raise RunError("compare needs at least two run ids")
    table = Table(title="compare", title_justify="left")
    table.add_column("")
    for r in runs:
        table.add_column(f"#{r.id} {r.name or ''}", justify="right")
    for key in ROWS:
        values = [(r.metrics or {}).get(key) for r in runs]
        if any(v is not None for v in values):
            table.add_row(key, *["" if v is None else number(v, key) for v in values])
    speeds = [((r.record or {}).get("timing") or {}).get("examples_per_s") for r in runs]
    table.add_row("examples/s", *["" if s is None else f"{s:.1f}" for s in speeds])
    flats = [_flat(r.record or {}) for r in runs]
    for key in sorted(set().union(*flats)):
        values = [f.get(key) for f in flats]
        if len({str(v) for v in values}) > 1:
            table.add_row(f"[dim]{key}[/]", *[str(v) for v in values])
    parts = [table]
    if len(runs) == 2:
        parts.append(_mcnemar(runs[0], runs[1]))
    return Group(*parts)


def _mcnemar(a: StoredRun, b: StoredRun) -> str:
    hashes = [(r.record or {}).get("hashes", {}).get("data") for r in (a, b)]
    if hashes[0] != hashes[1]:
        return "McNemar: not applicable (the runs scored different data)"
    paths = [Path(r.out_dir or "") / PREDICTIONS for r in (a, b)]
    if not all(p.is_file() for p in paths):
        return "McNemar: not available (a predictions file is missing)"
    preds = [{p.index: p for p in read_predictions(path)} for path in paths]
    common = sorted(set(preds[0]) & set(preds[1]))
    if not common or any(preds[0][i].gold is None for i in common):
        return "McNemar: not available (no gold labels)"
    result = mcnemar_exact([preds[0][i].pred == preds[0][i].gold for i in common],
                           [preds[1][i].pred == preds[1][i].gold for i in common])
    return (f"McNemar's exact test on {len(common)} shared examples: #{a.id} right / #{b.id} wrong = {result.b10}, "
            f"#{a.id} wrong / #{b.id} right = {result.b01}, p = {result.p_value:.4g}")
