"""Prototype for the causal scorer (not used by promptcli): every continuation of an example
packed into ONE row fed against that example's own KV cache, with a 4D block mask.

promptcli's `CausalLMScorer.extend` feeds one row per (example, continuation) and copies the
example's cached context for each of them (`layer.keys[rows]`), so an example with 5
multi-token words has its context cache copied 5 times and attended 5 times. Packed, each
example is one row of Σ(L_k − 1) tokens: query j of word k sees the real context and the
tokens of word k up to j, nothing of the other words; position ids restart at the context
length for every word. The cache from the prefill is used as it is (no row copies).

    python bench/packed_prototype.py TEMPLATE DATA MODEL ROWS

prints the largest |Δ| between the two word-score tables and the scoring time of each.
"""
from __future__ import annotations

import statistics
import sys
import time

import torch

from promptcli.evaluate import plan_batches
from promptcli.models import load_model
from promptcli.runner import RunConfig, prepare
from promptcli.scoring import make_scorer
from promptcli.scoring.base import ScoringOptions, pad_right


def packed_word_scores(model, batch, pad_id: int = 0) -> torch.Tensor:
    cpu = torch.device("cpu")
    conts = [[w + e.suffix for w in e.words.ids] for e in batch]
    ids, mask = pad_right([e.context for e in batch], pad_id, cpu)
    lengths = mask.sum(1)
    B, T = ids.shape
    out = model(input_ids=ids, attention_mask=mask, position_ids=torch.arange(T).expand_as(ids), use_cache=True,
                logits_to_keep=(lengths - 1)[:, None])
    scores = out.logits[:, 0].float().log_softmax(-1).gather(1, torch.tensor([[c[0] for c in row] for row in conts]))
    owners = [[(k, j) for k, c in enumerate(row) for j in range(len(c) - 1)] for row in conts]  # fed (word, offset)
    F = max(len(o) for o in owners)
    if F == 0:
        return scores
    feed = torch.full((B, F), pad_id)
    where = torch.zeros((B, F), dtype=torch.long)
    allowed = torch.zeros((B, 1, F, T + F), dtype=torch.bool)  # (B, 1, query, cache + fed keys)
    for b, own in enumerate(owners):
        length = int(lengths[b])
        allowed[b, 0, :, :length] = True  # the real context (padding queries too, so no row is all-masked)
        for i, (k, j) in enumerate(own):
            feed[b, i] = conts[b][k][j]
            where[b, i] = length + j
            for i2, (k2, j2) in enumerate(own):
                allowed[b, 0, i, T + i2] = k2 == k and j2 <= j
    log_probs = model(input_ids=feed, attention_mask=allowed, position_ids=where, past_key_values=out.past_key_values,
                      use_cache=True).logits.float().log_softmax(-1)  # (B, F, V)
    for b, own in enumerate(owners):
        for i, (k, j) in enumerate(own):
            scores[b, k] += log_probs[b, i, conts[b][k][j + 1]]
    return scores


def main() -> None:
    template, data, model_path, rows = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    prepared = prepare(RunConfig(template=template, data=data, model=model_path, device="cpu", dtype="float32",
                                 limit=rows))
    loaded = load_model(prepared.info, device="cpu", dtype="float32")
    batches = plan_batches(prepared.encoded, 32)
    scorer = make_scorer(loaded, ScoringOptions(batch_size=32))
    with torch.inference_mode():
        worst = max(float((scorer.word_scores(b) - packed_word_scores(loaded.model, b)).abs().max()) for b in batches)
        print(f"max |Δ word score| packed vs promptcli: {worst:.2e}")
        times: dict[str, list[float]] = {"promptcli extend": [], "packed": []}
        for _ in range(3):  # alternate, so machine load hits both alike
            for name, fn in (("promptcli extend", scorer.word_scores),
                             ("packed", lambda b: packed_word_scores(loaded.model, b))):
                start = time.perf_counter()
                for batch in batches:
                    fn(batch)
                times[name].append(time.perf_counter() - start)
    for name, seconds in times.items():
        print(f"{name}: median {statistics.median(seconds):.3f} s  {[round(s, 3) for s in seconds]}")


if __name__ == "__main__":
    main()
