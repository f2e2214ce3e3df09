"""Causal-LM scoring: the log-likelihood of each label's continuation after the context.

The continuation of a word is the word (with its leading whitespace) plus the text after
the slot. Cost per example: one forward over the context P (its KV cache kept), then one
pass over the first L_k − 1 tokens of every continuation of length L_k ≥ 2 against that
cache — P + Σ(L_k − 1) positions. The first continuation token's log-prob comes from the
context's last position, so when every continuation is a single token (single-token
words ending the text) the context forward is the whole cost.

Padding is on the right with explicit position ids, so a row's scores do not depend on
what it is batched with. A key/value prefix (prefix tuning) is a cache every input sits on: the
text starts at position N, after it, and the shared-prefix cache is computed on top of it.
"""
from __future__ import annotations

import functools
import inspect
from typing import Sequence

import torch

from ..errors import ModelError
from ..models.weights import LoadedModel
from ..prompt.encode import Encoded
from ..prompt.soft import KV_ATTRIBUTE
from ..spec.runconfig import ScoringConfig
from .base import chunks, pad_right, register


@register("causal")
class CausalLMScorer:
    def __init__(self, loaded: LoadedModel, options: ScoringConfig):
        self.model = loaded.model
        self.config = loaded.info.config
        self.device = loaded.device
        tok = loaded.tokenizer
        self.pad_id = tok.pad_token_id if tok.pad_token_id is not None else (tok.eos_token_id or 0)
        self.options = options
        self.keeps_logits = "logits_to_keep" in inspect.signature(self.model.forward).parameters
        self.cache_argument = cache_argument(self.model)
        self.calls = self.sequences = self.positions = self.prefills = 0
        self.prefix: tuple[int, ...] = ()
        self.prefix_kv: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.kv_prefix = getattr(self.model, KV_ATTRIBUTE, None)  # a prefix-tuned prompt, while attached
        self.virtual = self.kv_prefix.tokens if self.kv_prefix is not None else 0

    def virtual_cache(self, batch: int):
        return prefix_cache(self.kv_prefix, batch, self.model)

    def share_prefix(self, contexts: Sequence[Sequence[int]], minimum: int = 4) -> int:
        """Compute once the KV cache of the token prefix every context shares (instructions, fixed
        demonstrations); later prefills start after it. Returns the shared length (0: none)."""
        length = common_prefix_length(contexts)
        length = min(length, min(len(c) for c in contexts) - 1)  # every row keeps a token of its own
        if length < minimum or not self.options.prefix_cache:
            self.prefix, self.prefix_kv = (), []
            return 0
        self.prefix = tuple(contexts[0][:length])
        ids = torch.tensor([self.prefix], device=self.device)
        self.calls += 1
        self.sequences += 1
        self.positions += length
        kwargs = {"logits_to_keep": 1} if self.keeps_logits else {}  # the prefix's logits are never read
        if self.virtual:
            kwargs[self.cache_argument] = self.virtual_cache(1)
        out = self.model(input_ids=ids, position_ids=self.virtual + torch.arange(length, device=self.device)[None],
                         use_cache=True, **kwargs)
        cache = returned_cache(out)
        if not splittable(cache):
            self.prefix = ()
            return 0
        self.prefix_kv = [(layer.keys, layer.values) for layer in cache.layers]
        return length

    def continuations(self, enc: Encoded) -> list[tuple[int, ...]]:
        return [word + enc.suffix for word in enc.words.ids]

    def prefill(self, contexts: Sequence[Sequence[int]], use_cache: bool):
        """Forward the contexts (after the shared prefix, if they start with it).

        Returns (last-position log-probs (B, V), cache, attention mask over the cache, lengths).
        """
        shared = len(self.prefix) if self.prefix and all(tuple(c[:len(self.prefix)]) == self.prefix
                                                         for c in contexts) else 0
        ids, own_mask = pad_right([c[shared:] for c in contexts], self.pad_id, self.device)
        batch = ids.shape[0]
        before = self.virtual + shared  # cached positions in front of each row's own tokens
        lengths = own_mask.sum(1) + before
        mask = torch.cat([torch.ones((batch, before), dtype=own_mask.dtype, device=self.device), own_mask], dim=1)
        positions = before + torch.arange(ids.shape[1], device=self.device).expand_as(ids)
        last = (lengths - before - 1)[:, None]  # (B, 1): each row's last own token
        kwargs = {"logits_to_keep": last} if self.keeps_logits else {}  # per row: (B, 1) logits
        if shared:  # views of the one prefix cache (on the key/value prefix, if any), expanded to the batch
            kwargs[self.cache_argument] = cache_of(
                [(k.expand(batch, -1, -1, -1), v.expand(batch, -1, -1, -1)) for k, v in self.prefix_kv], self.config)
        elif self.virtual:
            kwargs[self.cache_argument] = self.virtual_cache(batch)
        self.calls += 1
        self.sequences += batch
        self.prefills += batch
        self.positions += int(own_mask.sum())
        out = self.model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=use_cache or before > 0,
                         **kwargs)
        if out.logits.shape[1] == 1:  # logits_to_keep kept just each row's last position
            logits = out.logits[:, 0]
        else:
            logits = out.logits[torch.arange(batch), last[:, 0]]
        return logits.float().log_softmax(-1), (returned_cache(out) if use_cache else None), mask, lengths

    def extend(self, cache, rows: torch.Tensor, mask: torch.Tensor, lengths: torch.Tensor,
               feeds: Sequence[Sequence[int]], contexts: Sequence[Sequence[int]]) -> torch.Tensor:
        """Feed continuation tokens after the cached contexts of `rows`; (R, T, V) logits."""
        if not splittable(cache):
            return self.recompute([contexts[r] for r in rows.tolist()], feeds)
        sub = cache_of([(layer.keys[rows], layer.values[rows]) for layer in cache.layers], self.config)
        ids, feed_mask = pad_right(feeds, self.pad_id, self.device)
        positions = lengths[rows, None] + torch.arange(ids.shape[1], device=self.device)[None]
        attention = torch.cat([mask[rows], feed_mask], dim=1)
        self.calls += 1
        self.sequences += ids.shape[0]
        self.positions += int(feed_mask.sum())
        out = self.model(input_ids=ids, attention_mask=attention, position_ids=positions, use_cache=True,
                         **{self.cache_argument: sub})
        return out.logits

    def recompute(self, contexts: Sequence[Sequence[int]], feeds: Sequence[Sequence[int]]) -> torch.Tensor:
        """Fallback for caches that cannot be split by row (recurrent or hybrid models): run context and
        continuation together. Same scores, more positions; (R, T, V) logits at the fed tokens."""
        if self.virtual:
            raise ModelError("prefix tuning needs a key/value cache that splits by row; this model's does not",
                             hint="tune it with --method prompt or p-tuning")
        ids, mask = pad_right([list(c) + list(f) for c, f in zip(contexts, feeds)], self.pad_id, self.device)
        self.calls += 1
        self.sequences += ids.shape[0]
        self.positions += int(mask.sum())
        positions = torch.arange(ids.shape[1], device=self.device).expand_as(ids)
        logits = self.model(input_ids=ids, attention_mask=mask, position_ids=positions).logits
        width = max(len(f) for f in feeds)
        index = torch.tensor([[len(c) + min(j, len(f) - 1) for j in range(width)] for c, f in zip(contexts, feeds)],
                             device=self.device)
        return logits.gather(1, index[..., None].expand(-1, -1, logits.shape[-1]))

    def word_scores(self, batch: Sequence[Encoded]) -> torch.Tensor:
        conts = [self.continuations(enc) for enc in batch]
        multi = [(b, w) for b, row in enumerate(conts) for w, cont in enumerate(row) if len(cont) > 1]
        first_lp, cache, mask, lengths = self.prefill([enc.context for enc in batch], use_cache=bool(multi))
        firsts = torch.tensor([[cont[0] for cont in row] for row in conts], device=first_lp.device)
        scores = first_lp.gather(1, firsts)  # (B, W)
        # continuations are grouped by length so rows in one pass pad little
        multi.sort(key=lambda bw: len(conts[bw[0]][bw[1]]))
        for group in chunks(multi, self.options.batch_size):
            rows = torch.tensor([b for b, _ in group], device=self.device)
            logits = self.extend(cache, rows, mask, lengths, [conts[b][w][:-1] for b, w in group],
                                 [enc.context for enc in batch])
            targets, real = pad_right([conts[b][w][1:] for b, w in group], 0, logits.device)
            tail = torch.where(real.bool(), target_log_probs(logits, targets), 0.0).sum(1)
            scores[rows, torch.tensor([w for _, w in group], device=self.device)] += tail.to(scores)
        return self.normalise(scores.cpu(), batch, conts)

    def normalise(self, scores: torch.Tensor, batch: Sequence[Encoded], conts: list[list[tuple[int, ...]]]
                  ) -> torch.Tensor:
        if self.options.continuation_normalize == "tokens":
            return scores / torch.tensor([[len(c) for c in row] for row in conts], dtype=scores.dtype)
        if self.options.continuation_normalize == "chars":
            chars = torch.tensor([[c + enc.suffix_chars for c in enc.words.chars] for enc in batch],
                                 dtype=scores.dtype)
            return scores / chars.clamp(min=1)
        return scores


def target_log_probs(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """log p(target) at each position of (R, T, V) logits: a gather and a log-sum-exp, without
    writing a (R, T, V) log-softmax that would be read at one entry per position."""
    logits = logits.float()
    return logits.gather(-1, targets[..., None])[..., 0] - logits.logsumexp(-1)


def prefix_cache(prefix, batch: int, model):
    """A key/value prefix (`prompt.soft.KvPrefix`) as a cache for `batch` rows (views of its table: it stays
    differentiable while training)."""
    dtype = model.get_input_embeddings().weight.dtype
    return cache_of([(k.to(dtype).expand(batch, -1, -1, -1), v.to(dtype).expand(batch, -1, -1, -1))
                     for k, v in prefix.key_values()], model.config)


def cache_of(layers: Sequence[tuple[torch.Tensor, torch.Tensor]], config):
    """A `DynamicCache` that holds each layer's (keys, values) as given, views included.

    `DynamicCache(ddp_cache_data=...)` first copies every layer (a concatenation onto an empty
    tensor) before the model's own update copies it again with the new tokens; for a prefix
    expanded to the batch that first copy is as large as the batch's whole cache. Layers of other
    kinds (sliding windows) keep their own `update`."""
    from transformers import DynamicCache
    from transformers.cache_utils import DynamicLayer

    cache = DynamicCache(config=config)
    for layer, (keys, values) in zip(cache.layers, layers):
        if type(layer) is DynamicLayer:
            layer.update(keys[..., :0, :], values[..., :0, :])  # sets its dtype and device, copies nothing
            layer.keys, layer.values = keys, values
        else:
            layer.update(keys, values)
    return cache


def cache_argument(model) -> str:
    """transformers names the KV cache argument `cache` from 5.24 on, `past_key_values` before (which 5.40
    removes): one place decides, so every forward works on the oldest supported version (5.23) and the newest."""
    return _cache_argument(type(model))


@functools.lru_cache(maxsize=None)
def _cache_argument(model_class: type) -> str:
    return "cache" if "cache" in inspect.signature(model_class.forward).parameters else "past_key_values"


def returned_cache(out):
    """The KV cache a forward returned: `cache` from transformers 5.24 on, `past_key_values` before."""
    return out["cache"] if "cache" in out else out.past_key_values


def splittable(cache) -> bool:
    """A cache whose every layer holds (B, heads, T, dim) keys and values can be copied row by row."""
    layers = getattr(cache, "layers", None)
    return bool(layers) and all(isinstance(getattr(layer, "keys", None), torch.Tensor) for layer in layers)


def common_prefix_length(rows: Sequence[Sequence[int]]) -> int:
    first = rows[0]
    length = min(len(r) for r in rows)
    for row in rows[1:]:
        n = 0
        while n < length and row[n] == first[n]:
            n += 1
        length = n
    return length
