"""The whole vocabulary at the answer slot: one forward pass per training row gives every token's
log-probability there, and the tokens that are clean whole words in that slot are the candidates.

"Clean" follows the verbalizer's own rule (`prompt/verbalizer.py`): the word, with the slot's leading
whitespace, tokenised after the slot's left context, is exactly that one token. So a found word is
scored by `run` exactly as it was scored during the search.
"""
from __future__ import annotations

from typing import Sequence

import torch

from ..errors import RunError
from ..evaluation.inputs import Prepared
from ..prompt.encode import LEAD, Encoded
from ..prompt.tokens import Segmenter
from ..scoring.base import pad_right
from ..scoring.causal import CausalLMScorer
from ..scoring.mlm import MaskedLMScorer


def slot_log_probs(scorer: object, batch: Sequence[Encoded]) -> torch.Tensor:
    """(B, V) log-probabilities of the first token at the answer slot, for every vocabulary token."""
    if isinstance(scorer, CausalLMScorer):
        return scorer.prefill([e.context for e in batch], use_cache=False)[0].cpu()
    if isinstance(scorer, MaskedLMScorer):
        ids, mask = pad_right([e.context + (scorer.mask_id,) + e.suffix for e in batch], scorer.pad_id, scorer.device)
        rows = torch.arange(len(batch), device=scorer.device)
        cols = torch.tensor([len(e.context) for e in batch], device=scorer.device)
        return scorer.mask_log_probs(ids, mask, rows, cols).cpu()
    raise RunError(f"searching label words needs a masked or causal LM scorer, not {type(scorer).__name__}")


def slot_context(prepared: Prepared) -> tuple[str, str]:
    """(anchor, lead): the character before the slot's whitespace, and that whitespace, as the verbalizer
    sees them (read from the first training row; templates put their own words before the slot)."""
    example = prepared.dataset.examples[0]
    prefix = prepared.encoder.prompt(dict(example.fields), [], "search").prefix
    lead = LEAD.search(prefix).group(0)
    core = prefix[:len(prefix) - len(lead)]
    return core[-1:], lead


def clean_words(segmenter: Segmenter, anchor: str, lead: str, size: int) -> dict[int, str]:
    """token id → word, for the tokens below `size` that read as one whole word (letters only) in the slot."""
    tok = segmenter.tokenizer
    head = segmenter.encode(anchor) if anchor else []
    shown = tok.decode(head)
    special = set(tok.all_special_ids)
    ids = [i for i in range(min(size, len(tok))) if i not in special]
    found: dict[int, str] = {}
    for i, text in zip(ids, tok.batch_decode([head + [i] for i in ids])):
        piece = text[len(shown):] if text.startswith(shown) else ""
        word = piece[len(lead):] if piece.startswith(lead) else ""
        if word.isalpha():
            found[i] = word
    if not found:
        return found
    words = list(found.items())
    encoded = tok([anchor + lead + w for _, w in words], add_special_tokens=False)["input_ids"]
    return {i: w for (i, w), tokens in zip(words, encoded) if list(tokens) == head + [i]}
