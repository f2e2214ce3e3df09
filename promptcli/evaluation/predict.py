"""A batch of encoded examples → predictions: by scoring the slot, or by generating reasoning.

The scoring path holds everything between the scorer and a prediction: the score cache (a
batch whose every row is cached never touches the model, which is loaded only when needed)
and the label distribution (PMI, verbalizer, calibration: `scoring/labels.py`).
"""
from __future__ import annotations

import re
from typing import Callable, Sequence

import torch

from ..models.weights import LoadedModel, resolve_device, resolve_dtype
from ..prompt.encode import Encoded
from ..scoring import Scorer, make_scorer
from ..scoring.answers import AnswerMap, extract, vote
from ..scoring.base import chunks
from ..scoring.generate import Decoding, Generator
from ..scoring.labels import LabelDistribution
from ..store.scores import ScoreCache, cache_key
from .calibration import calibration_inputs, warn_if_extreme
from .inputs import Prepared
from .outputs import Prediction


def rounded(labels: Sequence[str], probs: Sequence[float]) -> dict[str, float]:
    """Six significant digits: readable, and small probabilities keep their size (log-safe)."""
    return {label: float(f"{float(p):.6g}") for label, p in zip(labels, probs)}


class ScorePredictor:
    def __init__(self, prepared: Prepared, load: Callable[[], LoadedModel], cache: ScoreCache | None = None):
        self.prepared, self.load, self.cache = prepared, load, cache
        self.scoring = prepared.scoring
        self.verbalizer = prepared.verbalizer
        self._scorer: Scorer | None = None
        self._detach = None
        self.shared_prefix = 0
        # everything besides the input and the label tokens that decides a cached word score: the precision
        # and device type as resolved ("auto" is float32 on a CPU but bfloat16 on a GPU)
        device = resolve_device(prepared.config.device)
        self.key_options = {"scorer": prepared.info.kind, "multi_token": self.scoring.multi_token,
                            "normalize": self.scoring.continuation_normalize, "device": device.type,
                            "dtype": str(resolve_dtype(prepared.config.dtype, device)).removeprefix("torch."),
                            "max_length": prepared.info.max_length,
                            "soft_prompt": prepared.soft.sha256() if prepared.soft is not None else None}
        self.fingerprint = prepared.info.fingerprint() if cache is not None else ""
        premise, content_free = calibration_inputs(prepared)
        self.labels = LabelDistribution.fit(self.verbalizer, self.scoring, self.word_scores, premise, content_free)
        if self.labels.p_cf is not None:
            warn_if_extreme(self.verbalizer.labels, self.labels.p_cf.tolist())

    @property
    def scorer(self) -> Scorer:
        """Created (and the model loaded) at the first batch the cache can't answer."""
        if self._scorer is None:
            loaded = self.load()
            if self.prepared.soft is not None:  # virtual token ids read the soft prompt while this run lasts
                attachment = self.prepared.soft.attached(loaded.model)
                attachment.__enter__()
                self._detach = attachment
            self._scorer = make_scorer(loaded, self.scoring)
            if loaded.kind == "causal":
                # the prefix every full prompt shares (instructions, fixed demonstrations); prompts
                # that lost demonstrations to the length limit don't share it and run whole
                encoded = self.prepared.encoded
                full = [e.context for e in encoded if not e.dropped] or [e.context for e in encoded]
                if full:
                    with torch.inference_mode():
                        self.shared_prefix = self._scorer.share_prefix(full)
        return self._scorer

    @property
    def forward_passes(self) -> int:
        """Rows fed to the model so far (0 while the cache has answered everything)."""
        return self._scorer.sequences if self._scorer is not None else 0

    def close(self) -> None:
        if self._detach is not None:
            self._detach.__exit__(None, None, None)
            self._detach = None

    def word_scores(self, batch: Sequence[Encoded]) -> torch.Tensor:
        """(B, W) raw word scores, from the cache when every row is there (so numbers never depend on
        which rows happened to be cached), else computed for the whole batch and cached."""
        if self.cache is None:
            return self.scorer.word_scores(batch)
        keys = [cache_key(self.fingerprint, [list(e.context), list(e.suffix)], [list(i) for i in e.words.ids],
                          self.key_options) for e in batch]
        found = self.cache.get_many(keys)
        if len(found) == len(keys):
            return torch.tensor([found[k] for k in keys], dtype=torch.float32)
        scores = self.scorer.word_scores(batch)
        self.cache.put_many({k: row for k, row in zip(keys, scores.tolist())})
        return scores

    def label_log_probs(self, batch: Sequence[Encoded]) -> torch.Tensor:
        """(B, L) log-probabilities over the verbalizer's labels only."""
        return self.labels(self.word_scores(batch))

    def __call__(self, batch: list[Encoded]) -> list[Prediction]:
        labels = self.verbalizer.labels
        gold = self.prepared.gold
        probs = self.label_log_probs(batch).exp().tolist()
        return [Prediction(index=e.index, gold=gold[e.index], pred=labels[max(range(len(row)), key=row.__getitem__)],
                           probs=rounded(labels, row), truncated=e.truncated) for e, row in zip(batch, probs)]

    def record(self) -> dict:
        """What the calibration terms were, for run.json."""
        out = {}
        if self.labels.p_cf is not None:
            out["contextual"] = rounded(self.verbalizer.labels, self.labels.p_cf.tolist())
        if self.labels.premise is not None:
            out["pmi_premise_word_scores"] = dict(zip(self.verbalizer.words, self.labels.premise.tolist()))
        return out


class GenerativePredictor:
    """CoT / self-consistency: generate reasoning, then read the answer by pattern or by trigger scoring."""

    def __init__(self, prepared: Prepared, scoring: ScorePredictor):
        self.prepared, self.scoring = prepared, scoring
        spec, config = prepared.template.spec, prepared.config
        samples = config.samples or getattr(spec, "samples", 1)
        decoding = Decoding.from_spec(spec.decoding, samples, config.seed or 0, strategy=config.strategy,
                                      temperature=config.temperature, top_k=config.top_k, top_p=config.top_p,
                                      max_new_tokens=config.max_new_tokens)
        self.generator = Generator(scoring.load(), scoring.scorer, decoding)
        self.pattern = re.compile(spec.answer_pattern) if spec.answer_pattern else None
        self.answers = AnswerMap(prepared.verbalizer)
        self.labels = prepared.verbalizer.labels
        self.self_consistency = spec.kind == "self-consistency"

    def __call__(self, batch: list[Encoded]) -> list[Prediction]:
        reasoning = self.generator.generate(batch)
        if self.pattern is not None:
            return [self._by_pattern(e, texts) for e, texts in zip(batch, reasoning)]
        return self._by_trigger(batch, reasoning)

    def _prediction(self, enc: Encoded, pred: str | None, probs: dict[str, float], texts: list[str],
                    answers: list, agreement: float, tie: bool) -> Prediction:
        sc = self.self_consistency
        return Prediction(index=enc.index, gold=self.prepared.gold[enc.index], pred=pred, probs=probs,
                          truncated=enc.truncated, abstained=pred is None, reasoning=texts if sc else texts[0],
                          answers=answers if sc else None, agreement=round(agreement, 6) if sc else None,
                          tie=tie if sc else None)

    def _by_pattern(self, enc: Encoded, texts: list[str]) -> Prediction:
        mapped = [self.answers.label(extract(t, self.pattern)) for t in texts]
        result = vote(mapped, self.labels)
        return self._prediction(enc, result.pred, rounded(self.labels, result.shares.values()), texts, mapped,
                                result.agreement, result.tie)

    def _by_trigger(self, batch: list[Encoded], reasoning: list[list[str]]) -> list[Prediction]:
        """Score the label words after `prompt + reasoning + trigger` (the same causal scoring as `run`)."""
        prepared = self.prepared
        second = [prepared.encoder.split(prepared.renderer.after_reasoning(e.text, text, prepared.fields[e.index]))
                  for e, texts in zip(batch, reasoning) for text in texts]
        dists = [self.scoring.label_log_probs(group).exp()
                 for group in chunks(second, self.scoring.scoring.batch_size)]
        probs = torch.cat(dists).view(len(batch), -1, len(self.labels))  # (B, N, L)
        out = []
        for e, texts, per_sample in zip(batch, reasoning, probs):
            mean = per_sample.mean(0)
            pred = self.labels[int(mean.argmax())]  # the first of equal maxima, like the vote
            own = [self.labels[int(p.argmax())] for p in per_sample]
            agreement = sum(label == pred for label in own) / len(own)
            tie = int((mean == mean.max()).sum()) > 1
            out.append(self._prediction(e, pred, rounded(self.labels, mean.tolist()), texts, own, agreement, tie))
        return out
