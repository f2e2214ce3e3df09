"""Quality on real weights: every task × embedded model × setting, the README's Quality table.

    python bench/quality.py [--tasks sst2,sst5,...] [--models gemma-3-270m,smollm2-135m-instruct]
        [--settings zero,calibrated,pmi,fewshot,tuned] [--seeds 13,21,42,87,100] [--out bench-quality]

Settings, each on the task's whole evaluation set (the shipped template of the model's kind:
`causal.yaml` for the base model, `chat.yaml` for the instruct model):
- majority: the share of the most frequent gold label (no model);
- shipped: the template as shipped, with its own scoring defaults (what `promptcli run` gives);
- zero: the template with calibration and normalisation off;
- calibrated: contextual calibration (content-free inputs), normalisation off;
- pmi: domain-conditional PMI, calibration off;
- fewshot: the template's scoring defaults, with demonstrations drawn from the 16-shot split of
  each seed (`per_class` per task below, balanced, in the seed's order);
- tuned: a soft prompt trained with `promptcli tune` on each seed's 16-shot split (sst2, sst5, rte),
  the best epoch chosen on a disjoint 16-shot dev split (LM-BFF's protocol; RTE has none: last epoch),
  evaluated as it was trained (calibration and PMI off).

16-shot splits follow LM-BFF: shuffle the train file's row indices with `random.Random(seed)` and
keep the first 16 rows of each label, in that order (SST-2's are the ones in ../shared/data).
RTE and CB have no training split here: one split (seed 13; CB: 4 per label, it has 5 neutral
rows) is drawn from dev, and every setting, zero-shot included, is evaluated on the rest of dev.

Every run is an ordinary `promptcli.run` output folder under `--out`; a finished one is read back,
an interrupted one resumes, so the script can be stopped and started again. Several instances may
share one --out (e.g. one per core, on different tasks or seeds): each merges its cells into
quality.json. Scores are shared through one score cache, so calibrated and PMI cost little once
zero-shot has run.
"""
from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

try:
    import fcntl  # instances sharing one --out take turns writing quality.json
except ImportError:  # Windows: run one instance per --out
    fcntl = None

REPO = Path(__file__).resolve().parents[1]
DATA_DIR = REPO.parent / "shared" / "data"
sys.path.insert(0, str(REPO))

import promptcli  # noqa: E402
from promptcli.evaluation.outputs import METRICS, RUN  # noqa: E402
from promptcli.files import read_json, write_json, write_text  # noqa: E402

SEEDS = (13, 21, 42, 87, 100)
SEEDED = ("fewshot", "tuned")  # settings measured once per seed: {seed: accuracy} in quality.json
MODELS = ("gemma-3-270m", "smollm2-135m-instruct")
TEMPLATE = {"gemma-3-270m": "causal", "smollm2-135m-instruct": "chat"}


@dataclass(frozen=True)
class Task:
    eval: str  # relative to --data-dir
    train: str | None  # the pool the 16-shot splits come from (None: drawn from eval, held out)
    per_class: int  # demonstrations per label in few-shot
    k: int = 16  # rows per label in a split
    tuned: bool = False  # soft prompts in the table
    dev_pool: str | None = None  # where tuning's 16-shot dev splits come from (default: `train`)


TASKS = {
    "sst2": Task("sst2/dev.jsonl", "sst2/train-16-{seed}.jsonl", per_class=4, tuned=True,
                 dev_pool="sst2/train-sentences.jsonl"),
    "sst5": Task("sst5/test.jsonl", "sst5/train.jsonl", per_class=2, tuned=True),
    "mr": Task("mr/test.jsonl", "mr/train.jsonl", per_class=4),
    "cr": Task("cr/test.jsonl", "cr/train.jsonl", per_class=4),
    "mpqa": Task("mpqa/test.jsonl", "mpqa/train.jsonl", per_class=4),
    "subj": Task("subj/test.jsonl", "subj/train.jsonl", per_class=4),
    "rte": Task("rte/dev.jsonl", None, per_class=2, tuned=True),
    "cb": Task("cb/dev.jsonl", None, per_class=1, k=4),
}

# LM-BFF (Gao et al., 2021), Table 3: RoBERTa-large (355M, a masked LM), K = 16 per label, 5 splits.
LM_BFF = {
    "sst2": {"zero": 83.6, "fewshot": "84.8 (1.3)"}, "sst5": {"zero": 35.0, "fewshot": "30.6 (0.9)"},
    "mr": {"zero": 80.8, "fewshot": "80.5 (1.7)"}, "cr": {"zero": 79.5, "fewshot": "87.4 (0.8)"},
    "mpqa": {"zero": 67.6, "fewshot": "63.8 (2.1)"}, "subj": {"zero": 51.4, "fewshot": "53.6 (1.0)"},
    "rte": {"zero": 51.3, "fewshot": "60.4 (1.4)"},
}


def read_rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def write_rows(path: Path, rows: list[dict]) -> Path:
    """Written whole, then renamed: an instance sharing --out never reads a half-written split."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return path


def k_shot(rows: list[dict], seed: int, k: int) -> list[int]:
    """LM-BFF's split: row indices shuffled with random.Random(seed), the first k of each label, in order."""
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    taken: Counter = Counter()
    chosen = []
    for i in order:
        if taken[rows[i]["label"]] < k:
            taken[rows[i]["label"]] += 1
            chosen.append(i)
    return chosen


class Splits:
    """The evaluation file and each seed's 16-shot training file of a task (written under --out)."""

    def __init__(self, name: str, task: Task, data_dir: Path, out: Path, max_eval: int | None = None):
        self.name, self.task, self.data_dir, self.folder = name, task, data_dir, out / "splits" / name
        eval_rows = read_rows(data_dir / task.eval)
        self.total = len(eval_rows)
        if task.train is None:  # no training split: hold one out of the evaluation file
            held = k_shot(eval_rows, 13, task.k)
            self._pool = write_rows(self.folder / "train.jsonl", [eval_rows[i] for i in held])
            eval_rows = [r for i, r in enumerate(eval_rows) if i not in set(held)]
        if max_eval and len(eval_rows) > max_eval:  # a seeded sample, in the file's order
            eval_rows = [eval_rows[i] for i in sorted(random.Random(0).sample(range(len(eval_rows)), max_eval))]
        if len(eval_rows) < self.total:
            self.eval = write_rows(self.folder / f"eval-{len(eval_rows)}.jsonl", eval_rows)
        else:
            self.eval = data_dir / task.eval
        self.gold = [r["label"] for r in eval_rows]

    def train(self, seed: int) -> Path:
        if self.task.train is None:
            return self._pool
        if "{seed}" in self.task.train:
            return self.data_dir / self.task.train.format(seed=seed)
        path = self.folder / f"train-{self.task.k}-{seed}.jsonl"
        if not path.exists():
            rows = read_rows(self.data_dir / self.task.train)
            write_rows(path, [rows[i] for i in k_shot(rows, seed, self.task.k)])
        return path

    def dev(self, seed: int) -> Path | None:
        """LM-BFF's dev split for tuning: 16 per label from the training pool, none of them in `train(seed)`."""
        pool = self.task.dev_pool or self.task.train
        if pool is None:
            return None  # RTE, CB: every row outside the evaluation set is already the training split
        path = self.folder / f"dev-{self.task.k}-{seed}.jsonl"
        if not path.exists():
            taken = {json.dumps(r, sort_keys=True) for r in read_rows(self.train(seed))}
            rows = [r for r in read_rows(self.data_dir / pool) if json.dumps(r, sort_keys=True) not in taken]
            write_rows(path, [rows[i] for i in k_shot(rows, seed, self.task.k)])
        return path

    def majority(self) -> float:
        return Counter(self.gold).most_common(1)[0][1] / len(self.gold)


def run_once(out: Path, **kwargs) -> dict:
    """One promptcli run; a finished folder is read back, an interrupted one resumes."""
    if (out / METRICS).exists() and read_json(out / RUN).get("status") == "finished":
        return read_json(out / METRICS)
    if (out / RUN).exists():
        return promptcli.run(resume=out, progress=False, **{k: v for k, v in kwargs.items()
                                                           if k in ("cache", "store")}).metrics
    return promptcli.run(out=out, progress=False, **kwargs).metrics


# Prompt tuning (Lester et al., 2021) with a short budget: on 2 CPU cores a step of the 270M model takes
# about 1.5 s. The dev split picks the best epoch's prompt; evaluation is as trained (no calibration, no PMI).
TUNE = {"virtual_tokens": 10, "epochs": 12, "lr": 0.03, "batch_size": 8, "init": "vocab", "calibrate": "none",
        "normalize": "none", "eval_every": 0}  # dev accuracy after each epoch: the best epoch is kept


def tuned_prompt(folder: Path, template: Path, train: Path, dev: Path | None, model: str, seed: int) -> Path:
    if (folder / "adapter_model.safetensors").exists():
        return folder
    promptcli.tune(template, train, model, out=folder, dev=dev, progress=False,
                   resume=(folder / "tune.json").exists(), seed=seed, **TUNE)
    return folder


def save(results_path: Path, name: str, model: str, row: dict, seconds: float) -> dict:
    """Merge one task × model row into quality.json and return the whole file. The file is read again
    under a lock, so instances sharing one --out (say, one per core) keep each other's cells; a seeded
    setting keeps the seeds another instance measured."""
    with open(results_path.with_name(".quality.lock"), "w") as lock:
        if fcntl is not None:
            fcntl.flock(lock, fcntl.LOCK_EX)
        results = json.loads(results_path.read_text()) if results_path.exists() else {}
        kept = results.setdefault(name, {}).setdefault(model, {})
        for key, value in row.items():
            if key in SEEDED and isinstance(kept.get(key), dict):
                kept[key].update(value)
            else:
                kept[key] = value
        kept["seconds"] = round(kept.get("seconds", 0) + seconds, 1)
        write_json(results_path, results)
    return results


def measure(args: argparse.Namespace) -> dict:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results_path = out / "quality.json"
    results: dict = {}
    common = {"cache": out / "scores.sqlite", "store": out / "store.sqlite", "batch_size": args.batch_size}
    for name in args.tasks:
        task = TASKS[name]
        splits = Splits(name, task, Path(args.data_dir), out, args.max_eval)
        for model in args.models:
            template = REPO / "templates" / name / f"{TEMPLATE[model]}.yaml"
            row = dict(majority=splits.majority(), n=len(splits.gold), of=splits.total,
                       template=str(template.relative_to(REPO)), defaults=defaults(template))
            folder = out / "runs" / name / model
            started = time.perf_counter()
            fixed = {"shipped": {}, "zero": {"calibrate": "none", "normalize": "none"},
                     "calibrated": {"calibrate": "contextual", "normalize": "none"},
                     "pmi": {"calibrate": "none", "normalize": "pmi"}}
            for setting, options in fixed.items():
                if setting in args.settings:
                    metrics = run_once(folder / setting, template=template, data=splits.eval, model=model,
                                       **options, **common)
                    row[setting] = {"accuracy": metrics["accuracy"], "macro_f1": metrics["macro_f1"]}
            if "fewshot" in args.settings:
                # the base model's shipped few-shot template; the instruct model's chat template with
                # demonstrations as user/assistant turns (balanced, per_class of each label)
                fewshot = REPO / "templates" / name / "causal-fewshot.yaml" if TEMPLATE[model] == "causal" else None
                shots = None if fewshot else task.per_class * len(set(splits.gold))
                row["fewshot"] = {str(seed): run_once(folder / f"fewshot-{seed}", template=fewshot or template,
                                                      data=splits.eval, model=model, train=splits.train(seed),
                                                      shots=shots, seed=seed, **common)["accuracy"]
                                  for seed in args.seeds}
            if "tuned" in args.settings and task.tuned:
                accuracies = {}
                for seed in args.seeds:
                    prompt = tuned_prompt(folder / f"prompt-{seed}", template, splits.train(seed), splits.dev(seed),
                                          model, seed)
                    accuracies[str(seed)] = run_once(folder / f"tuned-{seed}", template=template, data=splits.eval,
                                                     model=model, soft_prompt=str(prompt), calibrate="none",
                                                     normalize="none", **common)["accuracy"]
                row["tuned"] = accuracies
                row["tune_settings"] = TUNE
            results = save(results_path, name, model, row, time.perf_counter() - started)
            print(f"{name} · {model}: {json.dumps({k: v for k, v in row.items() if k != 'template'})}", flush=True)
    return results


def defaults(template: Path) -> str:
    """The template's own scoring, in a few words."""
    scoring = promptcli.load_template(template).spec.scoring
    parts = [p for p, on in (("calibrated", scoring.calibrate != "none"), ("PMI", scoring.normalize == "pmi")) if on]
    return " + ".join(parts) or "uncalibrated"


def cell(value) -> str:
    """One setting's accuracy (%); a seeded setting ({seed: accuracy}) as mean ± std, naming how many seeds
    when not all five have run."""
    if value is None:
        return "–"
    if isinstance(value, dict) and "accuracy" in value:
        value = value["accuracy"]
    if isinstance(value, float):
        return f"{100 * value:.1f}"
    values = [100 * v for v in (value.values() if isinstance(value, dict) else value)]
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    seeds = "" if len(values) == len(SEEDS) else f" ({len(values)} of {len(SEEDS)} seeds)"
    return f"{statistics.mean(values):.1f} ± {spread:.1f}{seeds}"


def table(results: dict) -> str:
    """The README's Quality table (accuracy, %)."""
    lines = ["| task | model (template: its defaults) | n | majority | as shipped | zero-shot | calibrated | PMI | "
             "few-shot (5 seeds) | soft prompt (5 seeds) | LM-BFF, RoBERTa-large: zero-shot / in-context |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for name in sorted(results, key=list(TASKS).index):  # the tasks' order, whatever order they ran in
        for model, row in results[name].items():
            ref = LM_BFF.get(name)
            reference = f"{ref['zero']} / {ref['fewshot']}" if ref else "–"
            cells = [name, f"{model} (`{Path(row['template']).name}`: {row.get('defaults', '')})", str(row["n"]) if row["n"] == row.get("of", row["n"]) else f"{row['n']} of {row['of']}",
                     *(cell(row.get(key)) for key in ("majority", "shipped", "zero", "calibrated", "pmi", "fewshot",
                                                      "tuned")), reference]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--tasks", default=",".join(TASKS), help="comma-separated (default: all)")
    p.add_argument("--models", default=",".join(MODELS), help="comma-separated embedded models")
    p.add_argument("--settings", default="shipped,zero,calibrated,pmi,fewshot,tuned")
    p.add_argument("--seeds", default=",".join(map(str, SEEDS)))
    p.add_argument("--data-dir", default=str(DATA_DIR))
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-eval", type=int, default=None,
                   help="evaluate on a seeded sample of this many rows where the evaluation set is larger")
    p.add_argument("--out", default="bench-quality", help="runs, splits, score cache and quality.json")
    p.add_argument("--table", action="store_true", help="only print the table from OUT/quality.json")
    args = p.parse_args(argv)
    args.tasks, args.models, args.settings = (v.split(",") for v in (args.tasks, args.models, args.settings))
    args.seeds = [int(s) for s in args.seeds.split(",")]
    results = (json.loads((Path(args.out) / "quality.json").read_text()) if args.table else measure(args))
    print(table(results))


if __name__ == "__main__":
    main()
