"""The generation floor for self-consistency (scenario e): a hand-written sampling loop.

On promptcli's own token ids and batches (as `floor.py`): one prefill per batch of prompts
(after the shared prefix, if any), the KV cache repeated N times (`batch_repeat_interleave`,
as `transformers.generate` does for `num_return_sequences`), then one decode step per new
token for all B·N rows at once, with the same decoding as the template (top-k → top-p →
temperature, renormalised after each filter) and the same stop rules: an end-of-sequence
token ends a row without being kept, a stop string ends it after the token that completes
it; finished rows are fed padding, masked out; the loop ends when every row is done or after
`max_new_tokens`. The filters run on the top-k candidates only, as promptcli's do. What it
leaves out is what a floor should: one batched `torch.multinomial` draws every row's token
(one generator per run; promptcli gives every path its own, so a path does not depend on its
batch), and stop strings are checked on each row's decoded new tokens as they come (not by
decoding the whole text again). Building the inputs is outside the clock; the answer
patterns and the vote are not run (they are promptcli's).
"""
from __future__ import annotations

import time
from typing import Any, Callable

import torch

from promptcli.scoring.causal import cache_argument, returned_cache

from .floor import Floor, Prefill, common_prefix, prefix_cache, run_config


def candidates(logits: torch.Tensor, decoding: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """(R, k) probabilities and token ids to draw from: the top-k logits, then the smallest set of
    those reaching top-p of their renormalised mass, then the temperature."""
    k = min(decoding.top_k or logits.shape[-1], logits.shape[-1])
    values, ids = logits.float().topk(k, dim=-1)  # sorted, largest first
    if decoding.top_p is not None and decoding.top_p < 1.0:
        probs = values.softmax(-1)
        values = values.masked_fill(probs.cumsum(-1) - probs >= decoding.top_p, float("-inf"))
    return (values / decoding.temperature).softmax(-1), ids


def choose(logits: torch.Tensor, decoding: Any, generator: torch.Generator) -> torch.Tensor:
    """(R,) next tokens from (R, V) logits: arg-max, or one batched draw from `candidates`."""
    if decoding.strategy == "greedy":
        return logits.argmax(-1)
    probs, ids = candidates(logits, decoding)
    return ids.gather(1, torch.multinomial(probs, 1, generator=generator))[:, 0]


def generate_floor(model: Any, tokenizer: Any, batches: list[list[Any]], decoding: Any,
                   prefix: tuple[int, ...] = ()) -> Floor:
    """`step(keep)` generates N continuations for every prompt; `keep` (index → token lists) is for tests."""
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
    eos = getattr(model.generation_config, "eos_token_id", None)
    eos = {e for e in (eos if isinstance(eos, list) else [eos]) + [tokenizer.eos_token_id] if e is not None}
    eos_ids = torch.tensor(sorted(eos))
    n, stops = decoding.samples, tuple(decoding.stop)
    window = max((len(s) for s in stops), default=0) + 16  # the text a new token can complete a stop string in
    plan = [(Prefill.build([e.context for e in batch], prefix, pad_id), [e.index for e in batch]) for batch in batches]
    counts = {"positions": len(prefix), "sequences": int(bool(prefix))}
    for prefill, _ in plan:
        counts["positions"] += int(prefill.lengths.sum()) - prefill.shared * prefill.ids.shape[0]
        counts["sequences"] += prefill.ids.shape[0]

    def one_batch(prefill: Prefill, kv: list, generator: torch.Generator) -> list[list[int]]:
        out = prefill.run(model, kv, use_cache=True)
        logits, cache = out.logits[:, -1], returned_cache(out)  # (B, V)
        mask, lengths = prefill.mask, prefill.lengths
        if n > 1:  # the N paths share the prompt's cache: repeated, never recomputed
            logits, mask, lengths = (t.repeat_interleave(n, 0) for t in (logits, mask, lengths))
            cache.batch_repeat_interleave(n)
        rows = logits.shape[0]
        done = torch.zeros(rows, dtype=torch.bool)
        tokens = torch.full((rows, decoding.max_new_tokens), -1)
        tails = [""] * rows
        for step in range(decoding.max_new_tokens):
            chosen = choose(logits, decoding, generator)
            ended = torch.isin(chosen, eos_ids) & ~done
            kept = ~done & ~ended
            tokens[kept, step] = chosen[kept]
            done |= ended
            if stops:
                for r in kept.nonzero()[:, 0].tolist():
                    tails[r] = (tails[r] + tokenizer.decode([int(chosen[r])]))[-window:]
                    if any(s in tails[r] for s in stops):
                        done[r] = True
            if bool(done.all()) or step == decoding.max_new_tokens - 1:
                break
            active = (~done).long()[:, None]
            mask = torch.cat([mask, active], dim=1)
            feed = chosen.masked_fill(done, pad_id)[:, None]
            out = model(input_ids=feed, attention_mask=mask, position_ids=(lengths + step)[:, None],
                        **{cache_argument(model): cache}, use_cache=True)
            cache, logits = returned_cache(out), out.logits[:, -1]
        return [[t for t in row if t >= 0] for row in tokens.tolist()]

    def step(keep: dict | None = None) -> None:
        generator = torch.Generator().manual_seed(decoding.seed)  # each run draws the same tokens
        kv = prefix_cache(model, prefix) if any(p.shared for p, _ in plan) else []
        for prefill, indices in plan:
            paths = one_batch(prefill, kv, generator)
            if keep is not None:
                keep.update((i, paths[k * n:(k + 1) * n]) for k, i in enumerate(indices))

    return Floor(step, counts["positions"], counts["sequences"])


def measure_generate_floor(job: dict) -> tuple[Callable[[], float], Callable[[], dict]]:
    """Load the bare model and build promptcli's batches and decoding; `once()` times one `step()`."""
    from transformers import AutoModelForCausalLM

    from promptcli.evaluation.batches import plan_batches
    from promptcli.scoring.generate import Decoding
    from promptcli.evaluation.inputs import prepare

    prepared = prepare(run_config(job))
    spec = prepared.template.spec
    decoding = Decoding.from_spec(spec.decoding, spec.samples, 0)
    model = AutoModelForCausalLM.from_pretrained(job["model"], dtype=torch.float32).eval()
    batches = plan_batches(prepared.encoded, job["batch_size"])
    floor = generate_floor(model, prepared.info.tokenizer, batches, decoding, common_prefix(prepared.encoded))

    def once() -> float:
        start = time.perf_counter()
        with torch.inference_mode():
            floor.step()
        return time.perf_counter() - start

    return once, lambda: {"examples": len(prepared.encoded), "work": {"prefill_positions": floor.positions}}

