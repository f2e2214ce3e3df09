"""From an example to model-ready token ids: render, split at the slot, tokenise, truncate.

Whitespace rule (documented in the README): spaces or tabs right before the answer slot
belong to the label word, not to the context (`It was great` is `It`, `was` | ` great`),
as in lm-evaluation-harness. Inputs that are too long lose tokens from the *data fields*
(longest field first), never from the template's own words or the answer slot.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Literal

from .data import Example
from .errors import DataError, SpecError
from .render import Prompt, Renderer
from .tokens import Segmenter
from .verbalizer import Verbalizer, WordTable

LEAD = re.compile(r"[ \t]*$")
SUFFIX_ANCHOR = "a"  # what precedes the text after the slot: the end of a label word


@dataclass(frozen=True)
class Encoded:
    """One example as token ids around the answer slot."""

    index: int
    context: tuple[int, ...]  # opening special tokens + the text before the slot
    suffix: tuple[int, ...]  # the text after the slot (+ closing special tokens for MLM)
    words: WordTable  # the label words as they read in this slot
    suffix_chars: int
    truncated: bool

    @property
    def length(self) -> int:
        """Longest input this example needs (context + longest word + suffix)."""
        return len(self.context) + self.words.longest + len(self.suffix)


class Encoder:
    def __init__(self, renderer: Renderer, verbalizer: Verbalizer, segmenter: Segmenter,
                 kind: Literal["mlm", "causal"], max_length: int, fallback_start: int | None = None):
        self.renderer = renderer
        self.verbalizer = verbalizer
        self.segmenter = segmenter
        self.kind = kind
        self.max_length = max_length
        # causal scoring needs at least one context token to predict the first word token from
        self.fallback_start = fallback_start

    def split(self, prompt: Prompt) -> Encoded:
        lead = LEAD.search(prompt.prefix).group(0)
        core = prompt.prefix[:len(prompt.prefix) - len(lead)]
        context = self.segmenter.opening + tuple(self.segmenter.encode(core))
        if self.kind == "causal" and not context:
            if self.fallback_start is None:
                raise SpecError("a causal model needs text before the answer slot (and this tokenizer has no "
                                "BOS/EOS token to start from)", path=str(self.renderer.template.path))
            context = (self.fallback_start,)
        words = self.verbalizer.table(self.segmenter, core[-1:], lead)
        suffix = self.segmenter.encode_after(SUFFIX_ANCHOR, prompt.suffix)
        if self.kind == "mlm":
            suffix = suffix + self.segmenter.closing
        return Encoded(index=-1, context=context, suffix=suffix, words=words,
                       suffix_chars=len(prompt.suffix), truncated=False)

    def encode(self, example: Example, where: str) -> Encoded:
        """Render and tokenise one example, truncating its data fields if it is too long."""
        values = dict(example.fields)
        truncated = False
        for _ in range(16):
            encoded = self.split(self.renderer.render(values, where))
            over = encoded.length - self.max_length
            if over <= 0:
                return replace(encoded, index=example.index, truncated=truncated)
            lengths = {f: len(self.segmenter.encode(values[f])) for f in self.renderer.fields
                       if isinstance(values.get(f), str) and values[f]}
            if not lengths:
                raise SpecError(f"the template alone needs {encoded.length} tokens, more than the model's "
                                f"{self.max_length}", path=str(self.renderer.template.path))
            field = max(lengths, key=lambda f: lengths[f])
            values[field] = self.segmenter.cut(values[field], lengths[field] - over)
            truncated = True
        raise DataError("could not truncate the data fields to fit the model", path=where)

    def prompt(self, example: Example, where: str) -> Prompt:
        return self.renderer.render(dict(example.fields), where)
