"""Hand-written SVG and HTML elements: every attribute escaped, coordinates with two decimals."""
from __future__ import annotations

import html
from typing import Any, Iterable, Mapping


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def num(x: float) -> str:
    """SVG coordinates with two decimals: small files, no float noise."""
    return f"{x:.2f}".rstrip("0").rstrip(".")


def attributes(values: Mapping[str, Any]) -> str:
    return "".join(f' {k.rstrip("_").replace("_", "-")}="{num(v) if isinstance(v, float) else esc(v)}"'
                   for k, v in values.items())


def element(tag: str, content: str = "", **attrs: Any) -> str:
    return f"<{tag}{attributes(attrs)}>{content}</{tag}>"


def svg_text(x: float, y: float, content: Any, **attrs: Any) -> str:
    return element("text", esc(content), x=float(x), y=float(y), **attrs)


def svg_line(x1: float, y1: float, x2: float, y2: float, class_: str) -> str:
    return element("line", x1=float(x1), y1=float(y1), x2=float(x2), y2=float(y2), class_=class_)


def svg_root(width: float, height: float, label: str, body: Iterable[str]) -> str:
    return (f'<svg viewBox="0 0 {num(width)} {num(height)}" width="{num(width)}" height="{num(height)}" role="img"'
            f' aria-label="{esc(label)}">' + "".join(body) + "</svg>")


def figure(id: str, svg: str, caption: str, variant: str | None = None) -> str:
    data = f' data-variant="{esc(variant)}"' if variant is not None else ""
    return f'<figure id="{esc(id)}"{data}>{svg}<figcaption>{caption}</figcaption></figure>'


def short(text: str, chars: int) -> str:
    return text if len(text) <= chars else text[:chars - 1] + "…"
