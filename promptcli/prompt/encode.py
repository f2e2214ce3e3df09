"""From an example to model-ready token ids: demonstrations, render (or chat-format), split at
the slot, tokenise, fit to the model's length.

Whitespace rule (documented in the README): spaces or tabs right before the answer slot
belong to the label word, not to the context (`It was great` is `It`, `was` | ` great`),
as in lm-evaluation-harness. Inputs that are too long first lose demonstrations (the one
farthest from the query first), then tokens from the *data fields* (longest field first),
never the template's own words or the answer slot.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Literal

from ..errors import DataError, RunError, SpecError
from ..models.info import ModelInfo
from ..spec.data import Example
from .demos import DemoSelector
from .render import SOFT, Demo, Prompt, Renderer
from .tokens import Segmenter
from .verbalizer import Verbalizer, WordTable

LEAD = re.compile(r"[ \t]*$")
SOFT_RUN = re.compile(f"({SOFT}+)")
SUFFIX_ANCHOR = "a"  # what precedes the text after the slot: the end of a label word
NO_WORDS = WordTable(ids=(), chars=())


@dataclass(frozen=True)
class Encoded:
    """One example as token ids around the answer slot."""

    index: int
    context: tuple[int, ...]  # opening special tokens + the text before the slot
    suffix: tuple[int, ...]  # the text after the slot (+ closing special tokens for MLM)
    words: WordTable  # the label words as they read in this slot (empty for generation prompts)
    suffix_chars: int
    truncated: bool = False
    demos: int = 0  # demonstrations in the prompt
    dropped: int = 0  # demonstrations removed to fit the model
    skipped_self: int = 0  # training rows not used because they equal this example
    text: str = ""  # the text before the slot (generation: the prompt), for the second CoT stage

    @property
    def length(self) -> int:
        """Longest input this example needs (context + longest word + suffix)."""
        return len(self.context) + (self.words.longest if self.words.ids else 0) + len(self.suffix)


@dataclass(frozen=True)
class Virtual:
    """Where soft-prompt tokens go: ids from `base` (the vocabulary size) on; `prefix` of them before
    everything, or 0 when the template places them with {{ soft(n) }}."""

    base: int
    prefix: int


class Encoder:
    def __init__(self, renderer: Renderer, verbalizer: Verbalizer, segmenter: Segmenter,
                 kind: Literal["mlm", "causal"], max_length: int, fallback_start: int | None = None,
                 selector: DemoSelector | None = None, reserve: int = 0, virtual: Virtual | None = None):
        self.renderer = renderer
        self.verbalizer = verbalizer
        self.segmenter = segmenter
        self.kind = kind
        self.max_length = max_length
        # causal scoring needs at least one context token to predict the first word token from
        self.fallback_start = fallback_start
        self.selector = selector
        self.chat = renderer.template.spec.chat
        self.reserve = reserve  # room kept free after the prompt (generated tokens, the answer trigger)
        self.virtual = virtual
        if self.chat and getattr(segmenter.tokenizer, "chat_template", None) is None:
            raise SpecError("the template asks for the chat format but this tokenizer has no chat template",
                            path=str(renderer.template.path), field="chat", hint="set chat: false")

    def prompt(self, fields, demos: list[Demo], where: str) -> Prompt:
        """The rendered prompt, through the tokenizer's chat template when the template asks for it."""
        if not self.chat:
            return self.renderer.render(fields, demos, where)
        messages, answer = self.renderer.messages(fields, demos, where)
        text = self.segmenter.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return self.renderer.split_text(text + answer)

    def split(self, prompt: Prompt, slot: bool = True) -> Encoded:
        """Tokenise around the slot; `slot=False` for a generation prompt (all context, no label words)."""
        lead = LEAD.search(prompt.prefix).group(0)
        core = prompt.prefix[:len(prompt.prefix) - len(lead)]
        if SOFT in prompt.suffix:
            raise SpecError("soft-prompt tokens must come before the answer slot", path=str(self.renderer.template.path))
        opening = () if self.chat else self.segmenter.opening  # a chat template writes its own BOS
        virtual = tuple(range(self.virtual.base, self.virtual.base + self.virtual.prefix)) if self.virtual else ()
        context = virtual + opening + self._text_ids(core)
        core = core.replace(SOFT, "")
        if self.kind == "causal" and not context:
            if self.fallback_start is None:
                raise SpecError("a causal model needs text before the answer slot (and this tokenizer has no "
                                "BOS/EOS token to start from)", path=str(self.renderer.template.path))
            context = (self.fallback_start,)
        if not slot:
            return Encoded(index=-1, context=context, suffix=(), words=NO_WORDS, suffix_chars=0, text=prompt.prefix)
        words = self.verbalizer.table(self.segmenter, core[-1:], lead)
        suffix = self.segmenter.encode_after(SUFFIX_ANCHOR, prompt.suffix)
        if self.kind == "mlm":
            suffix = suffix + self.segmenter.closing
        return Encoded(index=-1, context=context, suffix=suffix, words=words, suffix_chars=len(prompt.suffix),
                       text=core)

    def _text_ids(self, text: str) -> tuple[int, ...]:
        """Token ids of text that may hold soft-prompt places (numbered in order of appearance)."""
        if SOFT not in text:
            return tuple(self.segmenter.encode(text))
        if self.virtual is None or self.virtual.prefix:
            raise RunError("the template has {{ soft(n) }} slots: pass --soft-prompt (a folder written by "
                           "promptcli tune)", path=str(self.renderer.template.path))
        ids: list[int] = []
        seen, before = 0, ""
        for part in SOFT_RUN.split(text):
            if part.startswith(SOFT):
                ids += range(self.virtual.base + seen, self.virtual.base + seen + len(part))
                seen += len(part)
            elif part:
                ids += self.segmenter.encode_after(before[-1:], part) if before else self.segmenter.encode(part)
                before += part
        return tuple(ids)

    def encode(self, example: Example, where: str) -> Encoded:
        """Render and tokenise one example, dropping demonstrations then truncating data fields to fit."""
        selection = self.selector.select(example) if self.selector else None
        demos = list(selection.demos) if selection else []
        values = dict(example.fields)
        dropped, truncated = 0, False
        for _ in range(64):
            encoded = self.split(self.prompt(values, demos, where), slot=not self.renderer.generative)
            over = encoded.length + self.reserve - self.max_length
            if over <= 0:
                return replace(encoded, index=example.index, truncated=truncated, demos=len(demos), dropped=dropped,
                               skipped_self=selection.skipped_self if selection else 0)
            if demos:  # the farthest from the query goes first
                demos.pop(0)
                dropped += 1
                continue
            lengths = {f: len(self.segmenter.encode(values[f])) for f in self.renderer.fields
                       if isinstance(values.get(f), str) and values[f]}
            if not lengths:
                raise SpecError(f"the template alone needs {encoded.length + self.reserve} tokens, more than the "
                                f"model's {self.max_length}", path=str(self.renderer.template.path))
            field = max(lengths, key=lambda f: lengths[f])
            values[field] = self.segmenter.cut(values[field], lengths[field] - over)
            truncated = True
        raise DataError("could not truncate the data fields to fit the model", path=where)


def make_encoder(renderer: Renderer, verbalizer: Verbalizer, info: ModelInfo,
                 selector: DemoSelector | None = None, max_new_tokens: int | None = None,
                 soft_tokens: int | None = None, kv_tokens: int = 0) -> Encoder:
    """The encoder for a template and a model; generation prompts keep room for what is generated, and a
    key/value prefix (prefix tuning) for the positions it takes."""
    tok = info.tokenizer
    segmenter = Segmenter(tok)
    spec = renderer.template.spec
    reserve = kv_tokens
    if renderer.generative:
        reserve += max_new_tokens or spec.decoding.max_new_tokens
        if spec.answer_trigger:  # the trigger and the longest label word follow the reasoning
            longest = max(verbalizer.words, key=len)
            reserve += len(segmenter.encode(renderer.trigger_text(longest))) + 2
    start = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
    virtual = None
    if soft_tokens is not None:  # a soft prompt: its tokens in the template's slots, or as a prefix
        virtual = Virtual(base=info.vocab_size, prefix=0 if renderer.soft_slots else soft_tokens)
    return Encoder(renderer, verbalizer, segmenter, info.kind, info.max_length, start, selector, reserve, virtual)
