"""Honest selection: variants are ranked on the sweep's data (the selection split); the one ranked first is
then evaluated once on `report_on` (the report split), and both numbers are reported, labelled.

The best of many variants on one split is optimistic on that split (the winner's curse: on small dev
sets searched prompts reach 100%), so the number to quote is the report split's, which played no part
in the choice. A multi-seed variant is evaluated with every seed; an ensemble with its members.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ..evaluation.leaderboard import Row, Scored, leaderboard
from ..evaluation.runner import ModelPool
from ..spec.sweepfile import SweepSpec
from .ensemble import accuracy, ensemble
from .variants import Variant, group_name, template_labels


def ensemble_group(variant: Variant, names: dict[Variant, str], spec: SweepSpec) -> str:
    """The leaderboard row of the ensemble this variant is a member of (see `ensemble.ensembles`)."""
    label = template_labels([v.template for v in names])[variant.template]
    return group_name(names[variant].replace(label, "ensemble" + ("(weighted)" if spec.weighted else ""), 1))


def report_chosen(spec: SweepSpec, best: Row, results: dict[Variant, Scored], names: dict[Variant, str], out: Path,
                  run_variant: Any) -> dict[str, Any]:
    """Evaluate the variant behind the leaderboard's first row on `spec.report_on`; both numbers, labelled.

    `run_variant(variant, name, folder, spec, pool)` runs one variant (the sweep's own road)."""
    report_spec = spec.model_copy(update={"data": spec.report_on})
    pool = ModelPool()
    members = [v for v in results if group_name(names[v]) == best.variant]
    is_ensemble = not members
    if is_ensemble:
        members = [v for v in results if ensemble_group(v, names, spec) == best.variant]
    scored = {v: run_variant(v, names[v], out / "report-on" / v.slug(), report_spec, pool) for v in members}
    if is_ensemble:  # one ensemble per seed, as in the selection sweep, weighted by the selection rows
        by_seed: dict[Any, list[Variant]] = {}
        for v in scored:
            by_seed.setdefault(v.seed, []).append(v)
        labels = next(iter(scored.values())).labels
        entries = [Scored(name=f"{best.variant} seed={seed}", group=best.variant, labels=labels,
                          predictions=ensemble([scored[v].predictions for v in group], labels,
                                               [accuracy(results[v]) for v in group] if spec.weighted else None),
                          examples_per_s=0.0) for seed, group in by_seed.items()]
    else:  # the variant's seeds form one row
        entries = [Scored(name=e.name, group=best.variant, labels=e.labels, predictions=e.predictions,
                          examples_per_s=e.examples_per_s) for e in scored.values()]
    row = leaderboard(entries, spec.metric)[0]
    return {"variant": best.variant, "metric": spec.metric, "selected_on": spec.data, "reported_on": spec.report_on,
            "selection": {"value": best.value, "low": best.low, "high": best.high, "n": best.n},
            "report": {"value": row.value, "low": row.low, "high": row.high, "n": row.n, "std": row.std,
                       "seeds": row.seeds}}

