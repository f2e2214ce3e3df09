"""Results as terminal tables (rich)."""
from __future__ import annotations

from typing import Any

from rich.console import Console, Group
from rich.table import Table

from ..evaluation.leaderboard import Row
from ..evaluation.runner import RunResult
from ..store.runs import StoredRun
from .format import number, pct, speed_cell, unit


def summary_table(result: RunResult) -> Table:
    record, metrics = result.record, result.metrics
    model = record.model.get("name") or record.config["model"] or ""
    table = Table(title=f"{record.template_name} · {model}", show_header=False,
                  title_justify="left")
    table.add_column(style="bold")
    table.add_column(justify="right")
    if "accuracy" in metrics:
        table.add_row("accuracy", pct(metrics["accuracy"]))
        table.add_row("macro-F1", pct(metrics["macro_f1"]))
    if "coverage" in metrics:
        table.add_row("coverage (examples answered)", pct(metrics["coverage"]))
        table.add_row("accuracy over answered", pct(metrics["accuracy_answered"]))
        table.add_row("abstentions (examples)", str(metrics["abstentions"]))
    paths = metrics.get("paths")
    if paths:
        table.add_row("paths answered", f"{paths['answered']} / {paths['total']} ({pct(paths['coverage'])}%)")
        table.add_row("path abstentions", str(paths["abstained"]))
    if "agreement" in metrics:
        table.add_row("mean agreement", pct(metrics["agreement"]["mean"]))
    ties = metrics.get("ties")
    if ties is not None:
        right = f" ({ties['correct']} right)" if ties["count"] and "correct" in ties else ""
        table.add_row("tied votes", f"{ties['count']}{right}")
        if ties["count"]:
            given = ", ".join(f"{label} {n}" for label, n in ties["given_to"].items() if n)
            table.add_row(f"ties given to ({ties['rule']})", given)
    counts = record.counts
    table.add_row("examples", str(metrics["n"]))
    demos = counts.get("demonstrations")
    if demos:
        table.add_row("demonstrations / example", f"{demos['per_example']} ({demos['select']}, seed {demos['seed']})")
        table.add_row("examples that lost demonstrations", str(demos["lost_to_length"]))
        table.add_row("demonstrations equal to the query, skipped", str(demos["query_skipped"]))
    if counts["skipped"]:
        table.add_row("skipped (invalid rows)", str(counts["skipped"]))
    table.add_row("truncated", str(counts["truncated"]))
    content_free = (record.calibration or {}).get("contextual")
    if content_free:  # what calibration divides by: a tiny share inflates that label everywhere
        table.add_row("content-free p (calibration)", " · ".join(f"{k} {pct(v)}" for k, v in content_free.items()))
    table.add_row("examples/s", f"{record.examples_per_s:.1f}")
    work = record.work
    table.add_row("forward passes / example", f"{work['forward_passes_per_example']:.2f}")
    if work.get("shared_prefix_tokens"):
        table.add_row("shared prompt prefix (computed once)", f"{work['shared_prefix_tokens']} tokens")
    table.add_row("peak memory (MB)", f"{record.memory['peak_rss_mb']:.0f}")
    table.add_row("scorer", record.scorer)
    table.add_row("output", str(result.out_dir))
    return table


def per_class_table(metrics: dict[str, Any]) -> Table:
    table = Table(title="per class", title_justify="left")
    for name in ("label", "precision", "recall", "F1", "support"):
        table.add_column(name, justify="left" if name == "label" else "right")
    for label, row in metrics["per_class"].items():
        table.add_row(label, pct(row["precision"]), pct(row["recall"]), pct(row["f1"]), str(row["support"]))
    return table


def confusion_table(metrics: dict[str, Any]) -> Table:
    labels, matrix = metrics["confusion"]["labels"], metrics["confusion"]["matrix"]
    table = Table(title="confusion (rows: gold, columns: predicted)", title_justify="left")
    table.add_column("gold \\ pred")
    for label in labels:
        table.add_column(label, justify="right")
    for label, row in zip(labels, matrix):
        best = max(row) if row else 0
        table.add_row(label, *[f"[bold]{v}[/]" if v == best and v else str(v) for v in row])
    return table


def predicted_table(metrics: dict[str, Any]) -> Table:
    table = Table(title="predicted labels (no gold labels in the data)", title_justify="left")
    table.add_column("label")
    table.add_column("count", justify="right")
    for label, count in metrics["predicted"].items():
        table.add_row(label, str(count))
    return table


def agreement_table(metrics: dict[str, Any]) -> Table:
    table = Table(title="self-consistency agreement (share of paths agreeing with the answer)", title_justify="left")
    table.add_column("agreement", justify="right")
    table.add_column("examples", justify="right")
    table.add_column("")
    histogram = metrics["agreement"]["histogram"]
    top = max(histogram.values(), default=1)
    for level, count in histogram.items():
        table.add_row(level, str(count), "█" * max(1, round(30 * count / top)))
    return table


def print_run(result: RunResult, console: Console) -> None:
    parts = [summary_table(result)]
    if "per_class" in result.metrics:
        parts += [per_class_table(result.metrics), confusion_table(result.metrics)]
    else:
        parts.append(predicted_table(result.metrics))
    if "agreement" in result.metrics:
        parts.append(agreement_table(result.metrics))
    console.print(Group(*parts))
    skipped = result.record.skipped_rows
    if skipped:
        shown = ", ".join(f"line {s['line']} ({s['reason']})" for s in skipped[:5])
        more = f" and {len(skipped) - 5} more (see run.json)" if len(skipped) > 5 else ""
        console.print(f"[yellow]skipped {len(skipped)} invalid rows: {shown}{more}")


def leaderboard_table(rows: list[Row], metric: str) -> Table:
    def fmt(v: float) -> str:
        return number(v, metric)

    table = Table(title=f"leaderboard · {metric}{unit(metric)}", title_justify="left")
    for name in ("#", "variant", metric, "95% CI", "ex/s", "vs best"):
        table.add_column(name, justify="left" if name == "variant" else "right")
    for r in rows:
        value = fmt(r.value) + (f" ± {fmt(r.std)}" if r.seeds > 1 else "")
        if r.p_value is None:
            versus = "best"
        else:
            adjusted = f" ({r.correction} {r.p_adjusted:.3g})" if r.correction != "none" and r.p_adjusted is not None else ""
            versus = f"{'[red]worse[/]' if r.significant else 'tied'} p={r.p_value:.3g}{adjusted}"
        table.add_row(str(r.rank), r.variant, value, f"{fmt(r.low)}–{fmt(r.high)}", speed_cell(r.examples_per_s, r.cached), versus)
    return table


def runs_table(stored: list[StoredRun]) -> Table:
    table = Table(title="runs", title_justify="left")
    for name in ("id", "kind", "name", "status", "created", "n", "accuracy", "output"):
        table.add_column(name, justify="right" if name in ("id", "n", "accuracy") else "left",
                         overflow="fold", min_width=10 if name == "name" else None)
    for r in stored:
        metrics = r.metrics or {}
        accuracy = metrics.get("accuracy")
        if accuracy is None and metrics.get("leaderboard"):
            accuracy = metrics["leaderboard"][0].get("accuracy")
        table.add_row(str(r.id), r.kind, r.name or "", r.shown_status or "", (r.created or "")[:19], str(metrics.get("n", "")),
                      pct(accuracy) if accuracy is not None else "", r.out_dir or "")
    return table
