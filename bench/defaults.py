"""Choose a shipped template's scoring defaults on training rows, never on the rows bench/quality.py reports.

    python bench/defaults.py --task mr --template causal-fewshot [--model gemma-3-270m] [--rows 200]

Runs the template four ways (uncalibrated, calibrated, PMI, PMI + calibrated) on `--rows` training
rows, balanced over the labels and drawn with a fixed seed from the rows that no 16-shot split of
quality.py uses (so no row is both a demonstration and a query). A few-shot template takes its
demonstrations from each seed's 16-shot split, as quality.py does, and the figure is the mean over
the seeds (one split alone decides by a row or two). RTE and CB have no rows outside
their evaluation set except the held-out split; for them this script refuses, and their few-shot
templates keep the zero-shot template's choice.
"""
from __future__ import annotations

import argparse
import json
import random
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from quality import REPO, SEEDS, TASKS, Splits, read_rows, run_once, write_rows  # noqa: E402

SETTINGS = {"uncalibrated": {"calibrate": "none", "normalize": "none"},
            "calibrated": {"calibrate": "contextual", "normalize": "none"},
            "PMI": {"calibrate": "none", "normalize": "pmi"},
            "PMI + calibrated": {"calibrate": "contextual", "normalize": "pmi"}}


def choice_rows(splits: Splits, n: int) -> list[dict]:
    """`n` training rows balanced over labels, none of them in any seed's 16-shot split."""
    pool_name = splits.task.dev_pool or splits.task.train
    if pool_name is None or "{seed}" in pool_name:
        raise SystemExit(f"{splits.name} has no training rows outside its splits to choose on")
    used = {json.dumps(r, sort_keys=True) for seed in SEEDS for r in read_rows(splits.train(seed))}
    by_label: dict = defaultdict(list)
    for row in read_rows(splits.data_dir / pool_name):
        if json.dumps(row, sort_keys=True) not in used:
            by_label[row["label"]].append(row)
    per_label = n // len(by_label)
    rng = random.Random(0)
    return [row for label in sorted(by_label, key=str) for row in rng.sample(by_label[label], per_label)]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--task", required=True, choices=sorted(TASKS))
    p.add_argument("--template", required=True, help="a template name under templates/TASK/")
    p.add_argument("--model", default="gemma-3-270m")
    p.add_argument("--rows", type=int, default=200)
    p.add_argument("--data-dir", default=str(REPO.parent / "shared" / "data"))
    p.add_argument("--out", default="bench-defaults")
    args = p.parse_args(argv)
    out = Path(args.out) / args.task / args.template / args.model
    splits = Splits(args.task, TASKS[args.task], Path(args.data_dir), Path(args.out))
    data = write_rows(out / "rows.jsonl", choice_rows(splits, args.rows))
    template = REPO / "templates" / args.task / f"{args.template}.yaml"
    fewshot = promptcli_demonstrations(template)
    figures = {}
    for setting, options in SETTINGS.items():
        runs = [run_once(out / setting.replace(" + ", "+") / str(seed), template=template, data=data,
                         model=args.model, cache=Path(args.out) / "scores.sqlite", store=False, **options,
                         **({"train": splits.train(seed), "seed": seed} if fewshot else {}))["accuracy"]
                for seed in (SEEDS if fewshot else SEEDS[:1])]
        figures[setting] = sum(runs) / len(runs)
    rows = f"{len(read_rows(data))} balanced rows of {args.task}/{Path(splits.task.dev_pool or splits.task.train).name}"
    print(f"{args.task}/{args.template} ({args.model}) on {rows}" + (", mean over the 5 seeds' demonstrations" if fewshot else "")
          + ": " + ", ".join(f"{k} {100 * v:.1f}%" for k, v in figures.items()))


def promptcli_demonstrations(template: Path) -> bool:
    import promptcli

    return promptcli.load_template(template).spec.demonstrations is not None


if __name__ == "__main__":
    main()
