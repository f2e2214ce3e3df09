"""Choosing in-context demonstrations from a training set.

- `first`: the first rows of the training file;
- `random`: a seeded random sample, the same for every query;
- `balanced`: labels take turns (round-robin in verbalizer order), each label's rows in a
  seeded random order, the same for every query;
- `similar`: per query, the training rows nearest over the template's fields, by TF-IDF cosine
  (`similarity: tfidf`: cheap, deterministic, no weights) or by the cosine of all-MiniLM-L6-v2
  sentence embeddings (`similarity: minilm`: meaning, not shared words) or of the scored model's
  own mean hidden states (`similarity: model`: no extra weights; the model must be loaded to encode,
  so `prepare` hands the selector its encoder); the pool is encoded once and cached; the most
  similar sits closest to the query.

`order: K` permutes the chosen demonstrations with seed K (the same rows, another order), to measure
how much the order alone moves accuracy.

A demonstration is never the query itself: a training row whose fields equal the query's is
skipped (and counted) and the next candidate takes its place.
"""
from __future__ import annotations

import math
import random
import re
from collections import Counter
from dataclasses import dataclass
from typing import Sequence

from ..errors import RunError
from ..spec.data import Example
from ..spec.template import DemonstrationsSpec
from .render import Demo

WORD = re.compile(r"\w+")


@dataclass(frozen=True)
class Selection:
    demos: list[Demo]
    skipped_self: int  # training rows skipped because they equal the query


class DemoSelector:
    def __init__(self, pool: Sequence[Example], spec: DemonstrationsSpec, labels: Sequence[str],
                 words: dict[str, str], fields: Sequence[str], sha256: str = ""):
        self.pool = [e for e in pool if e.gold is not None]
        self.sha256 = sha256  # of the training data, for run.json
        self.spec = spec
        self.labels = list(labels)
        self.words = words  # label → the word that answers it in a demonstration
        self.fields = list(fields)
        self.count = spec.per_class * len(self.labels) if spec.per_class else spec.count
        rng = random.Random(spec.seed)
        if spec.select == "random":
            self.order = rng.sample(range(len(self.pool)), len(self.pool))
        elif spec.select == "balanced":
            by_label = {label: [i for i, e in enumerate(self.pool) if e.gold == label] for label in self.labels}
            for rows in by_label.values():
                rng.shuffle(rows)
            self.by_label = by_label
        elif spec.select == "similar":
            self.texts = [self.key_text(e) for e in self.pool]
            if spec.similarity == "minilm":
                from ..models.sentences import minilm

                self.index = Embedded(self.texts, minilm())
            elif spec.similarity == "tfidf":
                self.index = TfIdf(self.texts)
        self.order = getattr(self, "order", list(range(len(self.pool))))

    @property
    def needs_model(self) -> bool:
        """Nearness measured by the scored model: `use_encoder` must be called before `select`."""
        return self.spec.select == "similar" and self.spec.similarity == "model"

    def use_encoder(self, encoder) -> None:
        """Measure nearness with this `models.sentences.SentenceEncoder` (the scored model's)."""
        self.index = Embedded(self.texts, encoder)

    @property
    def fixed(self) -> bool:
        """The same demonstrations for every query (so their prefix can be computed once)."""
        return self.spec.select != "similar"

    def key(self, fields) -> tuple:
        return tuple(str(fields.get(f, "")).strip() for f in self.fields)

    def key_text(self, example: Example) -> str:
        return " ".join(str(example.fields.get(f, "")) for f in self.fields)

    def select(self, query: Example) -> Selection:
        if self.count == 0:
            return Selection([], 0)
        own = self.key(query.fields)
        if self.spec.select == "balanced":
            chosen, skipped = self._balanced(own)
        else:
            candidates = self.order if self.spec.select != "similar" else self._index().nearest(self.key_text(query))
            chosen, skipped = [], 0
            for i in candidates:
                if len(chosen) == self.count:
                    break
                if self.key(self.pool[i].fields) == own:
                    skipped += 1
                    continue
                chosen.append(i)
            if self.spec.select == "similar":
                chosen.reverse()  # most similar last, next to the query
        if self.spec.order is not None:  # the same rows in another order, the same for every query
            random.Random(self.spec.order).shuffle(chosen)
        demos = [Demo(fields=self.pool[i].fields, label=self.pool[i].gold, word=self.words[self.pool[i].gold])
                 for i in chosen]
        return Selection(demos, skipped)

    def _index(self):
        if not hasattr(self, "index"):
            raise RunError("similarity: model needs the model loaded before demonstrations are chosen "
                           "(internal: use_encoder was not called)")
        return self.index

    def _balanced(self, own: tuple) -> tuple[list[int], int]:
        quotas = {label: 0 for label in self.labels}
        for k in range(self.count):
            quotas[self.labels[k % len(self.labels)]] += 1
        picked: dict[str, list[int]] = {}
        skipped = 0
        for label, quota in quotas.items():
            rows = []
            for i in self.by_label[label]:
                if len(rows) == quota:
                    break
                if self.key(self.pool[i].fields) == own:
                    skipped += 1
                    continue
                rows.append(i)
            picked[label] = rows
        # interleave: label 1, label 2, …, label 1, label 2, …
        chosen = [picked[label][r] for r in range(max(quotas.values()))
                  for label in self.labels if r < len(picked[label])]
        return chosen, skipped


class TfIdf:
    """Cosine similarity of TF-IDF vectors over lower-cased word tokens."""

    def __init__(self, texts: Sequence[str]):
        docs = [Counter(WORD.findall(t.lower())) for t in texts]
        df = Counter(w for d in docs for w in d)
        self.idf = {w: math.log((1 + len(docs)) / (1 + n)) + 1 for w, n in df.items()}
        self.size = len(docs)
        self.postings: dict[str, list[tuple[int, float]]] = {}
        for i, doc in enumerate(docs):
            for w, v in self._vector(doc).items():
                self.postings.setdefault(w, []).append((i, v))

    def _vector(self, counts: Counter) -> dict[str, float]:
        vec = {w: c * self.idf.get(w, 0.0) for w, c in counts.items()}
        norm = math.sqrt(sum(v * v for v in vec.values())) or 1.0
        return {w: v / norm for w, v in vec.items()}

    def nearest(self, text: str) -> list[int]:
        """Indices of all documents, most similar first (ties keep file order)."""
        scores = [0.0] * self.size
        for w, q in self._vector(Counter(WORD.findall(text.lower()))).items():
            for i, v in self.postings.get(w, ()):
                scores[i] += q * v
        return sorted(range(self.size), key=lambda i: (-scores[i], i))


class Embedded:
    """Cosine similarity of sentence embeddings (unit vectors: a dot product)."""

    def __init__(self, texts: Sequence[str], encoder):
        from ..models.sentences import pool_embeddings

        self.encoder = encoder
        self.vectors = pool_embeddings(texts, encoder)

    def nearest(self, text: str) -> list[int]:
        """Indices of all documents, most similar first (ties keep file order)."""
        scores = (self.vectors @ self.encoder.embed([text])[0]).tolist()
        return sorted(range(len(scores)), key=lambda i: (-round(scores[i], 6), i))
