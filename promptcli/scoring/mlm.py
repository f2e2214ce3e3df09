"""Masked-LM scoring: a word of n tokens is read from n mask tokens in the slot.

Words of equal token length share one input (and one forward pass) per example. A word's
score is the mean / sum / first of its tokens' log-probabilities at their masks.
"""
from __future__ import annotations

from typing import Sequence

import torch

from ..models.weights import LoadedModel
from ..prompt.encode import Encoded
from ..prompt.soft import KV_ATTRIBUTE
from ..spec.runconfig import ScoringConfig
from .base import chunks, pad_right, register
from .causal import cache_argument, prefix_cache

# The modules after the encoder that map hidden states to vocabulary logits, per family:
# running only these on the mask positions skips a (T × vocab) projection per input.
MLM_HEADS: dict[str, tuple[str, ...]] = {
    "bert": ("cls",),
    "roberta": ("lm_head",),
    "xlm-roberta": ("lm_head",),
    "camembert": ("lm_head",),
    "electra": ("generator_predictions", "generator_lm_head"),
    "distilbert": ("vocab_transform", "activation", "vocab_layer_norm", "vocab_projector"),
}


@register("mlm")
class MaskedLMScorer:
    def __init__(self, loaded: LoadedModel, options: ScoringConfig):
        self.model = loaded.model
        self.device = loaded.device
        tok = loaded.tokenizer
        self.mask_id = tok.mask_token_id
        self.pad_id = tok.pad_token_id if tok.pad_token_id is not None else 0
        self.options = options
        head = MLM_HEADS.get(loaded.info.config.model_type)
        self.head = head if head and all(hasattr(self.model, n) for n in head) else None
        self.calls = self.sequences = self.positions = self.prefills = 0
        self.kv_prefix = getattr(self.model, KV_ATTRIBUTE, None)  # a prefix-tuned prompt, while attached

    def mask_log_probs(self, ids: torch.Tensor, mask: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor
                       ) -> torch.Tensor:
        """Log-softmax over the vocabulary at (rows, cols): (N, V) float32."""
        self.calls += 1
        self.sequences += ids.shape[0]
        self.prefills += ids.shape[0]
        self.positions += int(mask.sum())
        extra = {}
        if self.kv_prefix is not None:  # every row sits on the key/value prefix; the text takes positions N…
            mask = torch.cat([torch.ones((ids.shape[0], self.kv_prefix.tokens), dtype=mask.dtype, device=mask.device),
                              mask], dim=1)
            runs = self.model.base_model if self.head is not None else self.model
            extra[cache_argument(runs)] = prefix_cache(self.kv_prefix, ids.shape[0], self.model)
        if self.head is not None:
            hidden = self.model.base_model(input_ids=ids, attention_mask=mask, **extra).last_hidden_state
            states = hidden[rows, cols]  # (N, H)
            for name in self.head:
                states = getattr(self.model, name)(states)
            logits = states
        else:
            logits = self.model(input_ids=ids, attention_mask=mask, **extra).logits[rows, cols]
        return logits.float().log_softmax(-1)

    def word_scores(self, batch: Sequence[Encoded]) -> torch.Tensor:
        words = [enc.words for enc in batch]
        out = torch.empty((len(batch), len(words[0].ids)), dtype=torch.float32)
        # one input per (example, word length): the slot holds that many masks
        inputs = [(b, n) for b, table in enumerate(words) for n in sorted({len(i) for i in table.ids})]
        inputs.sort(key=lambda bn: -(len(batch[bn[0]].context) + bn[1] + len(batch[bn[0]].suffix)))
        for group in chunks(inputs, self.options.batch_size):
            seqs = [batch[b].context + (self.mask_id,) * n + batch[b].suffix for b, n in group]
            ids, mask = pad_right(seqs, self.pad_id, self.device)
            rows = torch.tensor([r for r, (b, n) in enumerate(group) for _ in range(n)], device=self.device)
            cols = torch.tensor([len(batch[b].context) + i for b, n in group for i in range(n)], device=self.device)
            log_probs = self.mask_log_probs(ids, mask, rows, cols).cpu()  # (Σn, V)
            start = 0
            for b, n in group:
                at = log_probs[start:start + n]  # (n, V): one row per mask
                start += n
                for w, tokens in enumerate(words[b].ids):
                    if len(tokens) == n:
                        token_lp = at[torch.arange(n), torch.tensor(tokens)]
                        out[b, w] = self._reduce(token_lp)
        return out

    def _reduce(self, token_lp: torch.Tensor) -> torch.Tensor:
        if self.options.multi_token == "sum":
            return token_lp.sum()
        if self.options.multi_token == "first":
            return token_lp[0]
        return token_lp.mean()
