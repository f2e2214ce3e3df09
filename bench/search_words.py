"""Searched label words vs the shipped hand-written ones, on real weights (issue: automatic prompt search).

    python bench/search_words.py [--tasks sst2,sst5,mr,cr,subj] [--models gemma-3-270m]
        [--seeds 13,21,42,87,100] [--max-eval 500] [--out bench-search]

For each task × model × seed: `promptcli search words` on the seed's 16-shot training split only
(the same splits as bench/quality.py), with the template's own scoring; the best verbalizer found is
then evaluated once on the task's evaluation rows (SST-2: all 872 dev rows; the others: the same seeded
500-row sample as the Quality table), zero-shot (calibration and PMI off) and calibrated. The shipped
words are evaluated the same two ways. Printed: mean ± std over seeds, the search's time and forward
passes, and the words found.
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from quality import DATA_DIR, REPO, SEEDS, TASKS, TEMPLATE, Splits, run_once  # noqa: E402

import promptcli  # noqa: E402

SCORINGS = {"zero": {"calibrate": "none", "normalize": "none"},
            "calibrated": {"calibrate": "contextual", "normalize": "none"}}


def measure(args: argparse.Namespace) -> dict:
    out = Path(args.out)
    path = out / "search.json"
    results = json.loads(path.read_text()) if path.exists() else {}
    common = {"cache": out / "scores.sqlite", "store": out / "store.sqlite"}
    for name in args.tasks:
        splits = Splits(name, TASKS[name], Path(args.data_dir), out, None if name == "sst2" else args.max_eval)
        for model in args.models:
            template = REPO / "templates" / name / f"{TEMPLATE[model]}.yaml"
            row = results.setdefault(name, {}).setdefault(model, {"n": len(splits.gold), "seeds": {}})
            folder = out / "runs" / name / model
            for scoring, options in SCORINGS.items():
                row[f"shipped_{scoring}"] = run_once(folder / f"shipped-{scoring}", template=template,
                                                     data=splits.eval, model=model, **options, **common)["accuracy"]
            for seed in args.seeds:
                if str(seed) in row["seeds"]:
                    continue
                started = time.perf_counter()
                shutil.rmtree(folder / f"search-{seed}", ignore_errors=True)  # an interrupted search starts again
                found = promptcli.search_words(template, splits.train(seed), model, out=folder / f"search-{seed}",
                                               progress=False, cache=common["cache"])
                seconds = time.perf_counter() - started
                best = found.found[0]
                row["seeds"][str(seed)] = {
                    "words": best.words, "cv": best.cv, "given_train": found.given, "seconds": round(seconds, 1),
                    "forward_passes": found.forward_passes,
                    **{scoring: run_once(folder / f"searched-{seed}-{scoring}", template=template, data=splits.eval,
                                         model=model, verbalizer=str(best.path), **options, **common)["accuracy"]
                       for scoring, options in SCORINGS.items()}}
                path.write_text(json.dumps(results, indent=2) + "\n")
                print(f"{name} · {model} · seed {seed}: {json.dumps(row['seeds'][str(seed)])}", flush=True)
            path.write_text(json.dumps(results, indent=2) + "\n")
    return results


def mean_std(values: list[float]) -> str:
    values = [100 * v for v in values]
    return f"{statistics.mean(values):.1f} ± {statistics.stdev(values) if len(values) > 1 else 0.0:.1f}"


def table(results: dict) -> str:
    lines = ["| task | model | n | shipped words: zero-shot | searched: zero-shot | shipped: calibrated | "
             "searched: calibrated | search time (s) | forward passes |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for name, models in results.items():
        for model, row in models.items():
            seeds = list(row["seeds"].values())
            if not seeds:
                continue
            lines.append("| " + " | ".join([
                name, model, str(row["n"]), f"{100 * row['shipped_zero']:.1f}", mean_std([s["zero"] for s in seeds]),
                f"{100 * row['shipped_calibrated']:.1f}", mean_std([s["calibrated"] for s in seeds]),
                f"{statistics.median(s['seconds'] for s in seeds):.0f}",
                f"{statistics.median(s['forward_passes'] for s in seeds):.0f}"]) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", default="sst2,sst5,mr,cr,subj")
    p.add_argument("--models", default="gemma-3-270m")
    p.add_argument("--seeds", default=",".join(map(str, SEEDS)))
    p.add_argument("--data-dir", default=str(DATA_DIR))
    p.add_argument("--max-eval", type=int, default=500)
    p.add_argument("--out", default="bench-search")
    p.add_argument("--table", action="store_true", help="only print the table from OUT/search.json")
    args = p.parse_args(argv)
    args.tasks, args.models = args.tasks.split(","), args.models.split(",")
    args.seeds = [int(s) for s in args.seeds.split(",")]
    results = json.loads((Path(args.out) / "search.json").read_text()) if args.table else measure(args)
    print(table(results))
    for name, models in results.items():
        for model, row in models.items():
            for seed, found in row["seeds"].items():
                print(f"{name} · {model} · seed {seed}: {found['words']}")


if __name__ == "__main__":
    main()
