"""The raw-forward floor: promptcli's own token ids through the bare model, nothing else.

The ids come from `promptcli.evaluation.inputs.prepare` (so they are identical to what promptcli
scores) and are cut into the same batches as promptcli's length-sorted plan. Every
tensor is built before the clock starts; the clock sees only the model calls:

- masked LM: the encoder over each batch, then the LM head at the mask positions only
  (the same work promptcli's scorer asks of the model; `naive=True` runs the whole model
  and its full (B, T, V) logits instead, `model(input_ids, attention_mask)` as written);
- causal LM: when every prompt starts with the same ≥ 4 tokens (fixed demonstrations, as in
  scenario d), one forward of that prefix per run, its KV cache kept; then one prefill of each
  batch's contexts after the prefix against views of that cache expanded to the batch (no
  copies), with logits at each row's last position only and the KV cache kept when some
  continuation has ≥ 2 tokens; then the continuation tokens fed against row copies of that
  cache, grouped by length in chunks of the batch size (`naive=True`: context and each
  continuation as one full sequence with full logits, lm-evaluation-harness's way).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch

from promptcli.scoring.base import pad_right
from promptcli.scoring.causal import cache_argument, cache_of, returned_cache

CPU = torch.device("cpu")  # the floor's tensors are built before the clock starts

# The module after the encoder that maps hidden states to vocabulary logits.
MLM_HEADS = {"bert": "cls", "roberta": "lm_head", "xlm-roberta": "lm_head", "camembert": "lm_head"}


def chunks(items: Sequence, size: int) -> list:
    return [items[i:i + size] for i in range(0, len(items), size)]


@dataclass
class Floor:
    """Prebuilt inputs and a `step()` that pushes them all through the model once."""

    step: Callable[..., None]
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
            ids, mask = pad_right([e.context + (mask_id,) * n + e.suffix for e, n in group], pad_id, CPU)
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


def shared_prefix_length(contexts: Sequence[Sequence[int]], minimum: int = 4) -> int:
    """The token prefix every context shares (fixed demonstrations, instructions), leaving each
    context a token of its own; 0 when shorter than `minimum` (promptcli's rule, so both compute
    the same prefix once)."""
    first, length = contexts[0], min(len(c) for c in contexts) - 1
    for row in contexts[1:]:
        length = next((i for i in range(length) if row[i] != first[i]), length)
    return length if length >= minimum else 0


@dataclass
class Prefill:
    """One batch's contexts after the shared prefix: ids (B, T), the mask over prefix + own tokens,
    position ids, each row's last own position (B, 1), and full lengths."""

    ids: torch.Tensor
    mask: torch.Tensor
    where: torch.Tensor
    last: torch.Tensor
    lengths: torch.Tensor
    shared: int

    @classmethod
    def build(cls, contexts: Sequence[Sequence[int]], prefix: tuple[int, ...], pad_id: int) -> Prefill:
        shared = len(prefix) if prefix and all(tuple(c[:len(prefix)]) == prefix for c in contexts) else 0
        ids, own = pad_right([c[shared:] for c in contexts], pad_id, CPU)
        mask = torch.cat([torch.ones((len(contexts), shared), dtype=own.dtype), own], dim=1)
        return cls(ids, mask, shared + torch.arange(ids.shape[1]).expand_as(ids), (own.sum(1) - 1)[:, None],
                   own.sum(1) + shared, shared)

    def run(self, model: Any, prefix_kv: list, use_cache: bool):
        """The model call: logits at each row's last position only, against the expanded prefix cache."""
        cache = None
        if self.shared:  # views of the one prefix cache, no copies
            batch = self.ids.shape[0]
            cache = cache_of([(k.expand(batch, -1, -1, -1), v.expand(batch, -1, -1, -1)) for k, v in prefix_kv],
                             model.config)
        return model(input_ids=self.ids, attention_mask=self.mask, position_ids=self.where,
                     use_cache=use_cache or bool(self.shared), logits_to_keep=self.last, **{cache_argument(model): cache})


def prefix_cache(model: Any, prefix: tuple[int, ...]) -> list:
    """(keys, values) per layer of the shared prefix: computed once per run."""
    if not prefix:
        return []
    out = model(input_ids=torch.tensor([prefix]), position_ids=torch.arange(len(prefix))[None], use_cache=True,
                logits_to_keep=1)
    return [(layer.keys, layer.values) for layer in returned_cache(out).layers]


def causal_floor(model: Any, tokenizer: Any, batches: list[list[Any]], batch_size: int, naive: bool,
                 prefix: tuple[int, ...] = ()) -> Floor:
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
    plan = []
    positions, sequences = len(prefix), int(bool(prefix))
    for batch in batches:
        conts = [[w + e.suffix for w in e.words.ids] for e in batch]
        if naive:  # each distinct context + continuation[:-1] as one full sequence (as lm-eval groups them)
            seqs = sorted({e.context + c[:-1] for e, row in zip(batch, conts) for c in row}, key=len,
                          reverse=True)
            for group in chunks(seqs, batch_size):
                ids, mask = pad_right(group, pad_id, CPU)
                plan.append(("full", ids, mask))
                positions += int(mask.sum())
                sequences += len(group)
            continue
        prefill = Prefill.build([e.context for e in batch], prefix, pad_id)
        positions += int(prefill.lengths.sum()) - prefill.shared * len(batch)
        sequences += len(batch)
        multi = sorted(((b, w) for b, row in enumerate(conts) for w, c in enumerate(row) if len(c) > 1),
                       key=lambda bw: len(conts[bw[0]][bw[1]]))
        extends = []
        for group in chunks(multi, batch_size):
            rows = torch.tensor([b for b, _ in group])
            feed, feed_mask = pad_right([conts[b][w][:-1] for b, w in group], pad_id, CPU)
            where = prefill.lengths[rows, None] + torch.arange(feed.shape[1])[None]
            extends.append((rows, feed, torch.cat([prefill.mask[rows], feed_mask], dim=1), where, group))
            positions += int(feed_mask.sum())
            sequences += len(group)
        plan.append(("cached", prefill, extends, [e.index for e in batch], conts))

    def step(keep: dict | None = None) -> None:
        """One pass over every batch; `keep` (index → word scores) is for the tests, never timed."""
        kv = prefix_cache(model, prefix) if any(item[0] == "cached" and item[1].shared for item in plan) else []
        for item in plan:
            if item[0] == "full":
                model(input_ids=item[1], attention_mask=item[2])
                continue
            prefill, extends, indices, conts = item[1:]
            out = prefill.run(model, kv, use_cache=bool(extends))
            scores = _first_scores(out.logits[:, 0], conts) if keep is not None else None
            for rows, feed, attention, feed_where, group in extends:
                sub = cache_of([(layer.keys[rows], layer.values[rows]) for layer in returned_cache(out).layers],
                               model.config)
                logits = model(input_ids=feed, attention_mask=attention, position_ids=feed_where,
                               **{cache_argument(model): sub}, use_cache=True).logits
                if keep is not None:
                    log_probs = logits.float().log_softmax(-1)
                    for r, (b, w) in enumerate(group):
                        tail = conts[b][w][1:]
                        scores[b, w] += log_probs[r, torch.arange(len(tail)), torch.tensor(tail)].sum()
            if keep is not None:
                keep.update(zip(indices, scores.tolist()))

    return Floor(step, positions, sequences)


def _first_scores(last_logits: torch.Tensor, conts: list[list[tuple[int, ...]]]) -> torch.Tensor:
    """(B, W) log-probs of each continuation's first token, from the context's last position."""
    firsts = torch.tensor([[c[0] for c in row] for row in conts])
    return last_logits.float().log_softmax(-1).gather(1, firsts)


def measure_floor(job: dict) -> tuple[Callable[[], float], Callable[[], dict]]:
    """Load the bare model and build promptcli's batches; `once()` times one `step()`."""
    from transformers import AutoModelForCausalLM, AutoModelForMaskedLM

    from promptcli.evaluation.batches import plan_batches
    from promptcli.evaluation.inputs import prepare

    prepared = prepare(run_config(job))
    kind = prepared.info.kind
    auto = AutoModelForMaskedLM if kind == "mlm" else AutoModelForCausalLM
    model = auto.from_pretrained(job["model"], dtype=torch.float32).eval()
    batches = plan_batches(prepared.encoded, job["batch_size"])
    naive = job["method"] == "raw-naive"
    if kind == "mlm":
        floor = mlm_floor(model, prepared.info.tokenizer, batches, job["batch_size"], naive)
    else:
        floor = causal_floor(model, prepared.info.tokenizer, batches, job["batch_size"], naive,
                             () if naive else common_prefix(prepared.encoded))

    def once() -> float:
        start = time.perf_counter()
        with torch.inference_mode():
            floor.step()
        return time.perf_counter() - start

    def finish() -> dict:
        return {"examples": len(prepared.encoded), "work": {"positions": floor.positions, "sequences": floor.sequences}}

    return once, finish


def run_config(job: dict, limit: int | None = None):
    """promptcli's RunConfig for a job: the same template, rows, demonstrations and batch size."""
    from promptcli.spec.runconfig import RunConfig

    return RunConfig(template=job["template"], data=job["data"], model=job["model"], device="cpu", dtype="float32",
                     batch_size=job["batch_size"], limit=limit or job["rows"], train=job.get("train"))


def common_prefix(encoded: Sequence[Any]) -> tuple[int, ...]:
    """The prefix shared by every full prompt (those that lost demonstrations to the length limit run whole)."""
    contexts = [e.context for e in encoded if not e.dropped] or [e.context for e in encoded]
    return tuple(contexts[0][:shared_prefix_length(contexts)]) if contexts else ()
