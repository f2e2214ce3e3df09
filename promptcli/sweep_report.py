"""A sweep's files: leaderboard.csv / .json, report.md and a self-contained report.html."""
from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from .html_report import write_html_report
from .leaderboard import ALPHA, Row, Scored
from .metrics import classification_metrics
from .outputs import write_json
from .stats import reliability_bins

if TYPE_CHECKING:
    from .sweep import SweepSpec

FIELDS = ("rank", "variant", "metric", "value", "std", "low", "high", "seeds", "n", "examples_per_s", "p_value",
          "test", "significant", "accuracy", "macro_f1", "ece", "log_loss")


def notes(rows: Sequence[Row], state: dict) -> list[str]:
    out = [f"95% intervals: percentile bootstrap over examples, 1,000 resamples (seed 0). 'significant': differs "
           f"from the best at p < {ALPHA} (McNemar's exact test for accuracy with one seed each, else a paired "
           "bootstrap of the metric's difference). Several seeds of a variant: mean, with their std."]
    skipped = [v for v in state["variants"].values() if v["status"] == "skipped"]
    if skipped:
        out.append(f"{len(skipped)} variants skipped: " + "; ".join(f"{v['name']}: {v['reason']}" for v in skipped))
    return out


def _chosen(rows: Sequence[Row], show: str | None) -> list[str]:
    """The best variant and one more: the one asked for, or the runner-up."""
    if not rows:
        return []
    names = [rows[0].variant]
    if show and any(r.variant == show for r in rows):
        names.append(show)
    elif len(rows) > 1:
        names.append(rows[1].variant)
    return list(dict.fromkeys(names))


def write_reports(out: Path, spec: SweepSpec, rows: Sequence[Row], entries: Sequence[Scored], state: dict) -> None:
    data = [r.to_dict() for r in rows]
    write_json(out / "leaderboard.json", data)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=FIELDS)
    writer.writeheader()
    writer.writerows(data)
    (out / "leaderboard.csv").write_text(buffer.getvalue(), encoding="utf-8")
    (out / "report.md").write_text(markdown(spec, rows, state), encoding="utf-8")

    by_group: dict[str, Scored] = {}
    for entry in entries:  # the first seed stands for its variant in the figures
        by_group.setdefault(entry.group, entry)
    chosen = [by_group[name] for name in _chosen(rows, spec.show) if name in by_group]
    confusions, reliability = {}, {}
    for entry in chosen:
        gold = [p.gold for p in entry.predictions]
        pred = [p.pred for p in entry.predictions]
        confusions[entry.name] = classification_metrics(gold, pred, entry.labels)["confusion"]
        confidence = [max(p.probs.values()) if p.probs else 0.0 for p in entry.predictions]
        reliability[entry.name] = reliability_bins(confidence, [g == p for g, p in zip(gold, pred)])
    agreement = {e.name: e.agreement["histogram"] for e in entries if e.agreement}
    write_html_report(out / "report.html", title=f"promptcli sweep · {spec.name or out.name}", leaderboard=data,
                      confusions=confusions, reliability=reliability, agreement=agreement or None,
                      notes=notes(rows, state))


def _cell(value: Any, metric: str) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{100 * value:.2f}" if metric in ("accuracy", "macro_f1", "ece") else f"{value:.4f}"
    return str(value)


def markdown(spec: SweepSpec, rows: Sequence[Row], state: dict) -> str:
    metric = spec.metric
    lines = [f"# Sweep: {spec.name or 'leaderboard'}", "", f"Data: `{spec.data}` · metric: {metric}"
             + (" (%)" if metric in ("accuracy", "macro_f1", "ece") else ""), "",
             "| # | variant | value | ± std | 95% CI | ex/s | p vs best | significant |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r.rank} | {r.variant} | {_cell(r.value, metric)} | {_cell(r.std if r.seeds > 1 else None, metric)} | "
                     f"{_cell(r.low, metric)} – {_cell(r.high, metric)} | {r.examples_per_s:.1f} | "
                     f"{'—' if r.p_value is None else f'{r.p_value:.3g} ({r.test})'} | {_cell(r.significant, metric)} |")
    lines += [""] + [f"- {n}" for n in notes(rows, state)] + [""]
    return "\n".join(lines)
