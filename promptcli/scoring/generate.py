"""Batched generation of reasoning (chain-of-thought, self-consistency) on a KV cache.

Each example's prompt is prefilled once; for N samples its cache is repeated N times, so the
prompt is never recomputed per sample. Rows are padded on the right with explicit position
ids (the same scheme as scoring), which also lets a prompt prefix shared by all examples be
reused. Sampling filters apply in the order top-k → top-p → temperature. Every (example,
sample) has its own seeded random generator, so outputs do not depend on batching or on a
run being resumed.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from ..models.weights import LoadedModel
from ..prompt.encode import Encoded
from ..spec.template import DecodingSpec
from .causal import CausalLMScorer, returned_cache


@dataclass(frozen=True)
class Decoding:
    strategy: str = "greedy"
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    max_new_tokens: int = 128
    stop: tuple[str, ...] = ()
    samples: int = 1
    seed: int = 0

    @classmethod
    def from_spec(cls, spec: DecodingSpec, samples: int, seed: int, **overrides) -> Decoding:
        values = {**spec.model_dump(), "stop": tuple(spec.stop), "samples": samples, "seed": seed}
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


def sample_seed(seed: int, index: int, sample: int) -> int:
    return ((seed * 1_000_003 + index) * 1_009 + sample) % (2**63 - 1)


class Generator:
    def __init__(self, loaded: LoadedModel, scorer: CausalLMScorer, decoding: Decoding):
        self.model = loaded.model
        self.tokenizer = loaded.tokenizer
        self.scorer = scorer  # prefill (with the shared prefix) and the work counters
        self.device = loaded.device
        self.decoding = decoding
        eos = getattr(self.model.generation_config, "eos_token_id", None)
        eos = set(eos if isinstance(eos, list) else [eos]) | {self.tokenizer.eos_token_id}
        self.eos = {e for e in eos if e is not None}

    def generate(self, batch: Sequence[Encoded]) -> list[list[str]]:
        """For each example, `samples` generated texts (cut at the first stop string)."""
        d = self.decoding
        n = d.samples
        log_probs, cache, mask, lengths = self.scorer.prefill([e.context for e in batch], use_cache=True)
        if n > 1:  # the samples share the prompt's cache: repeated, never recomputed
            log_probs, mask, lengths = (t.repeat_interleave(n, 0) for t in (log_probs, mask, lengths))
            cache.batch_repeat_interleave(n)
        rows = len(batch) * n
        generators = [torch.Generator().manual_seed(sample_seed(d.seed, e.index, s)) for e in batch for s in range(n)]
        tokens: list[list[int]] = [[] for _ in range(rows)]
        texts = [""] * rows
        done = [False] * rows
        for step in range(d.max_new_tokens):
            chosen = self.choose(log_probs, generators, done)
            for r, token in enumerate(chosen):
                if done[r]:
                    continue
                if token in self.eos:
                    done[r] = True
                    continue
                tokens[r].append(token)
                texts[r] = self.tokenizer.decode(tokens[r], skip_special_tokens=True)
                if any(s in texts[r] for s in d.stop):
                    done[r] = True
            if all(done) or step == d.max_new_tokens - 1:
                break
            active = torch.tensor([[0 if done[r] else 1] for r in range(rows)], device=self.device)
            feed = torch.tensor([[tokens[r][-1] if not done[r] else self.scorer.pad_id] for r in range(rows)],
                                device=self.device)
            mask = torch.cat([mask, active], dim=1)
            self.scorer.calls += 1
            self.scorer.sequences += rows
            self.scorer.positions += int(active.sum())
            out = self.model(input_ids=feed, attention_mask=mask, position_ids=(lengths + step)[:, None],
                             use_cache=True, **{self.scorer.cache_argument: cache})
            cache = returned_cache(out)
            log_probs = out.logits[:, -1].float().log_softmax(-1)
        cut = [self._cut(t) for t in texts]
        return [cut[i * n:(i + 1) * n] for i in range(len(batch))]

    def _cut(self, text: str) -> str:
        ends = [text.find(s) for s in self.decoding.stop if s in text]
        return text[:min(ends)] if ends else text

    def choose(self, log_probs: torch.Tensor, generators: list[torch.Generator], done: list[bool]) -> list[int]:
        """Next token per row: arg-max, or a draw from the filtered distribution. Each row's draw uses
        one uniform from its own generator (inverse CDF), so a row's sample does not depend on its batch
        and the whole batch samples in one vectorised step (per-row `multinomial` over the vocabulary
        cost more than the model on small models)."""
        if self.decoding.strategy == "greedy":
            return log_probs.argmax(-1).tolist()
        probs, ids = candidates(log_probs, self.decoding)
        uniforms = torch.stack([torch.rand((), generator=g, dtype=torch.float64) for g in generators])
        cdf = probs.double().cumsum(-1)
        cdf = cdf / cdf[:, -1:]
        # right=True: the first candidate whose cumulative mass exceeds u, so a zero-mass one is never drawn
        picked = torch.searchsorted(cdf, uniforms.to(cdf.device)[:, None], right=True).clamp_max(probs.shape[1] - 1)
        chosen = ids.gather(1, picked).squeeze(1).tolist()
        return [0 if done[r] else chosen[r] for r in range(len(chosen))]


def candidates(log_probs: torch.Tensor, d: Decoding) -> tuple[torch.Tensor, torch.Tensor]:
    """The tokens that may be sampled and their probabilities, most likely first, both (R, K): the
    top-k tokens, then the smallest set of those reaching top-p of their (renormalised) mass, then
    the temperature. Filtering the k candidates instead of the whole vocabulary keeps it cheap."""
    k = d.top_k if d.top_k is not None and d.top_k < log_probs.shape[-1] else log_probs.shape[-1]
    scores, ids = log_probs.topk(k, dim=-1)
    if d.top_p is not None and d.top_p < 1.0:
        probs = scores.softmax(-1)
        outside = (probs.cumsum(-1) - probs) >= d.top_p  # the mass before a token already reaches top_p
        scores = scores.masked_fill(outside, float("-inf"))
    return (scores / d.temperature).softmax(-1), ids


def sampling_probs(log_probs: torch.Tensor, d: Decoding) -> torch.Tensor:
    """`candidates` as a full (R, V) distribution (zero outside the candidates)."""
    probs, ids = candidates(log_probs, d)
    return torch.zeros_like(log_probs).scatter(-1, ids, probs)
