"""`promptcli search formats`: how much of a prompt's accuracy is the prompt, and how much its whitespace.

Each base template's format variants (`formats.py`), times any verbalizers given, run as one sweep on
the data. Per base template: the spread of accuracy over its variants (min / median / max), the
variants statistically tied with its best (the leaderboard's test, Holm-adjusted), and how many of
the pairs of variants differ significantly (McNemar's exact test, Holm over all pairs): few
significant pairs mean the ranking among the formats is mostly noise.
"""
from __future__ import annotations

import itertools
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import yaml

from ..errors import SpecError
from ..evaluation.leaderboard import ALPHA, Scored, leaderboard
from ..evaluation.runner import read_run
from ..evaluation.stats import holm, mcnemar_exact
from ..files import write_json, write_text
from ..report.strip import strip_plot_page
from ..spec.loading import load_template
from ..spec.sweepfile import SweepSpec
from ..spec.runconfig import checked
from ..sweeps.runner import run_sweep
from .formats import DIMENSIONS, Format, apply, variants


@dataclass
class Spread:
    base: str
    values: dict[str, float]  # variant → accuracy
    formats: dict[str, str]  # variant → what changed
    tied: list[str]
    pairs: int
    significant_pairs: int
    original: str

    @property
    def summary(self) -> dict[str, float]:
        values = list(self.values.values())
        return {"min": min(values), "median": statistics.median(values), "max": max(values),
                "spread": max(values) - min(values)}

    def to_dict(self) -> dict[str, Any]:
        return {"base": self.base, **self.summary, "values": self.values, "formats": self.formats,
                "tied_with_best": self.tied, "pairs": self.pairs, "significant_pairs": self.significant_pairs,
                "original": self.original, "original_value": self.values.get(self.original)}


@dataclass
class FormatSearch:
    out_dir: Path
    spreads: list[Spread] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # variant → why it could not run


def write_variants(template: Path, out: Path, count: int, seed: int, vary: tuple[str, ...] = DIMENSIONS,
                   orders: int = 0) -> dict[Path, Format]:
    """Each format variant of `template` as a template file under `out` (paths in it made absolute)."""
    loaded = load_template(template)
    raw = loaded.doc.data
    if not isinstance(raw.get("text"), str):
        raise SpecError(f"search formats varies a template's `text`; this {loaded.kind} template has none",
                        path=str(template))
    written = {}
    demonstrations = raw.get("demonstrations")
    for i, fmt in enumerate(variants(raw["text"], count, seed, vary, orders if demonstrations else 0)):
        data = dict(raw, text=apply(raw["text"], fmt), name=f"{template.stem}-f{i:02d}")
        if fmt.order is not None:
            data["demonstrations"] = {**demonstrations, "order": fmt.order}
        if isinstance(data.get("verbalizer"), str):
            data["verbalizer"] = str((template.parent / data["verbalizer"]).resolve())
        path = out / template.stem / f"{template.stem}-f{i:02d}.yaml"
        header = f"# Format variant {i} of {template} ({fmt.describe()}), written by promptcli search formats.\n"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text(path, header + yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
        written[path] = fmt
    return written


def search_formats(templates: Sequence[str | Path], data: str | Path, model: str, *, out: str | Path,
                   count: int = 12, seed: int = 0, verbalizers: Sequence[str] = (), train: str | Path | None = None,
                   vary: Sequence[str] = DIMENSIONS, orders: int = 0,
                   progress: bool = True, cache: bool | str | Path = True, store: Any = None, **options: Any
                   ) -> FormatSearch:
    """Write every base template's format variants, run them as one sweep, and measure each base's spread.

    `options` are the sweep's shared run options (calibrate and normalize included: one value each)."""
    out = Path(out)
    scoring = {k: [options.pop(k)] for k in ("calibrate", "normalize") if options.get(k) is not None}
    bases: dict[str, dict[Path, Format]] = {}
    for template in map(Path, templates):
        if template.stem in bases:
            raise SpecError("two base templates share a file name; rename one", path=str(template))
        bases[template.stem] = write_variants(template, out / "templates", count, seed, tuple(vary), orders)
    spec = checked(SweepSpec, {"name": "formats", "data": str(data), "models": [model],
                               "train": str(train) if train else None,
                               "templates": [str(p) for files in bases.values() for p in files],
                               "verbalizers": [None, *map(str, verbalizers)], **scoring,
                               "options": options}, what="option")
    state = run_sweep(spec, out / "sweep", progress=progress, cache=cache, store=store)
    result = FormatSearch(out, skipped=state.skipped)
    finished: dict[Path, list] = {}
    for v in state.variants.values():
        if v.status == "finished":
            finished.setdefault(Path(v.variant.template), []).append(v)
    for base, files in bases.items():
        entries, described = [], {}
        for path, fmt in files.items():
            for v in finished.get(path, []):
                record, predictions, _ = read_run(out / "sweep" / v.folder)
                entries.append(Scored(v.name, v.name, record.labels, sorted(predictions, key=lambda p: p.index),
                                      record.examples_per_s))
                described[v.name] = fmt.describe() + (f", verbalizer {Path(v.variant.verbalizer).stem}"
                                                      if v.variant.verbalizer else "")
        if entries:
            result.spreads.append(spread(base, entries, described))
    write_json(out / "formats.json", [s.to_dict() for s in result.spreads])
    write_text(out / "formats.html", strip_plot_page(
        "promptcli search formats", [(s.base, s.values, s.original, s.tied) for s in result.spreads]))
    return result


def spread(base: str, entries: list[Scored], described: dict[str, str]) -> Spread:
    rows = leaderboard(entries, "accuracy", correction="holm")
    correct = {e.name: [p.pred == p.gold for p in e.predictions] for e in entries}
    pairs = list(itertools.combinations(correct, 2))
    adjusted = holm([mcnemar_exact(correct[a], correct[b]).p_value for a, b in pairs]) if pairs else []
    original = next((e.name for e in entries if "-f00" in e.name and "verbalizer=" not in e.name), entries[0].name)
    return Spread(base=base, values={r.variant: r.value for r in rows}, formats=described,
                  tied=[r.variant for r in rows if r.tied], pairs=len(pairs),
                  significant_pairs=sum(p < ALPHA for p in adjusted), original=original)
