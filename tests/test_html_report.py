"""report.html: parsed with the stdlib for structure, escaping and self-containment; rendered by
headless Chromium when it is installed."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from promptcli.report.html import write_html_report
from promptcli.evaluation.stats import reliability

EVIL = "<script>alert(1)</script>"
AMP = 'xml & "quotes"'
LEADERBOARD = [
    {"variant": "manual · roberta", "metric": "accuracy", "value": 0.9, "low": 0.86, "high": 0.93,
     "examples_per_s": 120.5, "significant": None, "n": 872},
    {"variant": EVIL, "metric": "accuracy", "value": 0.84, "low": 0.8, "high": 0.88, "examples_per_s": 80.0,
     "significant": True, "n": 872},
    {"variant": AMP, "metric": "accuracy", "value": 0.5, "low": 0.45, "high": 0.55, "examples_per_s": None,
     "significant": False, "n": 872},
    {"variant": "failed", "metric": "accuracy", "value": None, "low": None, "high": None, "n": 0},  # no bar
]
CONFUSIONS = {
    "manual · roberta": {"labels": ["negative", "positive"], "matrix": [[400, 28], [59, 385]]},
    EVIL: {"labels": ["neg", "neu", EVIL], "matrix": [[5, 1, 1], [2, 6, 2], [0, 1, 9]]},
}
# Hand computation (as in test_stats): bin [0.9, 1]: 4 examples, mean conf 0.95, acc 0.5;
# bin [0.6, 0.7): 2 examples, conf 0.6, acc 1.0; ECE = 4/6·0.45 + 2/6·0.4 = 0.4333
RELIABILITY = {
    "manual · roberta": reliability([0.9, 0.9, 1.0, 1.0, 0.6, 0.6], [True, False, True, False, True, True]),
    AMP: reliability([0.55, 0.65, 0.75, 0.85, 0.95], [True, True, False, True, True], bins=5),
}
AGREEMENT = {"self-consistency": {"1.0": 300, "0.4": 5, "0.8": 120, "0.6": 30}}
VOID = {"meta", "br", "hr", "img", "input", "link", "area", "base", "col", "embed", "source", "track", "wbr"}


class Page(HTMLParser):
    """Elements with their enclosing figure id, text per figure, and a tag-balance check."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict, str | None]] = []  # (tag, attrs, figure id)
        self.stack: list[tuple[str, str | None, dict]] = []
        self.text: dict[str | None, list[str]] = {}
        self.labels: dict[str | None, list[tuple[str, str]]] = {}  # SVG <text>: (class, text)
        self.unbalanced: list[str] = []

    def figure(self) -> str | None:
        return self.stack[-1][1] if self.stack else None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        figure = attrs.get("id") if tag == "figure" else self.figure()
        self.elements.append((tag, attrs, figure))
        if tag not in VOID:
            self.stack.append((tag, figure, attrs))

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1][0] != tag:
            self.unbalanced.append(tag)
        else:
            self.stack.pop()

    def handle_data(self, data):
        self.text.setdefault(self.figure(), []).append(data)
        if self.stack and self.stack[-1][0] == "text":
            self.labels.setdefault(self.figure(), []).append((self.stack[-1][2].get("class", ""), data))

    def find(self, tag: str, figure: str | None = None, cls: str | None = None) -> list[dict]:
        return [a for t, a, f in self.elements if t == tag and (figure is None or f == figure)
                and (cls is None or cls in a.get("class", "").split())]

    def svg_labels(self, figure: str, cls: str | None = None) -> list[str]:
        return [text for c, text in self.labels.get(figure, []) if cls is None or cls in c.split()]

    def figure_text(self, figure: str | None) -> str:
        return " ".join(self.text.get(figure, []))


def write_sample(path: Path, **overrides) -> str:
    kwargs = dict(title=f"SST-2 sweep {EVIL}", leaderboard=LEADERBOARD, confusions=CONFUSIONS,
                  reliability=RELIABILITY, agreement=AGREEMENT, notes=["p < 0.05 by McNemar", EVIL])
    kwargs.update(overrides)
    write_html_report(path, **kwargs)
    return path.read_text(encoding="utf-8")


def parse(text: str) -> Page:
    page = Page()
    page.feed(text)
    page.close()
    assert not page.unbalanced and not page.stack, (page.unbalanced, page.stack)
    return page


FIGURES = ["leaderboard-chart", "confusion-0", "confusion-1", "reliability-0", "reliability-1", "agreement-0"]


def test_figures_and_their_svg_elements(tmp_path):
    page = parse(write_sample(tmp_path / "out" / "report.html"))  # the folder is created
    assert [a["id"] for a in page.find("figure")] == FIGURES
    for figure in FIGURES:
        assert len(page.find("svg", figure)) == 1 and len(page.find("figcaption", figure)) == 1, figure

    # leaderboard: a table row and a bar per variant with a value; an error bar (line + 2 caps) per CI
    assert len(page.find("tr")) == 1 + len(LEADERBOARD)
    assert len(page.find("rect", "leaderboard-chart", "bar")) == 3
    assert len(page.find("line", "leaderboard-chart", "ci")) == 3
    assert len(page.find("line", "leaderboard-chart", "ci-cap")) == 6
    widths = [float(a["width"]) for a in page.find("rect", "leaderboard-chart", "bar")]
    assert widths == sorted(widths, reverse=True) and widths[0] / widths[2] == pytest.approx(0.9 / 0.5, rel=1e-3)

    # confusion: n² cells with their counts, axis titles, the darkest cell is the largest row share
    cells = page.find("rect", "confusion-0", "cell")
    assert len(cells) == 4 and len(page.find("rect", "confusion-1", "cell")) == 9
    assert page.svg_labels("confusion-0", "count") == ["400", "28", "59", "385"]
    assert {"gold", "predicted", "negative", "positive"} <= set(page.svg_labels("confusion-0"))
    assert min(cells, key=lambda a: a["fill"])["fill"] == cells[0]["fill"]  # 400/428 is the darkest

    # reliability: a bar and a dot per non-empty bin, one diagonal, the hand-computed ECE
    assert len(page.find("rect", "reliability-0", "bin")) == 2
    assert len(page.find("circle", "reliability-0", "point")) == 2
    assert len(page.find("line", "reliability-0", "diagonal")) == 1
    assert "ECE = 43.33%" in page.figure_text("reliability-0")  # a percentage, as in the terminal and report.md
    assert len(page.find("rect", "reliability-1", "bin")) == 3  # 0.55 | 0.65, 0.75 | 0.85, 0.95

    # agreement: one bar per level, in numeric order
    assert len(page.find("rect", "agreement-0", "bar")) == 4
    labels = [t for t in page.svg_labels("agreement-0") if re.fullmatch(r"\d\.\d", t)]
    assert labels == ["0.4", "0.6", "0.8", "1.0"]


def test_user_strings_are_escaped(tmp_path):
    text = write_sample(tmp_path / "report.html")
    assert "<script" not in text and "&lt;script&gt;" in text
    assert 'xml & "quotes"' not in text and "xml &amp; &quot;quotes&quot;" in text
    page = parse(text)
    assert not page.find("script")
    assert page.find("figure")[2]["data-variant"] == EVIL  # attributes round-trip through escaping
    assert EVIL in page.figure_text(None)  # shown as text in the table, the title and the notes


def test_the_page_is_self_contained(tmp_path):
    text = write_sample(tmp_path / "report.html")
    page = parse(text)
    for tag, attrs, _ in page.elements:
        assert tag not in {"script", "link", "img", "iframe", "object", "embed"}, tag
        assert "src" not in attrs, (tag, attrs)
        for name in ("href", "xlink:href"):
            assert not re.match(r"\s*(https?:)?//", attrs.get(name, "")), (tag, attrs)
    assert "url(" not in text and "@import" not in text
    [csp] = [a for a in page.find("meta") if a.get("http-equiv") == "Content-Security-Policy"]
    assert "default-src 'none'" in csp["content"]
    assert not list(tmp_path.glob("*.tmp"))  # written atomically


def test_optional_sections(tmp_path):
    for agreement in (None, {}, {"no samples": {}}):
        page = parse(write_sample(tmp_path / "report.html", agreement=agreement))
        assert "agreement" not in [a.get("id") for a in page.find("section")]
        assert not page.find("figure", "agreement-0")
    page = parse(write_sample(tmp_path / "report.html", leaderboard=[], confusions={}, reliability={},
                              agreement=None, notes=()))
    assert [a["id"] for a in page.find("section")] == ["leaderboard"] and not page.find("figure")
    assert "No variants." in page.figure_text(None)


def test_ece_is_a_percentage_as_in_the_terminal_and_report_md(tmp_path):
    """report.html once showed ECE as a fraction (0.0523) where the other reports showed 5.23."""
    from rich.console import Console

    from promptcli.evaluation.leaderboard import Row
    from promptcli.report.terminal import leaderboard_table

    row = Row(rank=1, variant="a", metric="ece", value=0.0523, std=0.0, low=0.04, high=0.061, seeds=1, n=10,
              examples_per_s=1.0, p_value=None, test=None, significant=None, accuracy=0.5, macro_f1=0.5, ece=0.0523,
              log_loss=0.7)
    text = write_sample(tmp_path / "report.html", leaderboard=[row.to_dict()])
    assert "5.23" in parse(text).figure_text("leaderboard-chart") and "0.0523" not in text
    console = Console(record=True, width=200)
    console.print(leaderboard_table([row], "ece"))
    assert "5.23" in console.export_text()


def test_other_metrics_are_not_percentages(tmp_path):
    rows = [{"variant": "a", "metric": "log_loss", "value": 2.5, "low": 2.0, "high": 3.1, "n": 10}]
    page = parse(write_sample(tmp_path / "report.html", leaderboard=rows))
    assert "2.5" in page.figure_text("leaderboard-chart") and "250" not in page.figure_text("leaderboard-chart")
    [bar] = page.find("rect", "leaderboard-chart", "bar")
    assert float(bar["width"]) > 0


# ---- headless Chromium -----------------------------------------------------------------------

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not on PATH (apt-get install chromium); "
                                                             "the rendering check needs a real browser")

PROBE = """<script>
const figures = [...document.querySelectorAll('figure')].map(fig => {
  const svg = fig.querySelector('svg'), box = svg.getBoundingClientRect();
  const drawn = sel => [...svg.querySelectorAll(sel)].filter(e => {
    const b = e.getBBox(); return b.width > 0 || b.height > 0; }).length;
  return {id: fig.id, width: box.width, height: box.height, rects: drawn('rect'), lines: drawn('line'),
          texts: [...svg.querySelectorAll('text')].filter(t => t.getComputedTextLength() > 0).length,
          allTexts: svg.querySelectorAll('text').length, isSvg: svg instanceof SVGSVGElement};
});
document.body.setAttribute('data-probe', JSON.stringify(figures));
</script>"""


def chromium(url: str, profile: Path) -> subprocess.CompletedProcess:
    command = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
               "--enable-logging=stderr", "--v=0", "--dump-dom", url]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done


@needs_chromium
def test_chromium_renders_every_figure(tmp_path):
    report = tmp_path / "report.html"
    text = write_sample(report)
    done = chromium(report.as_uri(), tmp_path / "profile")
    dom = done.stdout
    for figure in FIGURES:
        assert f'id="{figure}"' in dom
    assert dom.count("<svg") == len(FIGURES) and dom.count("<rect") == text.count("<rect")
    # The page logs nothing: a blocked load ("… violates the following Content Security Policy
    # directive …") or a rendering error would be a CONSOLE line.
    console = [line for line in done.stderr.splitlines() if ":CONSOLE" in line]
    assert not console, console

    # The same page with a measuring script (the CSP that would forbid it removed): every SVG
    # has a size and every shape and label is laid out, so the SVG was rendered, not ignored.
    probe = tmp_path / "probe.html"
    probe.write_text(re.sub(r'<meta http-equiv="Content-Security-Policy"[^>]*>', "", text)
                     .replace("</body>", PROBE + "</body>"), encoding="utf-8")
    dom = chromium(probe.as_uri(), tmp_path / "profile").stdout
    found = re.search(r'data-probe="([^"]*)"', dom)
    assert found, dom[-2000:]
    figures = {f["id"]: f for f in json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))}
    assert list(figures) == FIGURES
    page = parse(text)
    for figure, seen in figures.items():
        assert seen["isSvg"] and seen["width"] > 50 and seen["height"] > 50, seen
        assert seen["rects"] == len(page.find("rect", figure)), seen
        assert seen["lines"] == len(page.find("line", figure)), seen
        assert seen["texts"] == seen["allTexts"] > 0, seen
