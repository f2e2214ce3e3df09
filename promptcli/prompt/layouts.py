"""How each template kind lays out its parts.

Every kind is described by the same four Jinja parts, so rendering, chat formatting and
demonstrations never branch on the kind:

- `instructions`: fixed text before everything else (CO-STAR / XML sections); the system
  message in chat mode;
- `query`: the example's input;
- `answer`: the part holding the `{{ mask }}` slot (empty when the query holds it);
- `demo`: one demonstration (the example's fields, `label`, `label_word`, `mask` = label word),
  and `demo_block`, how the joined demonstrations sit between instructions and query.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..spec.template import AnyTemplate, CoStarTemplate, GenerativeTemplate, ManualTemplate, XmlTemplate

COSTAR_ORDER = ("context", "objective", "style", "tone", "audience", "response")
DELIMITER = "#############"


@dataclass(frozen=True)
class Part:
    """Jinja text, and where the user wrote it (None for text promptcli adds)."""

    text: str
    loc: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Layout:
    instructions: list[Part]
    query: list[Part]
    answer: list[Part]
    demo: list[Part]
    demo_block: str  # {demos}: the demonstrations joined with the separator; {sep}: the separator


def layout(spec: AnyTemplate) -> Layout:
    if isinstance(spec, ManualTemplate):
        if spec.chat:
            query, answer = [Part(spec.text, ("text",))], [Part(spec.answer or "{{ mask }}", ("answer",))]
        else:
            query, answer = [Part(spec.text, ("text",))], []
        return Layout([], query, answer, query + answer, "{demos}{sep}")
    if isinstance(spec, GenerativeTemplate):
        query = [Part(spec.text, ("text",))]
        trigger = [Part("\n" + spec.answer_trigger.strip(), ("answer_trigger",))] if spec.answer_trigger else []
        return Layout([], query, [], query + trigger, "{demos}{sep}")
    if isinstance(spec, CoStarTemplate):
        instructions = []
        for name in COSTAR_ORDER:
            text = getattr(spec.sections, name)
            if text:
                instructions += [Part(f"# {name.upper()} #\n"), Part(text.strip(), ("sections", name)), Part("\n\n")]
        query = [Part(f"{DELIMITER}\n# {spec.input_name.upper()} #\n"), Part(spec.input.strip(), ("input",)),
                 Part(f"\n{DELIMITER}\n\n")]
        answer = [Part(spec.answer.strip(), ("answer",))]
        demo = [Part(f"{spec.input_name.upper()}: "), Part(spec.input.strip(), ("input",)), Part("\n"), *answer]
        return Layout(instructions, query, answer, demo, "# EXAMPLES #\n{demos}\n\n")
    if isinstance(spec, XmlTemplate):
        instructions = []
        for tag, text in spec.sections.items():
            instructions += [Part(f"<{tag}>\n"), Part(text.strip(), ("sections", tag)), Part(f"\n</{tag}>\n")]
        tag = spec.input_tag
        query = [Part(f"<{tag}>\n"), Part(spec.input.strip(), ("input",)), Part(f"\n</{tag}>\n")]
        answer = [Part(spec.answer.strip(), ("answer",))]
        demo = [Part(f"<example>\n<{tag}>"), Part(spec.input.strip(), ("input",)), Part(f"</{tag}>\n"), *answer,
                Part("\n</example>")]
        return Layout(instructions, query, answer, demo, "<examples>\n{demos}\n</examples>\n")
    raise TypeError(f"no layout for {type(spec).__name__}")
