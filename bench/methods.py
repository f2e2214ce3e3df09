"""The prompt-tuning family on real weights: prompt tuning vs P-tuning vs prefix tuning.

    python bench/methods.py [--tasks sst2,rte] [--model gemma-3-270m] [--seeds 13,21,42,87,100]
        [--methods prompt,p-tuning,prefix,prefix-mlp] [--max-eval 872] [--out bench-methods]

Each method trains on each seed's 16-shot split (the splits of bench/quality.py) with the Quality
table's budget (10 virtual tokens from frequent vocabulary tokens, 12 epochs, batch 8, the best epoch
on the seed's disjoint 16-shot dev split; RTE has none: the last epoch), at a learning rate usual for
the method (METHODS below: not tuned on these rows; `prefix-mlp` is prefix tuning through its projection), and is evaluated as trained (calibration and PMI off)
on a seeded sample of `--max-eval` evaluation rows. Prints accuracy (mean ± std over seeds), training
steps/s and peak memory per method.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from quality import DATA_DIR, REPO, SEEDS, TASKS, TUNE, Splits, run_once  # noqa: E402

import promptcli  # noqa: E402

METHODS = {"prompt": {"method": "prompt", "lr": 0.03}, "p-tuning": {"method": "p-tuning", "lr": 0.01},
           "prefix": {"method": "prefix", "lr": 0.01},
           "prefix-mlp": {"method": "prefix", "prefix_projection": True, "lr": 0.01}}


def trained(folder: Path, method: str, template: Path, splits: Splits, model: str, seed: int) -> dict:
    """The method's prompt for one seed (a finished folder is read back, an interrupted one resumes)."""
    manifest = folder / "promptcli_soft_prompt.json"
    if not manifest.exists():
        promptcli.tune(template, splits.train(seed), model, out=folder, dev=splits.dev(seed), progress=False,
                       resume=(folder / "tune.json").exists(), seed=seed, **{**TUNE, **METHODS[method]})
    return json.loads(manifest.read_text())["training"]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", default="sst2,rte")
    p.add_argument("--model", default="gemma-3-270m")
    p.add_argument("--seeds", default=",".join(map(str, SEEDS)))
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--max-eval", type=int, default=None)
    p.add_argument("--out", type=Path, default=Path("bench-methods"))
    args = p.parse_args(argv)
    common = {"cache": args.out / "scores.sqlite", "store": args.out / "store.sqlite"}
    lines = ["| task | method | lr | accuracy | steps/s | peak memory (MB) |", "| --- | --- | ---: | ---: | ---: | ---: |"]
    results: dict = {}
    for task in args.tasks.split(","):
        splits = Splits(task, TASKS[task], DATA_DIR, args.out, args.max_eval)
        template = REPO / "templates" / task / "causal.yaml"
        for method in args.methods.split(","):
            runs = []
            for seed in map(int, args.seeds.split(",")):
                folder = args.out / "runs" / task / method / str(seed)
                training = trained(folder / "prompt", method, template, splits, args.model, seed)
                metrics = run_once(folder / "eval", template=template, data=splits.eval, model=args.model,
                                   soft_prompt=str(folder / "prompt"), calibrate="none", normalize="none", **common)
                runs.append({"accuracy": metrics["accuracy"], "steps_per_s": training["steps_per_s"],
                             "memory": training.get("memory") or {}})
            results.setdefault(task, {})[method] = runs
            accuracy = [100 * r["accuracy"] for r in runs]
            spread = statistics.stdev(accuracy) if len(accuracy) > 1 else 0.0
            memory = max(r["memory"].get("peak_rss_mb", 0) for r in runs)  # the process's, across seeds
            lines.append(f"| {task} ({len(splits.gold)} rows) | {method} | {METHODS[method]['lr']} | "
                         f"{statistics.mean(accuracy):.1f} ± {spread:.1f} | "
                         f"{statistics.mean(r['steps_per_s'] or 0 for r in runs):.2f} | {memory:.0f} |")
            print(lines[-1], flush=True)
    (args.out / "methods.json").write_text(json.dumps(results, indent=2) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
