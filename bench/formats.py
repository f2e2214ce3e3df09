"""The format spread of the shipped SST-2 and RTE templates on both embedded models (`search formats`).

    python bench/formats.py [--tasks sst2,rte] [--models gemma-3-270m,smollm2-135m-instruct]
        [--templates causal,chat] [--variants 8] [--rows 300] [--out bench-formats]

Per task × model: `promptcli.search_formats` over the task's shipped `--templates` (default: the zero-shot
causal and chat ones; `causal-fewshot` takes its demonstrations from the seed-13 16-shot split of
bench/quality.py), each as written plus `--variants` − 1 format variants, on a seeded stratified sample of
`--rows` rows of the evaluation file (RTE: dev less the held-out split of bench/quality.py). Prints one table: accuracy as
written, min / median / max over the variants, the variants tied with the best and the pairs that
differ significantly (Holm).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from quality import DATA_DIR, REPO, TASKS, Splits  # noqa: E402

import promptcli  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", default="sst2,rte")
    p.add_argument("--models", default="gemma-3-270m,smollm2-135m-instruct")
    p.add_argument("--templates", default="causal,chat")
    p.add_argument("--variants", type=int, default=8)
    p.add_argument("--rows", type=int, default=300)
    p.add_argument("--out", default="bench-formats")
    args = p.parse_args(argv)
    out = Path(args.out)
    lines = ["| task | model | template | variants | as written | min | median | max | tied with best | "
             "pairs differing |", "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    results = {}
    for task in args.tasks.split(","):
        splits = Splits(task, TASKS[task], DATA_DIR, out, None)
        for model in args.models.split(","):
            names = args.templates.split(",")
            found = promptcli.search_formats([REPO / "templates" / task / f"{t}.yaml" for t in names],
                                             splits.eval, model, out=out / task / model, count=args.variants,
                                             train=splits.train(13) if "causal-fewshot" in names else None,
                                             subsample=args.rows, progress=False, cache=out / "scores.sqlite",
                                             store=out / "store.sqlite")
            for s in found.spreads:
                d = s.to_dict()
                results.setdefault(task, {}).setdefault(model, {})[s.base] = d
                lines.append(f"| {task} | {model} | {s.base}.yaml | {len(s.values)} | {100 * d['original_value']:.1f} "
                             f"| {100 * d['min']:.1f} | {100 * d['median']:.1f} | {100 * d['max']:.1f} | "
                             f"{len(s.tied)} of {len(s.values)} | {s.significant_pairs} of {s.pairs} |")
            print(lines[-1], flush=True)
    (out / "formats.json").write_text(json.dumps(results, indent=2) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
