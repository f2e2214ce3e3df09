"""Rendering a data row into text (or chat messages) through the one Jinja environment (`environment.py`).

Each part of a template is compiled once, when the Renderer is built.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from jinja2 import Template, TemplateSyntaxError, meta, nodes
from jinja2.exceptions import SecurityError, TemplateError, UndefinedError

from ..errors import DataError, SpecError
from ..spec.loading import TemplateFile
from ..spec.template import MASK, SOFT, DemonstrationsSpec
from .environment import ENV, MAX_OUTPUT, NotPrintable, TemplateLimit, time_limit
from .layouts import Layout, Part, layout

# The answer slot renders to a private-use character (MASK) that no tokenizer sees: the text is split there,
# and each side is tokenised on its own. `{{ soft(n) }}` renders n SOFT characters: the places of soft-prompt
# tokens (see soft.py). Data rows may not hold either (spec/data.py refuses them).
RESERVED = frozenset({"mask", "label", "label_word", "demonstrations", "separator", "soft"})


@dataclass(frozen=True)
class Prompt:
    """Rendered text split at the answer slot (generation prompts have no slot: all prefix)."""

    prefix: str
    suffix: str

    def show(self, mask: str = "{{ mask }}") -> str:
        return self.prefix + mask + self.suffix


@dataclass(frozen=True)
class Demo:
    """A demonstration: a training row with its label and the label word that answers it."""

    fields: Mapping[str, Any]
    label: str
    word: str


class Renderer:
    """A template compiled once; renders rows as text or chat messages."""

    def __init__(self, template: TemplateFile):
        self.template = template
        spec = template.spec
        self.layout: Layout = layout(spec)
        self.generative = template.generative
        # separator and text of demonstrations (defaults when --shots adds them to a template without any)
        self.demonstrations = spec.demonstrations or DemonstrationsSpec()
        parts = {name: getattr(self.layout, name) for name in ("instructions", "query", "answer", "demo")}
        for part in [p for group in parts.values() for p in group] + ([Part(spec.system, ("system",))]
                                                                      if spec.system else []):
            if part.loc is not None:
                self._check_syntax(part)
        self._compiled: dict[str, Template] = {name: ENV.from_string("".join(p.text for p in group))
                                               for name, group in parts.items()}
        self._system = ENV.from_string(spec.system) if spec.system else None
        custom = self.demonstrations.text
        if custom:
            self._check_syntax(Part(custom, ("demonstrations", "text")))
        self._demo_text = ENV.from_string(custom) if custom else None
        trigger = getattr(spec, "answer_trigger", None)
        if trigger:
            self._check_syntax(Part(trigger, ("answer_trigger",)))
        self._trigger = ENV.from_string(trigger.strip()) if trigger else None
        optional = {"system": self._system, "demo_text": self._demo_text, "trigger": self._trigger}
        self._compiled.update({name: template for name, template in optional.items() if template is not None})
        used = {name: meta.find_undeclared_variables(ENV.parse("".join(p.text for p in group)))
                for name, group in parts.items()}
        names = set().union(*used.values())
        if spec.system:
            names |= meta.find_undeclared_variables(ENV.parse(spec.system))
        self.places_demonstrations = "demonstrations" in used["query"]
        self.soft_slots = any(  # the template places soft-prompt tokens itself
            isinstance(call.node, nodes.Name) and call.node.name == "soft"
            for group in parts.values() for call in ENV.parse("".join(p.text for p in group)).find_all(nodes.Call))
        declared = spec.fields
        fields = sorted(names - RESERVED)
        if declared is not None:
            missing = [f for f in fields if f not in declared]
            if missing:
                raise self._error(f"the template uses {', '.join(missing)} but `fields` does not list "
                                  f"{'it' if len(missing) == 1 else 'them'}", ("fields",))
        self.fields: list[str] = list(declared) if declared is not None else fields
        self._check_slot(used)

    def _check_slot(self, used: dict[str, set[str]]) -> None:
        spec = self.template.spec
        if self.generative:
            if "mask" in used["query"]:
                raise self._error("a generation template has no answer slot in `text`: the model writes after it",
                                  ("text",))
            if spec.answer_trigger and "mask" not in meta.find_undeclared_variables(ENV.parse(spec.answer_trigger)):
                raise self._error("the answer trigger needs {{ mask }} where the label word goes", ("answer_trigger",))
            return
        if "mask" not in used["query"] | used["answer"]:
            where = ("text",) if spec.kind == "manual" and not spec.chat else ("answer",)
            raise self._error("the template has no answer slot; put {{ mask }} where the label word goes", where)
        if spec.chat and spec.kind == "manual" and "mask" in used["query"]:
            raise self._error("in chat mode `text` is the user turn; put the slot in `answer` (default {{ mask }})",
                              ("text",))

    def _error(self, message: str, loc: tuple[str, ...]) -> SpecError:
        line, column = self.template.doc.locate(loc)
        return SpecError(message, path=str(self.template.path), line=line, column=column, field=".".join(loc))

    def _check_syntax(self, part: Part) -> None:
        try:
            ENV.parse(part.text)
        except TemplateSyntaxError as exc:
            raise self._error(f"Jinja syntax error on line {exc.lineno} of the text: {exc.message}", part.loc) from None

    def _fill(self, name: str, values: Mapping[str, Any], where: str) -> str:
        try:
            with time_limit():
                text = self._compiled[name].render(values)
        except UndefinedError as exc:
            found = re.search(r"'([^']+)' is undefined", str(exc))
            field = found.group(1) if found else None
            raise DataError(f"the row has no field '{field}'" if field else f"missing value: {exc}",
                            path=where or None, field=field) from None
        except NotPrintable as exc:
            raise DataError(str(exc), path=where or None) from None
        except (SecurityError, TemplateLimit, OverflowError) as exc:
            raise SpecError(f"the template went past what the sandbox allows: {exc}",
                            path=str(self.template.path)) from None
        except (TemplateError, TypeError, ValueError) as exc:
            if "no loader" in str(exc):  # {% include %}, {% import %}, {% extends %}
                raise SpecError("templates cannot include, import or extend other files",
                                path=str(self.template.path)) from None
            raise DataError(f"rendering failed: {exc}", path=where or None) from None
        if len(text) > MAX_OUTPUT:
            raise SpecError(f"the template rendered {len(text):,} characters for one row; the limit is "
                            f"{MAX_OUTPUT:,}", path=str(self.template.path))
        return text

    def demo_text(self, demo: Demo, where: str = "") -> str:
        values = {**demo.fields, "mask": demo.word, "label": demo.label, "label_word": demo.word}
        return self._fill("demo_text" if self._demo_text else "demo", values, where).replace(SOFT, "").strip()

    def _values(self, row: Mapping[str, Any], demos: Sequence[Demo], where: str) -> dict[str, Any]:
        separator = self.demonstrations.separator
        joined = separator.join(self.demo_text(d, where) for d in demos)
        return {**row, "mask": MASK, "separator": separator,
                "demonstrations": joined + separator if joined else ""}

    def render(self, row: Mapping[str, Any], demos: Sequence[Demo] = (), where: str = "") -> Prompt:
        """The whole prompt as text, split at the slot. `where` (e.g. 'data.jsonl:12') prefixes data errors."""
        values = self._values(row, demos, where)
        block = ""
        if values["demonstrations"] and not self.places_demonstrations:
            joined = values["demonstrations"][:-len(values["separator"])]
            block = self.layout.demo_block.format(demos=joined, sep=values["separator"])
        text = (self._fill("instructions", values, where) + block + self._fill("query", values, where)
                + self._fill("answer", values, where)).strip()
        return self.split_text(text)

    def messages(self, row: Mapping[str, Any], demos: Sequence[Demo] = (), where: str = ""
                 ) -> tuple[list[dict[str, str]], str]:
        """Chat form: system (system prompt + instructions), demonstrations as user/assistant turns, the
        user turn; and the start of the assistant turn holding the slot (empty for generation)."""
        values = self._values(row, (), where)
        system = "\n\n".join(t for t in (self._fill("system", values, where).strip() if self._system else "",
                                         self._fill("instructions", values, where).strip()) if t)
        messages = [{"role": "system", "content": system}] if system else []
        for demo in demos:
            demo_values = {**demo.fields, "mask": demo.word, "label": demo.label, "label_word": demo.word,
                           "demonstrations": "", "separator": ""}
            answer = self._fill("answer", demo_values, where) if self.layout.answer else demo.word
            messages += [{"role": "user", "content": self._fill("query", demo_values, where).strip()},
                         {"role": "assistant", "content": answer.strip()}]
        messages.append({"role": "user", "content": self._fill("query", values, where).strip()})
        return messages, self._fill("answer", values, where).strip()

    def after_reasoning(self, prompt: str, reasoning: str, row: Mapping[str, Any], where: str = "") -> Prompt:
        """Two-stage CoT: prompt + reasoning + newline + answer trigger, split at the trigger's slot."""
        head, _, tail = self._fill("trigger", {**row, "mask": MASK}, where).partition(MASK)
        return Prompt(prefix=prompt + reasoning.rstrip() + "\n" + head, suffix=tail.rstrip())

    def trigger_text(self, word: str) -> str:
        """The answer trigger with `word` in its slot and empty data fields: the room it needs after reasoning."""
        return self._fill("trigger", {**{f: "" for f in self.fields}, "mask": word}, "")

    def split_text(self, text: str) -> Prompt:
        count = text.count(MASK)
        if self.generative:
            if count:
                raise SpecError("a generation prompt must not hold an answer slot", path=str(self.template.path))
            return Prompt(prefix=text, suffix="")
        if count != 1:
            raise SpecError(f"a rendered prompt must hold exactly one answer slot, this one holds {count}",
                            path=str(self.template.path), hint="use {{ mask }} once, outside loops")
        prefix, suffix = text.split(MASK)
        return Prompt(prefix=prefix, suffix=suffix)
