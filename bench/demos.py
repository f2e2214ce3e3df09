"""Demonstrations chosen by meaning vs by shared words vs balanced, on real weights.

    python bench/demos.py [--tasks sst2,sst5,rte] [--model gemma-3-270m] [--seeds 13,21,42,87,100]
        [--max-eval 300] [--out bench-demos]

For each task × seed, the shipped few-shot template (`causal-fewshot.yaml`, its number of demonstrations)
with demonstrations drawn from the seed's 16-shot training split (the splits of bench/quality.py) by
`select: balanced` (the same for every query), `similar` by TF-IDF, by all-MiniLM-L6-v2 sentence
embeddings, and by the scored model's own mean hidden states (per query, the nearest training rows);
evaluated on the same seeded sample of `--max-eval` evaluation rows. Prints mean ± std over seeds.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from quality import DATA_DIR, REPO, SEEDS, TASKS, Splits, run_once  # noqa: E402

SELECTIONS = {"balanced": {"select": "balanced"}, "similar (TF-IDF)": {"select": "similar", "similarity": "tfidf"},
              "similar (MiniLM)": {"select": "similar", "similarity": "minilm"},
              "similar (model)": {"select": "similar", "similarity": "model"}}


def variant(task: str, name: str, out: Path) -> Path:
    """The shipped few-shot template with its demonstrations chosen another way (paths made absolute)."""
    source = REPO / "templates" / task / "causal-fewshot.yaml"
    data = yaml.safe_load(source.read_text())
    data["verbalizer"] = str((source.parent / data["verbalizer"]).resolve())
    data["demonstrations"] = {**data["demonstrations"], **SELECTIONS[name]}
    path = out / "templates" / task / f"{name.split()[0]}-{SELECTIONS[name].get('similarity', 'fixed')}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", default="sst2,sst5,rte")
    p.add_argument("--model", default="gemma-3-270m")
    p.add_argument("--seeds", default=",".join(map(str, SEEDS)))
    p.add_argument("--max-eval", type=int, default=300)
    p.add_argument("--out", default="bench-demos")
    args = p.parse_args(argv)
    out = Path(args.out)
    common = {"cache": out / "scores.sqlite", "store": out / "store.sqlite"}
    results: dict = {}
    lines = ["| task | n | " + " | ".join(SELECTIONS) + " |", "| --- | ---: |" + " ---: |" * len(SELECTIONS)]
    for task in args.tasks.split(","):
        splits = Splits(task, TASKS[task], DATA_DIR, out, args.max_eval)
        for name in SELECTIONS:
            template = variant(task, name, out)
            results.setdefault(task, {})[name] = [
                run_once(out / "runs" / task / f"{template.stem}-{seed}", template=template, data=splits.eval,
                         model=args.model, train=splits.train(int(seed)), seed=int(seed), **common)["accuracy"]
                for seed in args.seeds.split(",")]
            print(task, name, results[task][name], flush=True)
        cells = [f"{100 * statistics.mean(v):.1f} ± {100 * statistics.stdev(v):.1f}" for v in results[task].values()]
        lines.append(f"| {task} | {len(splits.gold)} | " + " | ".join(cells) + " |")
    (out / "demos.json").write_text(json.dumps(results, indent=2) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
