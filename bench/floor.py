"""The raw-forward floor: promptcli's own token ids through the bare model, nothing else.

The ids come from `promptcli.runner.prepare` (so they are identical to what promptcli
scores) and are cut into the same batches as promptcli's length-sorted plan. Every
tensor is built before the clock starts; the clock sees only the model calls:

- masked LM: the encoder over each batch, then the LM head at the mask positions only
  (the same work promptcli's scorer asks of the model; `naive=True` runs the whole model
  and its full (B, T, V) logits instead, `model(input_ids, attention_mask)` as written);
- causal LM: one prefill of the contexts (logits at each row's last position only, the KV
  cache kept when some continuation has ≥ 2 tokens), then the continuation tokens fed
  against that cache, grouped by length in chunks of the batch size (`naive=True`: context
  and each continuation as one full sequence with full logits, lm-evaluation-harness's way).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch

# The module after the encoder that maps hidden states to vocabulary logits.
MLM_HEADS = {"bert": "cls", "roberta": "lm_head", "xlm-roberta": "lm_head", "camembert": "lm_head"}


def pad(rows: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(R, T) ids and mask, right-padded to the longest row."""
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, :len(row)] = torch.tensor(row, dtype=torch.long)
        mask[i, :len(row)] = 1
    return ids, mask


def chunks(items: Sequence, size: int) -> list:
    return [items[i:i + size] for i in range(0, len(items), size)]


@dataclass
class Floor:
    """Prebuilt inputs and a `step()` that pushes them all through the model once."""

    step: Callable[[], None]
    positions: int  # real (non-padding) token positions per step
    sequences: int  # rows fed to the model per step


def mlm_floor(model: Any, tokenizer: Any, batches: list[list[Any]], batch_size: int, naive: bool) -> Floor:
    mask_id = tokenizer.mask_token_id
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    head_name = MLM_HEADS.get(model.config.model_type)
    head = getattr(model, head_name) if head_name and not naive else None
    calls = []
    positions = sequences = 0
    for batch in batches:
        # one input per (example, word length): the slot holds that many masks
        inputs = [(e, n) for e in batch for n in sorted({len(w) for w in e.words.ids})]
        inputs.sort(key=lambda en: -(len(en[0].context) + en[1] + len(en[0].suffix)))
        for group in chunks(inputs, batch_size):
            ids, mask = pad([e.context + (mask_id,) * n + e.suffix for e, n in group], pad_id)
            rows = torch.tensor([r for r, (e, n) in enumerate(group) for _ in range(n)])
            cols = torch.tensor([len(e.context) + i for e, n in group for i in range(n)])
            calls.append((ids, mask, rows, cols))
            positions += int(mask.sum())
            sequences += len(group)

    def step() -> None:
        for ids, mask, rows, cols in calls:
            if head is None:
                model(input_ids=ids, attention_mask=mask)
            else:
                hidden = model.base_model(input_ids=ids, attention_mask=mask).last_hidden_state
                head(hidden[rows, cols])

    return Floor(step, positions, sequences)


def causal_floor(model: Any, tokenizer: Any, batches: list[list[Any]], batch_size: int, naive: bool) -> Floor:
    from transformers import DynamicCache

    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
    plan = []
    positions = sequences = 0
    for batch in batches:
        conts = [[w + e.suffix for w in e.words.ids] for e in batch]
        if naive:  # each distinct context + continuation[:-1] as one full sequence (as lm-eval groups them)
            seqs = sorted({e.context + c[:-1] for e, row in zip(batch, conts) for c in row}, key=len,
                          reverse=True)
            for group in chunks(seqs, batch_size):
                ids, mask = pad(group, pad_id)
                plan.append(("full", ids, mask))
                positions += int(mask.sum())
                sequences += len(group)
            continue
        ids, mask = pad([e.context for e in batch], pad_id)
        lengths = mask.sum(1)
        prefill = (ids, mask, torch.arange(ids.shape[1]).expand_as(ids), (lengths - 1)[:, None])
        positions += int(lengths.sum())
        sequences += len(batch)
        multi = sorted(((b, w) for b, row in enumerate(conts) for w, c in enumerate(row) if len(c) > 1),
                       key=lambda bw: len(conts[bw[0]][bw[1]]))
        extends = []
        for group in chunks(multi, batch_size):
            rows = torch.tensor([b for b, _ in group])
            feed, feed_mask = pad([conts[b][w][:-1] for b, w in group], pad_id)
            where = lengths[rows, None] + torch.arange(feed.shape[1])[None]
            extends.append((rows, feed, torch.cat([mask[rows], feed_mask], dim=1), where))
            positions += int(feed_mask.sum())
            sequences += len(group)
        plan.append(("cached", prefill, extends))

    def step() -> None:
        for item in plan:
            if item[0] == "full":
                model(input_ids=item[1], attention_mask=item[2])
                continue
            (ids, mask, where, last), extends = item[1], item[2]
            out = model(input_ids=ids, attention_mask=mask, position_ids=where, use_cache=bool(extends),
                        logits_to_keep=last)
            for rows, feed, attention, feed_where in extends:
                sub = DynamicCache(ddp_cache_data=[(layer.keys[rows], layer.values[rows])
                                                   for layer in out.past_key_values.layers], config=model.config)
                model(input_ids=feed, attention_mask=attention, position_ids=feed_where, past_key_values=sub,
                      use_cache=True)

    return Floor(step, positions, sequences)


def measure_floor(job: dict) -> tuple[Callable[[], float], Callable[[], dict]]:
    """Load the bare model and build promptcli's batches; `once()` times one `step()`."""
    from transformers import AutoModelForCausalLM, AutoModelForMaskedLM

    from promptcli.evaluate import plan_batches
    from promptcli.runner import RunConfig, prepare

    config = RunConfig(template=job["template"], data=job["data"], model=job["model"], device="cpu",
                       dtype="float32", batch_size=job["batch_size"], limit=job["rows"])
    prepared = prepare(config)
    kind = prepared.info.kind
    auto = AutoModelForMaskedLM if kind == "mlm" else AutoModelForCausalLM
    model = auto.from_pretrained(job["model"], dtype=torch.float32).eval()
    batches = plan_batches(prepared.encoded, job["batch_size"])
    build = mlm_floor if kind == "mlm" else causal_floor
    floor = build(model, prepared.info.tokenizer, batches, job["batch_size"], job["method"] == "raw-naive")

    def once() -> float:
        start = time.perf_counter()
        with torch.inference_mode():
            floor.step()
        return time.perf_counter() - start

    def finish() -> dict:
        return {"examples": len(prepared.encoded), "work": {"positions": floor.positions, "sequences": floor.sequences}}

    return once, finish
