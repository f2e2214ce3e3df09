"""Build the real pipeline (spec files → prepare → model → scorer) for tests."""
from __future__ import annotations

import random
from pathlib import Path

import torch
import yaml

from promptcli.evaluation.inputs import prepare
from promptcli.models.weights import load_model
from promptcli.scoring import make_scorer
from promptcli.scoring.labels import LabelDistribution
from promptcli.spec.runconfig import RunConfig, ScoringConfig

WORDS = ["the movie was fun", "a terrible plot", "great acting and a good story , i liked it", "bad",
         "it is what it is", "an awful film", "the music is good", "boring", "a wonderful film with great acting",
         "the end"]


def sentences(n: int, seed: int = 0) -> list[dict]:
    """Rows of varied length (so batches need padding), with gold labels."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 4)))
        rows.append({"text": text, "label": "positive" if i % 2 else "negative"})
    return rows


def write_specs(folder: Path, text: str, labels: dict, **verbalizer) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "verbalizer.yaml").write_text(yaml.safe_dump({"labels": labels, **verbalizer}))
    (folder / "template.yaml").write_text(yaml.safe_dump({"kind": "manual", "text": text,
                                                         "verbalizer": "verbalizer.yaml"}))
    return folder / "template.yaml"


class Pipeline:
    def __init__(self, folder: Path, model: str, text: str, labels: dict, rows: list[dict], normalize: str = "none",
                 **verbalizer):
        template = write_specs(folder, text, labels, **verbalizer)
        self.config = RunConfig(template=str(template), data="<rows>", model=model, device="cpu", dtype="float32")
        self.prepared = prepare(self.config, rows)
        self.loaded = load_model(self.prepared.info, device="cpu", dtype="float32")
        self.normalize = normalize

    @property
    def encoded(self):
        return self.prepared.encoded

    def scorer(self, batch_size: int = 8):
        return make_scorer(self.loaded, ScoringConfig(batch_size=batch_size, normalize=self.normalize,
                                                       multi_token=self.prepared.verbalizer.multi_token))

    def word_scores(self, batch_size: int, order: list | None = None) -> dict[int, torch.Tensor]:
        """index → word scores, scoring `order` (default: data order) in batches of `batch_size`."""
        return self._batched(batch_size, order, lambda scorer, batch: scorer.word_scores(batch))

    def label_log_probs(self, batch_size: int, order: list | None = None) -> dict[int, torch.Tensor]:
        return self._batched(batch_size, order,
                             lambda scorer, batch: LabelDistribution(self.prepared.verbalizer)(scorer.word_scores(batch)))

    def _batched(self, batch_size: int, order: list | None, score) -> dict[int, torch.Tensor]:
        scorer = self.scorer(batch_size)
        items = order if order is not None else self.encoded
        out = {}
        with torch.inference_mode():
            for start in range(0, len(items), batch_size):
                batch = items[start:start + batch_size]
                for enc, row in zip(batch, score(scorer, batch)):
                    out[enc.index] = row
        return out

def count_model_work(model: torch.nn.Module) -> dict:
    """Count forward calls and real (unpadded) new token positions, independently of the scorer."""
    seen = {"calls": 0, "positions": 0, "sequences": 0}

    def hook(module, args, kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        mask = kwargs.get("attention_mask")
        seen["calls"] += 1
        seen["sequences"] += ids.shape[0]
        seen["positions"] += int(mask[:, -ids.shape[1]:].sum()) if mask is not None else ids.numel()

    handle = model.register_forward_pre_hook(hook, with_kwargs=True)
    return seen, handle
