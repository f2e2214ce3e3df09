"""Agreement between promptcli and lm-eval, the figures table, and the target checks.

A rate counts what the scenario's `unit` says: examples (a–e) or optimiser steps (f)."""
from __future__ import annotations

import math
import statistics
from typing import Any

from rich.console import Console
from rich.table import Table

from .scenarios import METHOD_NAMES, SCENARIOS, promptcli_method

MEMORY_LIMIT = 1.2  # peak RSS of promptcli within this factor of the raw floor's


def throughput(result: dict) -> float:
    return result["examples"] / statistics.median(result["seconds"])


def agreement(promptcli: dict, lmeval: dict) -> dict[str, Any]:
    """Same predicted label on every row? Same token ids and log-probs on the sample?"""
    preds = {int(k): v["pred"] for k, v in promptcli["predictions"].items()}
    docs = {int(k): v for k, v in lmeval["docs"].items()}
    common = sorted(preds.keys() & docs.keys())
    differ = [i for i in common if preds[i] != docs[i]["pred"]]
    sample = {int(k): v for k, v in promptcli.get("sample", {}).items() if int(k) in docs}
    deltas, token_mismatch, norm_differ = [], [], []
    for i, mine in sample.items():
        theirs = docs[i]
        deltas.append(max(abs(a - b) for a, b in zip(mine["scores"], theirs["lls"])))
        if "tokens" in theirs and any(ctx != mine["context"] or cont != mine["conts"][k]
                                      for k, (ctx, cont) in enumerate(theirs["tokens"])):
            token_mismatch.append(i)
        if mine["pred_norm"] != theirs["pred_norm"]:
            norm_differ.append(i)
    return {"rows": len(common), "same": len(common) - len(differ), "share": 1 - len(differ) / max(len(common), 1),
            "differ": differ[:20], "sample": len(sample), "max_abs_delta_logprob": max(deltas) if deltas else None,
            "tokens_checked": sum("tokens" in docs[i] for i in sample), "token_mismatch": token_mismatch[:20],
            "acc_norm_same": len(sample) - len(norm_differ), "acc_norm_differ": norm_differ[:20],
            "accuracy": {"promptcli": promptcli.get("accuracy"), "lmeval": lmeval.get("accuracy")}}


def _ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}×" if a and b else "–"


def figures_table(results: dict[str, dict[str, dict]], agreements: dict[str, dict]) -> Table:
    table = Table(title="promptcli vs hand-written floors, lm-evaluation-harness and PEFT (median of repeats, "
                        "warm-up excluded; base = the scenario's first method)")
    for column in ("scenario", "method", "rate", "median s", "× base", "× lm-eval", "peak RSS MB", "RSS × base",
                   "agreement", "max |Δ log-p|"):
        table.add_column(column, justify="left" if column in ("scenario", "method") else "right")
    for key, methods in results.items():
        scenario = SCENARIOS[key]
        label = f"({key}) {scenario.title}"
        if scenario.missing:
            table.add_row(label, "not available yet", "–", "–", "–", "–", "–", "–", "–", scenario.missing)
            continue
        if not methods:
            continue
        base = methods.get(scenario.methods[0])
        lm = methods.get("lmeval")
        base_rate = throughput(base) if base else None
        lm_rate = throughput(lm) if lm else None
        for name, result in methods.items():
            rate = throughput(result)
            agree = agreements.get(key) if name == "promptcli" else None
            delta = agree and agree["max_abs_delta_logprob"]
            table.add_row(label, METHOD_NAMES[name], f"{rate:.2f} {scenario.unit}/s",
                          f"{statistics.median(result['seconds']):.3f}", _ratio(rate, base_rate),
                          _ratio(rate, lm_rate), f"{result['peak_rss_mb']:.0f}",
                          _ratio(result["peak_rss_mb"], base and base["peak_rss_mb"]),
                          f"{100 * agree['share']:.1f}% ({agree['same']}/{agree['rows']})" if agree else "–",
                          f"{delta:.1e}" if delta is not None and agree else "–")
            label = ""
        table.add_section()
    return table


def target_checks(results: dict[str, dict[str, dict]], agreements: dict[str, dict]) -> list[dict[str, Any]]:
    """Every target of the issue that applies to a measured scenario, met or missed."""
    checks = []
    for key, methods in results.items():
        scenario = SCENARIOS[key]
        mine = methods.get(promptcli_method(methods) or "")
        if scenario.missing or mine is None:
            continue
        for other, minimum in scenario.targets:
            if other in methods:
                ratio = throughput(mine) / throughput(methods[other])
                checks.append({"scenario": key, "target": f"promptcli ≥ {minimum}× {METHOD_NAMES[other]}",
                               "value": f"{ratio:.3f}×", "met": ratio >= minimum})
        base = scenario.methods[0]
        if base in methods and base.startswith("raw"):
            ratio = mine["peak_rss_mb"] / methods[base]["peak_rss_mb"]
            checks.append({"scenario": key, "target": f"peak RSS ≤ {MEMORY_LIMIT}× {METHOD_NAMES[base]}",
                           "value": f"{ratio:.3f}×", "met": ratio <= MEMORY_LIMIT})
        if key in agreements:
            agree = agreements[key]
            checks.append({"scenario": key, "target": "100% agreement with lm-eval",
                           "value": f"{100 * agree['share']:.1f}%", "met": agree["share"] == 1.0})
    return checks


def print_report(console: Console, facts: dict, results: dict, agreements: dict, checks: list[dict]) -> None:
    console.print(" · ".join(f"[bold]{k}[/] {v}" for k, v in facts.items()))
    console.print(figures_table(results, agreements))
    for key, methods in results.items():
        scenario = SCENARIOS[key]
        name = promptcli_method(methods)
        mine, base = methods.get(name or ""), methods.get(scenario.methods[0])
        if mine and base and mine.get("loop_seconds"):
            loop = statistics.median(mine["loop_seconds"])
            rate = mine["examples"] / loop
            what = ("training steps" if name == "promptcli-tune" else
                    "generation loop" if scenario.methods[0] == "raw-generate" else "scoring loop")
            console.print(f"({key}) promptcli's {what} alone: {rate:.2f} {scenario.unit}/s = "
                          f"{rate / throughput(base):.2f}× {METHOD_NAMES[scenario.methods[0]]}; the rest of the call "
                          f"(tokenizer and config loading, reading and encoding rows, output files) took "
                          f"{statistics.median(mine['seconds']) - loop:.2f} s")
        if mine and base and "last_loss" in mine and "last_loss" in base:
            console.print(f"({key}) loss at the last step (same data, init and optimiser): promptcli "
                          f"{mine['last_loss']:.6f}, {METHOD_NAMES[scenario.methods[0]]} {base['last_loss']:.6f}")
    for key, agree in agreements.items():
        delta = agree["max_abs_delta_logprob"]
        console.print(
            f"({key}) agreement: {agree['same']}/{agree['rows']} rows predict the same label as lm-eval `acc`; "
            f"on the first {agree['sample']} rows: token ids identical in "
            f"{agree['tokens_checked'] - len(agree['token_mismatch'])}/{agree['tokens_checked']}, "
            f"max |Δ log-prob| {delta if delta is None else format(delta, '.2e')}, "
            f"`normalize: chars` = `acc_norm` in {agree['acc_norm_same']}/{agree['sample']}; "
            f"accuracy promptcli {_pct(agree['accuracy']['promptcli'])} / lm-eval {_pct(agree['accuracy']['lmeval'])}"
            + (f"; differing rows: {agree['differ']}" if agree["differ"] else ""))
    for check in checks:
        mark = "[green]met[/]" if check["met"] else "[red]MISSED[/]"
        console.print(f"({check['scenario']}) {check['target']}: {check['value']} {mark}")


def _pct(value: float | None) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100 * value:.1f}%"
