"""Speed, memory and agreement: promptcli vs hand-written floors vs lm-evaluation-harness and PEFT.

    python bench/scoring.py --mlm-model ./models/roberta-base --causal-model ./models/gpt2 \\
        --data-dir ../shared/data [--scenario all] [--rows 200] [--quick] [--json out.json]

Each scenario runs the same template on the same rows with the same model. Each method has
its own process (so each peak RSS is its own). Scoring (a–d): the raw forward pass on
promptcli's own token ids and batches (the floor), `promptcli.run` as a user calls it, and,
for causal scenarios, `lm_eval.simple_evaluate` on a task generated from the same template,
demonstrations and JSONL. Self-consistency (e): a hand-written sampling loop on a KV cache
(the floor) and `promptcli.run`. Soft-prompt training (f): PEFT prompt tuning with a hand
loop and `promptcli.tuning.tuner.tune`, in steps/s. After one warm-up run each, the methods take
turns, one timed run at a time, for `--repeats` rounds (never two at once); times are the
medians. promptcli's and lm-eval's times are the whole call minus loading the weights; the
floors' are the model calls (and optimiser steps) alone.
`--quick` is a quick check (32 rows, 8 in d and e, 1 training epoch); use 2-layer models for it
(`materialize.py gpt2 DIR --layers 2`).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `bench` importable as a package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    __package__ = "bench"

from rich.console import Console  # noqa: E402

from bench.report import agreement, print_report, target_checks  # noqa: E402
from bench.measure import REPLY  # noqa: E402
from bench.scenarios import METHOD_NAMES, SCENARIOS, Scenario  # noqa: E402
from promptcli.models.info import resolve_model  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
ENV = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TQDM_DISABLE": "1",
       "TOKENIZERS_PARALLELISM": "false", "PYTHONWARNINGS": "ignore"}


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--scenario", default="all", help="comma-separated keys (a–f) or 'all' (the default)")
    p.add_argument("--mlm-model", help="masked-LM folder for scenario a")
    p.add_argument("--causal-model", help="causal-LM folder for scenarios b–f")
    p.add_argument("--model", help="one model for every chosen scenario (overrides the two above); a folder, a "
                                  ".gguf or an embedded model's short name (e.g. gemma-3-270m)")
    p.add_argument("--data-dir", default=str(REPO.parent / "shared" / "data"),
                   help="folder with sst2/ (dev, train-16-13) and sst5/")
    p.add_argument("--data", help="one data file for every chosen scenario (overrides --data-dir)")
    p.add_argument("--rows", type=int, help="first N rows of the data (default: all; --quick: 32, for (d) and "
                                          "(e) 8); (d) and (e) take at most 64")
    p.add_argument("--repeats", type=int, default=3,
                   help="rounds of timed runs (one per method per round, after a warm-up run; default 3)")
    p.add_argument("--batch-size", type=int, default=32, help="scoring and generation batch (d: 8)")
    p.add_argument("--epochs", type=int, help="(f) training epochs over the 32 rows (default 3; --quick: 1)")
    p.add_argument("--tune-batch-size", type=int, default=8, help="(f) training batch size (default 8)")
    p.add_argument("--virtual-tokens", type=int, default=20, help="(f) soft-prompt length (default 20)")
    p.add_argument("--tune-method", default="prompt", choices=("prompt", "p-tuning", "prefix"),
                   help="(f) what trains, on both sides: prompt tuning (the default), P-tuning (MLP encoder) or "
                        "prefix tuning")
    p.add_argument("--sample", type=int, default=64, help="rows for the token-id and log-prob comparison")
    p.add_argument("--methods", help="only these (default: each scenario's own); of raw, raw-naive (full logits, "
                                   "only when named), promptcli, lmeval, raw-generate, peft, promptcli-tune")
    p.add_argument("--threads", type=int, help="torch threads in every method's process (default: torch's own)")
    p.add_argument("--quick", action="store_true",
                   help="32 rows (8 in d, e), 1 training epoch: a quick check with 2-layer models")
    p.add_argument("--json", help="also write every figure to this file")
    p.add_argument("--child", nargs=2, metavar=("JOB", "RESULT"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.epochs is None:
        args.epochs = 1 if args.quick else 3
    return args


def machine_facts() -> dict[str, str]:
    cpu = platform.processor() or "?"
    try:
        names = [line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    facts = {"CPU": cpu, "cores": f"{usable} usable / {os.cpu_count()}", "python": platform.python_version()}
    for package in ("torch", "transformers", "tokenizers", "lm_eval", "promptcli"):
        try:
            facts[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            facts[package] = "not installed"
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    facts["commit"] = commit.stdout.strip() or "?"
    if hasattr(os, "getloadavg"):  # another job on the machine shows here (and in the spread of the repeats)
        facts["load avg at start"] = f"{os.getloadavg()[0]:.2f}"
    return facts


class Method:
    """One method's process: started, warmed up, then asked for timed runs one at a time."""

    def __init__(self, job: dict, workdir: Path):
        self.job = job
        self.path = workdir / f"{job['scenario']}-{job['method']}"
        self.path.with_suffix(".job.json").write_text(json.dumps(job))
        self.log = self.path.with_suffix(".log").open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.scoring", "--child", str(self.path.with_suffix(".job.json")),
             str(self.path.with_suffix(".result.json"))], cwd=REPO, env={**os.environ, **ENV},
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, text=True)
        self.expect()  # loaded and warmed up

    def expect(self):
        for line in self.proc.stdout:
            if line.startswith(REPLY):
                return json.loads(line[len(REPLY):])
        self.fail()

    def fail(self):
        self.proc.wait()
        self.log.close()
        tail = self.path.with_suffix(".log").read_text()[-4000:]
        raise SystemExit(f"{METHOD_NAMES[self.job['method']]} failed on scenario ({self.job['scenario']}):\n{tail}")

    def run(self) -> float:
        self.proc.stdin.write("run\n")
        self.proc.stdin.flush()
        return self.expect()

    def finish(self) -> dict:
        self.proc.stdin.write("done\n")
        self.proc.stdin.close()
        if self.proc.wait() != 0:
            self.fail()
        self.log.close()
        return json.loads(self.path.with_suffix(".result.json").read_text())


def measure_scenario(jobs: list[dict], workdir: Path, rounds: int, console: Console) -> dict[str, dict]:
    """Start every method (one at a time), then `rounds` rounds of one timed run each, rotating the order."""
    methods = []
    for job in jobs:
        console.print(f"[dim]({job['scenario']}) {METHOD_NAMES[job['method']]}: loading and warming up …[/]")
        methods.append(Method(job, workdir))
    for r in range(rounds):
        console.print(f"[dim]({jobs[0]['scenario']}) round {r + 1}/{rounds} …[/]")
        for method in methods[r % len(methods):] + methods[:r % len(methods)]:
            method.run()
    return {m.job["method"]: m.finish() for m in methods}


def scenario_jobs(args: argparse.Namespace, scenario: Scenario, model: str, workdir: Path) -> list[dict]:
    """One job per method: what its process needs to know."""
    rows = scenario.quick_rows if args.quick and args.rows is None else args.rows
    rows = min(filter(None, (rows, scenario.max_rows)), default=None)
    data = (args.data or str(Path(args.data_dir) / scenario.data)) if scenario.data else None
    naive = "raw" in scenario.methods and args.methods and "raw-naive" in args.methods.split(",")
    methods = list(scenario.methods) + (["raw-naive"] if naive else [])
    return [{"scenario": scenario.key, "method": method, "kind": scenario.kind, "template": str(scenario.template),
             "data": data, "train": str(Path(args.data_dir) / scenario.train) if scenario.train else None,
             "model": model, "rows": rows, "batch_size": scenario.batch_size or args.batch_size,
             "sample": min(args.sample, rows or args.sample) if "lmeval" in scenario.methods else 0,
             "epochs": args.epochs, "tune_batch_size": args.tune_batch_size, "virtual_tokens": args.virtual_tokens,
             "tune_method": args.tune_method, "workdir": str(workdir), "threads": args.threads, "unit": scenario.unit} for method in methods]


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.child:
        from bench.measure import child
        child(*args.child)
        return 0
    console = Console(width=None if sys.stdout.isatty() else 180)
    keys = list(SCENARIOS) if args.scenario == "all" else [k.strip() for k in args.scenario.split(",")]
    unknown = [k for k in keys if k not in SCENARIOS]
    if unknown:
        raise SystemExit(f"unknown scenario {', '.join(unknown)} (one of {', '.join(SCENARIOS)}, or all)")
    wanted = [m.strip() for m in args.methods.split(",")] if args.methods else None
    # an embedded model's short name or a .gguf: every method (lm-eval included) loads its converted folder
    for attr in ("model", "causal_model", "mlm_model"):
        if getattr(args, attr):
            setattr(args, attr, resolve_model(getattr(args, attr))[0])
    facts = machine_facts()
    if "f" in keys:
        facts["(f) method"] = args.tune_method
    results: dict[str, dict[str, dict]] = {}
    agreements: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="promptcli-bench-") as tmp:
        workdir = Path(tmp)
        os.environ.setdefault("HF_DATASETS_CACHE", str(workdir / "hf-datasets"))
        os.environ["PROMPTCLI_HOME"] = str(workdir / "promptcli-home")  # the run store: not the user's
        for key in keys:
            scenario = SCENARIOS[key]
            results[key] = {}
            if scenario.missing:
                continue
            model = args.model or (args.mlm_model if scenario.kind == "mlm" else args.causal_model)
            if not model:
                raise SystemExit(f"scenario ({key}) needs --{scenario.kind}-model (or --model); write one with "
                                 f"`python ../shared/models/materialize.py gpt2 DIR` (or FacebookAI--roberta-base)")
            jobs = [job for job in scenario_jobs(args, scenario, model, workdir)
                    if wanted is None or job["method"] in wanted]
            if not jobs:
                continue
            results[key] = measure_scenario(jobs, workdir, args.repeats, console)
            facts["torch threads"] = str(next(iter(results[key].values()))["torch_threads"])
            if "promptcli" in results[key] and "lmeval" in results[key]:
                agreements[key] = agreement(results[key]["promptcli"], results[key]["lmeval"])
    if hasattr(os, "getloadavg"):
        facts["load avg at end"] = f"{os.getloadavg()[0]:.2f}"
    checks = target_checks(results, agreements)
    print_report(console, facts, results, agreements, checks)
    if args.json:
        slim = {k: {m: {f: v for f, v in r.items() if f not in ("predictions", "docs", "sample")}
                    for m, r in methods.items()} for k, methods in results.items()}
        Path(args.json).write_text(json.dumps({"command": sys.argv, "machine": facts, "results": slim,
                                               "agreement": agreements, "targets": checks}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
