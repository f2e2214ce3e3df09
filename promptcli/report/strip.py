"""A strip plot per base template: every format variant's accuracy on one axis (`search formats`)."""
from __future__ import annotations

import statistics
from typing import Mapping, Sequence

from .html import CSS
from .svg import element, esc, figure, svg_line, svg_root, svg_text

WIDTH, HEIGHT, LEFT, RIGHT = 560.0, 90.0, 20.0, 20.0


def strip_figure(index: int, base: str, values: Mapping[str, float], original: str, tied: Sequence[str]) -> str:
    """Dots on an accuracy axis: filled = tied with the base's best, hollow = significantly worse, red = the
    template as written; the tick marks the median."""
    lo, hi = min(values.values()), max(values.values())
    pad = max(0.02, (hi - lo) * 0.1)
    lo, hi = max(0.0, lo - pad), min(1.0, hi + pad)

    def x(v: float) -> float:
        return LEFT + (v - lo) / (hi - lo or 1) * (WIDTH - LEFT - RIGHT)

    body = [svg_line(LEFT, 50, WIDTH - RIGHT, 50, "axis")]
    for v in (lo, (lo + hi) / 2, hi):
        body += [svg_line(x(v), 46, x(v), 54, "axis"), svg_text(x(v), 70, f"{100 * v:.1f}%", text_anchor="middle")]
    median = statistics.median(values.values())
    body.append(svg_line(x(median), 22, x(median), 50, "ci"))
    for i, (name, value) in enumerate(sorted(values.items(), key=lambda kv: kv[1])):
        cls = "point" if name == original else "bar" if name in tied else "hollow"
        body.append(element("circle", element("title", esc(f"{name}: {100 * value:.1f}%")), cx=float(x(value)),
                            cy=float(40 - 8 * (i % 3)), r=4.0, class_=cls))
    caption = (f"{esc(base)}: {len(values)} variants, {100 * min(values.values()):.1f}–{100 * max(values.values()):.1f}%"
               f" (median {100 * median:.1f}%); red: as written; hollow: significantly worse than the best (Holm)")
    return figure(f"spread-{index}", svg_root(WIDTH, HEIGHT, f"accuracy of the format variants of {base}", body),
                  caption)


def strip_plot_page(title: str, spreads: Sequence[tuple[str, Mapping[str, float], str, Sequence[str]]]) -> str:
    figures = "".join(strip_figure(i, *s) for i, s in enumerate(spreads) if s[1])
    style = CSS + "svg .hollow { fill: #fff; stroke: #4a7fb5; stroke-width: 1.5; }"
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">"
            f"<title>{esc(title)}</title><style>{style}</style></head>\n<body>\n<h1>{esc(title)}</h1>"
            f'<section id="spread"><h2>Format spread</h2>{figures}</section>\n</body></html>\n')
