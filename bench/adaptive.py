"""An adaptive sweep beside the full sweep it shortens: the same variants on the same rows.

    python bench/adaptive.py FULL_SWEEP_DIR [--first 100] [--cache SCORES] [--out bench-adaptive]

FULL_SWEEP_DIR is a finished sweep's folder (its `sweep.json`; e.g. one of bench/formats.py's
`<task>/<model>/sweep`). Its spec runs again with `adaptive: --first`: every variant on a stratified
slice of that many rows, then only the variants not significantly worse than the slice's best on all
rows. Prints the work saved (rows × variants not computed) and whether the final top set (the
variants tied with the best, Holm) is the full sweep's. Pass the full sweep's score cache with
`--cache` to read back what it computed instead of computing it again: the work count is the same.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import promptcli
from promptcli.sweeps.state import SweepState


def top_set(state: SweepState) -> list[str]:
    return sorted(row.variant for row in state.leaderboard or [] if row.tied or row.rank == 1)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("full", type=Path, help="a finished sweep's folder")
    p.add_argument("--first", type=int, default=100, help="rows in the first slice")
    p.add_argument("--cache", default=True, help="score cache (default: the user's)")
    p.add_argument("--out", type=Path, default=Path("bench-adaptive"))
    args = p.parse_args(argv)
    full = SweepState.read(args.full / "sweep.json")
    spec = {**full.spec, "adaptive": args.first, "name": f"{full.spec['name']}-adaptive"}
    state = promptcli.sweep(spec, args.out, progress=False, cache=args.cache, store=args.out / "store.sqlite")
    race = state.race or {}
    result = {"full": str(args.full), "variants": len(full.leaderboard), "first": args.first,
              "dropped": sorted(race.get("dropped", {})), "work": {k: race.get(k) for k in
                                                                  ("computed", "full", "saved", "saved_share")},
              "top_full": top_set(full), "top_adaptive": top_set(state)}
    result["same_top"] = result["top_full"] == result["top_adaptive"]
    (args.out / "adaptive.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
