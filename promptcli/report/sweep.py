"""A sweep's files: leaderboard.csv / .json, report.md and a self-contained report.html."""
from __future__ import annotations

import csv
import io
from dataclasses import fields
from pathlib import Path
from typing import Any, Sequence

from ..evaluation.leaderboard import ALPHA, CORRECTION_NAMES, Row, Scored
from ..evaluation.metrics import classification_metrics
from ..evaluation.stats import reliability
from ..files import write_json, write_text
from ..spec.sweepfile import SweepSpec
from .format import number, speed_cell, unit
from .html import write_html_report

FIELDS = tuple(f.name for f in fields(Row))


def notes(skipped: Sequence[tuple[str, str]], correction: str = "holm") -> list[str]:
    """What the reader needs to trust the table: how intervals and tests were made, and what did not run."""
    adjusted = ("p-values not adjusted for the number of comparisons" if correction == "none" else
                f"p-values adjusted for the number of comparisons ({CORRECTION_NAMES[correction]})")
    out = [f"95% intervals: percentile bootstrap over examples, 1,000 resamples (seed 0). 'worse': differs "
           f"from the best at p < {ALPHA} (McNemar's exact test for accuracy with one seed each, else a paired "
           f"bootstrap of the metric's difference), {adjusted}; 'tied': not significantly worse, so any of the "
           "tied rows may be the best. Several seeds of a variant: mean, with their std."]
    if skipped:
        out.append(f"{len(skipped)} variants skipped: " + "; ".join(f"{name}: {reason}" for name, reason in skipped))
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


def write_reports(out: Path, spec: SweepSpec, rows: Sequence[Row], entries: Sequence[Scored],
                  skipped: Sequence[tuple[str, str]], report: dict | None = None, race: dict | None = None) -> None:
    data = [r.to_dict() for r in rows]
    write_json(out / "leaderboard.json", data)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=FIELDS)
    writer.writeheader()
    writer.writerows(data)
    write_text(out / "leaderboard.csv", buffer.getvalue())
    write_text(out / "report.md", markdown(spec, rows, skipped, report, race))

    by_group: dict[str, Scored] = {}
    for entry in entries:  # the first seed stands for its variant in the figures
        by_group.setdefault(entry.group, entry)
    chosen = [by_group[name] for name in _chosen(rows, spec.show) if name in by_group]
    confusions, diagrams = {}, {}
    for entry in chosen:
        gold = [p.gold for p in entry.predictions]
        pred = [p.pred for p in entry.predictions]
        confusions[entry.name] = classification_metrics(gold, pred, entry.labels)["confusion"]
        confidence = [max(p.probs.values()) if p.probs else 0.0 for p in entry.predictions]
        diagrams[entry.name] = reliability(confidence, [g == p for g, p in zip(gold, pred)])
    agreement = {e.name: e.agreement["histogram"] for e in entries if e.agreement}
    write_html_report(out / "report.html", title=f"promptcli sweep · {spec.name or out.name}", leaderboard=data,
                      confusions=confusions, reliability=diagrams, agreement=agreement or None,
                      notes=([f"Selected, then reported: {describe(report)}"] if report else [])
                      + ([f"Adaptive: {describe_race(race)}"] if race else [])
                      + notes(skipped, spec.correction))


def markdown(spec: SweepSpec, rows: Sequence[Row], skipped: Sequence[tuple[str, str]], report: dict | None = None,
             race: dict | None = None) -> str:
    metric = spec.metric
    lines = [f"# Sweep: {spec.name or 'leaderboard'}", "", f"Data: `{spec.data}` · metric: {metric}{unit(metric)}", "",
             f"| # | variant | value | ± std | 95% CI | ex/s | p vs best | p ({CORRECTION_NAMES[spec.correction]}) "
             "| vs best |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        p_value = "—" if r.p_value is None else f"{r.p_value:.3g} ({r.test})"
        p_adjusted = "—" if r.p_adjusted is None else f"{r.p_adjusted:.3g}"
        versus = "best" if r.p_value is None else "tied" if r.tied else "worse"
        lines.append(f"| {r.rank} | {r.variant} | {number(r.value, metric)} | "
                     f"{number(r.std if r.seeds > 1 else None, metric)} | "
                     f"{number(r.low, metric)} – {number(r.high, metric)} | {speed_cell(r.examples_per_s, r.cached)} | "
                     f"{p_value} | {p_adjusted} | {versus} |")
    tied = [r.variant for r in rows if r.tied]
    lines += ["", f"Tied with the best ({len(tied)} of {len(rows)}): " + ", ".join(tied)]
    if race:
        lines += ["", "## Adaptive", "", describe_race(race)]
        lines += [f"- dropped: {name} ({number(d['value'], metric)}, adjusted p={d['p_adjusted']:.3g})"
                  for name, d in race["dropped"].items()]
    if report:
        lines += ["", "## Selected on one split, reported on another", "", describe(report)]
    lines += [""] + [f"- {n}" for n in notes(skipped, spec.correction)] + [""]
    return "\n".join(lines)


def describe(report: dict[str, Any]) -> str:
    """One sentence with both numbers, labelled, for the terminal and the reports."""
    def shown(part: dict[str, Any]) -> str:
        return f"{number(part['value'], report['metric'])} (95% CI {number(part['low'], report['metric'])}–" \
               f"{number(part['high'], report['metric'])}, n={part['n']})"

    return (f"'{report['variant']}', ranked first on the selection rows {report['selected_on']}: "
            f"{shown(report['selection'])} there (optimistic: it was chosen on them); on the report rows "
            f"{report['reported_on']}, evaluated once: {shown(report['report'])}.")


def describe_race(race: dict[str, Any]) -> str:
    """What an adaptive sweep's first slice decided and what it saved."""
    return (f"every variant was scored on a sample of {race['slice_rows']} rows first; {len(race['dropped'])} "
            f"significantly worse than the best there (adjusted) did not run on the rest. Rows × variants scored: "
            f"{race['computed']:,} of {race['full']:,} ({race['saved_share']:.0%} saved).")
