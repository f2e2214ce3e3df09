"""A sweep's report as one self-contained `report.html`: tables and hand-written inline SVG.

No scripts, no external files, no plotting library: the file opens anywhere, offline, years
later, and a Content-Security-Policy forbids the page from loading anything. Every string
that came from a user's file (variant and label names, notes) goes through `html.escape`.
Each plot is a `<figure id=…>` with a `<figcaption>`; SVG elements carry classes (`bar`, `ci`,
`cell`, `bin`, `diagonal`) so tests and stylesheets can find them.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from ..evaluation.stats import Reliability
from ..files import write_text
from .format import PERCENT, number, speed_cell, unit
from .svg import element, esc, figure, num, short, svg_line, svg_root, svg_text

CSS = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1100px; padding: 0 1em;
       color: #1a1a1a; }
th { text-align: left; } table { border-collapse: collapse; margin: 1em 0; } th, td { padding: .25em .7em; border-bottom: 1px solid #ddd; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
figure { display: inline-block; margin: 1em 1.5em 1em 0; vertical-align: top; }
figcaption { font-size: 13px; color: #444; max-width: 520px; }
svg text { font: 11px system-ui, sans-serif; fill: #1a1a1a; }
svg .bar { fill: #4a7fb5; } svg .bin { fill: #4a7fb5; fill-opacity: .75; } svg .point { fill: #c0392b; }
svg .ci, svg .ci-cap { stroke: #1a1a1a; stroke-width: 1.5; } svg .grid { stroke: #e4e4e4; }
svg .axis { stroke: #888; } svg .diagonal { stroke: #888; stroke-dasharray: 4 3; }
svg text.light { fill: #fff; }
"""


def _fmt(value: Any, metric: str) -> str:
    return esc(number(value, metric))


def _tick(value: float, metric: str) -> str:
    return f"{100 * value:.4g}" if metric in PERCENT else f"{value:.3g}"


def _ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    return [lo + (hi - lo) * i / (count - 1) for i in range(count)]


# ---- leaderboard -----------------------------------------------------------------------------

def leaderboard_table(rows: Sequence[Mapping[str, Any]]) -> str:
    head = "".join(f'<th class="{"num" if c not in ("variant", "metric") else ""}">{c}</th>' for c in
                   ("#", "variant", "metric", "value", "95% CI", "n", "examples/s", "vs best"))
    body = []
    for rank, row in enumerate(rows, 1):
        metric = str(row.get("metric", ""))
        low, high = row.get("low"), row.get("high")
        ci = f"{_fmt(low, metric)} – {_fmt(high, metric)}" if low is not None and high is not None else "—"
        sig = {True: "worse", False: "tied"}.get(row.get("significant"), "best")
        speed = row.get("examples_per_s")
        cells = [str(rank), esc(row.get("variant", "")), esc(metric), _fmt(row.get("value"), metric), ci,
                 esc(row.get("n", "")), "—" if speed is None else speed_cell(speed, row.get("cached", 0.0)), sig]
        body.append("<tr>" + "".join(f'<td class="{"" if i in (1, 2) else "num"}">{c}</td>'
                                     for i, c in enumerate(cells)) + "</tr>")
    return f'<table id="leaderboard-table"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def _num(row: Mapping[str, Any], key: str) -> float | None:
    """A row's number, or None when it is missing or NaN (nothing is drawn for it)."""
    value = row.get(key)
    return None if value is None or math.isnan(float(value)) else float(value)


def leaderboard_chart(rows: Sequence[Mapping[str, Any]]) -> str:
    """Horizontal bars of each variant's value with its CI as an error bar, best first."""
    metric = str(rows[0].get("metric", "")) if rows else ""
    numbers = [v for r in rows for k in ("value", "low", "high") if (v := _num(r, k)) is not None]
    lo, hi = min([0.0, *numbers]), max([0.0, *numbers])
    if metric in PERCENT and 0.0 <= lo and hi <= 1.0:
        hi = 1.0
    hi = hi if hi > lo else lo + 1.0
    label_w = min(260, 12 + 6.5 * max((len(str(r.get("variant", ""))) for r in rows), default=4))
    plot_w, row_h, top = 420.0, 24.0, 10.0
    width, height = label_w + plot_w + 70, top + row_h * len(rows) + 30
    bottom = top + row_h * len(rows)

    def x(v: float) -> float:
        return label_w + plot_w * (v - lo) / (hi - lo)

    body = []
    for t in _ticks(lo, hi):
        body += [svg_line(x(t), top, x(t), bottom, "grid"),
                 svg_text(x(t), height - 8, _tick(t, metric), text_anchor="middle")]
    for i, row in enumerate(rows):
        name, y = str(row.get("variant", "")), top + i * row_h
        mid = y + row_h / 2
        body.append(svg_text(label_w - 8, mid + 4, short(name, int((label_w - 12) / 6.5)), text_anchor="end"))
        value, low, high = _num(row, "value"), _num(row, "low"), _num(row, "high")
        if value is None:
            continue
        tip = element("title", esc(f"{name}: {_fmt(value, metric)}"))
        body.append(element("rect", tip, class_="bar", x=min(x(0), x(value)), y=y + 4, width=abs(x(value) - x(0)),
                        height=row_h - 8))
        if low is not None and high is not None:
            a, b = x(low), x(high)
            body += [svg_line(a, mid, b, mid, "ci"), svg_line(a, mid - 5, a, mid + 5, "ci-cap"),
                     svg_line(b, mid - 5, b, mid + 5, "ci-cap")]
        body.append(svg_text(x(max(value, high if high is not None else value)) + 6, mid + 4, _fmt(value, metric)))
    body.append(svg_line(x(lo), bottom, x(hi), bottom, "axis"))
    svg = svg_root(width, height, f"{metric} by variant", body)
    caption = (f"{esc(metric)} of each variant{unit(metric)}; "
               "error bars: bootstrap confidence interval.")
    return figure("leaderboard-chart", svg, caption)


# ---- confusion matrices ----------------------------------------------------------------------

def _shade(share: float) -> str:
    """White (0) to dark blue (1)."""
    share = min(1.0, max(0.0, share))
    r, g, b = (round(255 + (t - 255) * share) for t in (31, 79, 140))
    return f"#{r:02x}{g:02x}{b:02x}"


def confusion_figure(index: int, variant: str, labels: Sequence[str], matrix: Sequence[Sequence[int]]) -> str:
    """Heat map, rows gold and columns predicted, shaded by the share of the gold row."""
    n = len(labels)
    cell = max(18.0, min(44.0, 440.0 / max(n, 1)))
    longest = max((len(str(label)) for label in labels), default=1)
    left = 30 + min(140, 6.5 * longest)
    top = 26 + min(100, 4.6 * longest)  # column labels are rotated by -45°
    width, height = left + cell * n + 10 + min(100, 4.6 * longest), top + cell * n + 10
    body = [svg_text(left + cell * n / 2, 14, "predicted", text_anchor="middle"),
            svg_text(12, top + cell * n / 2, "gold", text_anchor="middle",
                  transform=f"rotate(-90 12 {num(top + cell * n / 2)})")]
    for j, label in enumerate(labels):
        cx = left + cell * j + cell / 2
        body.append(svg_text(cx, top - 6, short(str(label), 20), transform=f"rotate(-45 {num(cx)} {num(top - 6)})"))
    for i, (label, row) in enumerate(zip(labels, matrix)):
        total = sum(row)
        y = top + cell * i
        body.append(svg_text(left - 6, y + cell / 2 + 4, short(str(label), 20), text_anchor="end"))
        for j, count in enumerate(row):
            share = count / total if total else 0.0
            tip = element("title", esc(f"gold {label}, predicted {labels[j]}: {count} ({100 * share:.1f}% of the row)"))
            body.append(element("rect", tip, class_="cell", x=left + cell * j, y=y, width=cell, height=cell,
                            fill=_shade(share), stroke="#fff"))
            body.append(svg_text(left + cell * j + cell / 2, y + cell / 2 + 4, count, text_anchor="middle",
                              class_="count light" if share > 0.55 else "count"))
    svg = svg_root(width, height, f"confusion matrix of {variant}", body)
    caption = f"Confusion of <b>{esc(variant)}</b>: rows gold, columns predicted; shade = share of the gold row."
    return figure(f"confusion-{index}", svg, caption, variant)


# ---- reliability diagrams --------------------------------------------------------------------

def reliability_figure(index: int, variant: str, reliability: Reliability) -> str:
    """Accuracy against confidence per bin, with the diagonal of perfect calibration."""
    bins = reliability.bins
    size, left, top = 240.0, 44.0, 12.0
    width, height = left + size + 16, top + size + 40

    def x(v: float) -> float:
        return left + size * v

    def y(v: float) -> float:
        return top + size * (1 - v)

    body = []
    for t in _ticks(0.0, 1.0):
        body += [svg_line(x(t), y(0), x(t), y(1), "grid"), svg_line(x(0), y(t), x(1), y(t), "grid"),
                 svg_text(x(t), y(0) + 14, f"{t:g}", text_anchor="middle"),
                 svg_text(x(0) - 5, y(t) + 4, f"{t:g}", text_anchor="end")]
    for b in bins:
        if b.count == 0:
            continue
        tip = element("title", esc(f"confidence {b.low:g}–{b.high:g}: {b.count} examples, mean confidence "
                               f"{b.confidence:.3f}, accuracy {b.accuracy:.3f}"))
        body.append(element("rect", tip, class_="bin", x=x(b.low) + 1, y=y(b.accuracy),
                        width=max(0.0, x(b.high) - x(b.low) - 2), height=y(0) - y(b.accuracy)))
        body.append(element("circle", class_="point", cx=x(b.confidence), cy=y(b.accuracy), r=3.0))
    body += [svg_line(x(0), y(0), x(1), y(1), "diagonal"), svg_line(x(0), y(0), x(1), y(0), "axis"),
             svg_line(x(0), y(0), x(0), y(1), "axis"),
             svg_text(x(0.5), height - 6, "confidence", text_anchor="middle"),
             svg_text(12, y(0.5), "accuracy", text_anchor="middle", transform=f"rotate(-90 12 {num(y(0.5))})")]
    svg = svg_root(width, height, f"reliability diagram of {variant}", body)
    n = sum(b.count for b in bins)
    caption = (f"Reliability of <b>{esc(variant)}</b>: ECE = {_fmt(reliability.ece, 'ece')}% "
               f"({len(bins)} bins, n = {n}); bars: accuracy per bin, dots: mean confidence.")
    return figure(f"reliability-{index}", svg, caption, variant)


# ---- self-consistency agreement --------------------------------------------------------------

def _agreement_order(key: str) -> tuple[int, float, str]:
    try:
        return 0, float(key), key
    except ValueError:
        return 1, 0.0, key


def agreement_figure(index: int, variant: str, counts: Mapping[str, int]) -> str:
    """Histogram of how many examples reached each agreement level among the sampled paths."""
    keys = sorted(counts, key=_agreement_order)
    bar_w, plot_h, left, top = 36.0, 160.0, 36.0, 16.0
    width, height = left + bar_w * len(keys) + 16, top + plot_h + 44
    most = max([*counts.values(), 1])
    body = [svg_line(left, top + plot_h, left + bar_w * len(keys), top + plot_h, "axis")]
    for i, key in enumerate(keys):
        h = plot_h * counts[key] / most
        bx = left + bar_w * i
        tip = element("title", esc(f"agreement {key}: {counts[key]} examples"))
        body += [element("rect", tip, class_="bar", x=bx + 3, y=top + plot_h - h, width=bar_w - 6, height=h),
                 svg_text(bx + bar_w / 2, top + plot_h - h - 4, counts[key], text_anchor="middle"),
                 svg_text(bx + bar_w / 2, top + plot_h + 14, short(str(key), 6), text_anchor="middle")]
    body.append(svg_text(left + bar_w * len(keys) / 2, height - 8, "agreement", text_anchor="middle"))
    svg = svg_root(width, height, f"agreement histogram of {variant}", body)
    caption = (f"Self-consistency agreement of <b>{esc(variant)}</b>: examples per share of sampled "
               "answers that agree with the majority.")
    return figure(f"agreement-{index}", svg, caption, variant)


# ---- the page --------------------------------------------------------------------------------

def render_html_report(*, title: str, leaderboard: Sequence[Mapping[str, Any]], confusions: Mapping[str, Mapping],
                       reliability: Mapping[str, Reliability],
                       agreement: Mapping[str, Mapping[str, int]] | None = None, notes: Iterable[str] = ()) -> str:
    """The report as one HTML string (see `write_html_report`)."""
    parts = [f"<h1>{esc(title)}</h1>"]
    notes = list(notes)
    if notes:
        parts.append('<ul class="notes">' + "".join(f"<li>{esc(note)}</li>" for note in notes) + "</ul>")
    parts.append('<section id="leaderboard"><h2>Leaderboard</h2>')
    if leaderboard:
        parts += [leaderboard_table(leaderboard), leaderboard_chart(leaderboard)]
    else:
        parts.append("<p>No variants.</p>")
    parts.append("</section>")
    sections = [
        ("confusions", "Confusion matrices",
         [confusion_figure(i, name, c["labels"], c["matrix"]) for i, (name, c) in enumerate(confusions.items())]),
        ("reliability", "Reliability diagrams",
         [reliability_figure(i, name, rel) for i, (name, rel) in enumerate(reliability.items()) if rel.bins]),
        ("agreement", "Self-consistency agreement",
         [agreement_figure(i, name, counts) for i, (name, counts) in enumerate((agreement or {}).items())
          if counts]),
    ]
    for id, heading, figures in sections:
        if figures:
            parts.append(f'<section id="{id}"><h2>{heading}</h2>{"".join(figures)}</section>')
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{esc(title)}</title><style>{CSS}</style></head>\n<body>\n"
            + "\n".join(parts) + "\n</body></html>\n")


def write_html_report(path: str | os.PathLike, *, title: str, leaderboard: list[dict],
                      confusions: dict[str, dict], reliability: dict[str, Reliability],
                      agreement: dict[str, dict[str, int]] | None = None, notes: Sequence[str] = ()) -> None:
    """Write the report atomically (a crash leaves the old file or the new one).

    `leaderboard`: rows `{variant, metric, value, low, high, examples_per_s, significant, n}` (significant:
    True worse than the best, False tied with it, None the best),
    best first (the order is kept). `confusions`: variant → `{labels, matrix[gold][pred]}`.
    `reliability`: variant → `stats.reliability(...)`. `agreement`: variant →
    `{agreement level: count}`; the section is left out when there is none.
    """
    text = render_html_report(title=title, leaderboard=leaderboard, confusions=confusions,
                              reliability=reliability, agreement=agreement, notes=notes)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text(path, text)
