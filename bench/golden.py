"""Behaviour fingerprint: sha256 of predictions.jsonl and metrics.json for every shipped template.

    python bench/golden.py --causal-model ./models/gpt2-2l --mlm-model ./models/roberta-2l [--rows 24]

A refactor should leave every line of this output unchanged. Models are usually 2-layer random-weight
checkpoints (`python ../shared/models/materialize.py gpt2 ./models/gpt2-2l --layers 2`): accuracy means
nothing there, but any change in scores, their order or the files' layout changes a hash. Cloze
templates (`manual*`) run on the masked LM, the rest on the causal LM; chat templates are skipped when
the causal model's tokenizer has no chat template. Each template reads the first `--rows` rows of its
task's evaluation file in ../shared/data and, when it wants demonstrations, that task's 16-shot split
(seed 13).
"""
from __future__ import annotations

import argparse
import hashlib
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

EVAL = {"sst2": "dev", "sst5": "test", "mr": "test", "cr": "test", "mpqa": "test", "subj": "test",
        "rte": "dev", "cb": "dev"}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def train_split(data_dir: Path, task: str) -> Path:
    """The task's seed-13 16-shot split, or its whole training file (RTE/CB: dev, as they have no train)."""
    for name in ("train-16-13.jsonl", "train.jsonl", "dev.jsonl"):
        if (data_dir / task / name).exists():
            return data_dir / task / name
    raise SystemExit(f"no training rows for {task} under {data_dir}")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--causal-model", required=True)
    p.add_argument("--mlm-model", required=True)
    p.add_argument("--data-dir", default=str(REPO.parent / "shared" / "data"))
    p.add_argument("--rows", type=int, default=24)
    args = p.parse_args(argv)

    import promptcli
    from transformers import AutoTokenizer

    data_dir = Path(args.data_dir)
    has_chat = AutoTokenizer.from_pretrained(args.causal_model).chat_template is not None
    with tempfile.TemporaryDirectory() as tmp:
        for template in sorted((REPO / "templates").glob("*/*.yaml")):
            task, name = template.parent.name, template.stem
            if "chat" in name and not has_chat:
                continue
            model = args.mlm_model if name.startswith("manual") else args.causal_model
            out = Path(tmp) / task / name
            promptcli.run(template, data_dir / task / f"{EVAL[task]}.jsonl", model, out=out,
                          train=str(train_split(data_dir, task)), limit=args.rows, progress=False,
                          cache=False, store=False)
            print(f"{task}/{name}: predictions {sha256(out / 'predictions.jsonl')}"
                  f"  metrics {sha256(out / 'metrics.json')}", flush=True)


if __name__ == "__main__":
    main()
