"""Data-parallel `run` on one machine: N processes × 1 thread (torchrun) vs 1 process × N threads.

    python bench/parallel.py [--template templates/sst2/causal.yaml] [--data ../shared/data/sst2/dev.jsonl]
        [--model gemma-3-270m] [--rows 200] [--processes 2] [--batch-size 8] [--out bench-parallel]

All runs score the same seeded sample of `--rows` rows with the score cache off; prints the wall
time of each (model loading included: each process loads its own copy) and whether the N-process
run's predictions.jsonl and metrics.json are byte-identical to a one-process run with as many
threads per process (1). The thread count itself may move the last printed digit of a probability
(BLAS sums in another order), so that comparison is printed too.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def timed(command: list[str], threads: int) -> float:
    start = time.perf_counter()
    done = subprocess.run(command, env={**os.environ, "OMP_NUM_THREADS": str(threads)}, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(done.stderr[-3000:])
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--template", default=str(REPO / "templates/sst2/causal.yaml"))
    p.add_argument("--data", default=str(REPO.parent / "shared/data/sst2/dev.jsonl"))
    p.add_argument("--model", default="gemma-3-270m")
    p.add_argument("--rows", type=int, default=200)
    p.add_argument("--processes", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--out", type=Path, default=Path("bench-parallel"))
    args = p.parse_args(argv)
    n = args.processes
    common = ["run", args.template, "--data", args.data, "--model", args.model, "--subsample", str(args.rows),
              "--batch-size", str(args.batch_size), "--device", "cpu", "--no-cache", "--quiet"]
    one, threaded, many = args.out / "1x1", args.out / f"1x{n}", args.out / f"{n}x1"
    alone = timed([sys.executable, "-m", "promptcli", *common, "--out", str(one)], threads=1)
    single = timed([sys.executable, "-m", "promptcli", *common, "--out", str(threaded)], threads=n)
    parallel = timed([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n}",
                      "-m", "promptcli", *common, "--out", str(many)], threads=1)

    def same(a: Path, b: Path) -> bool:
        return all((a / f).read_bytes() == (b / f).read_bytes() for f in ("predictions.jsonl", "metrics.json"))

    result = {"rows": args.rows, "model": args.model, "1 process x 1 thread (s)": round(alone, 1),
              f"1 process x {n} threads (s)": round(single, 1), f"{n} processes x 1 thread (s)": round(parallel, 1),
              "speed-up": round(single / parallel, 2), f"{n}x1 identical to 1x1": same(one, many),
              f"1x{n} identical to 1x1": same(one, threaded)}
    (args.out / "parallel.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
