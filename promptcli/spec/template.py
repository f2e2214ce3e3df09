"""A template file: how one example becomes model input, per kind, and its scoring defaults.

Kinds form a discriminated union on `kind`, so a mistake is reported for the kind the user
chose, not for every kind at once.
"""
from __future__ import annotations

import re
from typing import Annotated, Any, Literal, Union

from pydantic import Field, TypeAdapter, field_validator, model_validator

from .options import Calibrate, Normalize, Select, Similarity, Strategy
from .verbalizer import Strict, VerbalizerRef

# Private-use characters the renderer writes for the answer slot, a data field (in PMI's premise) and soft-prompt
# places; data holding them would be read as template structure, so rows may not contain them.
MASK, FIELD, SOFT = "\ue000", "\ue001", "\ue002"
RESERVED = (MASK, FIELD, SOFT)

TEMPLATE_KINDS = ("manual", "co-star", "xml", "cot", "self-consistency")
GENERATION_KINDS = ("cot", "self-consistency")


class ScoringSpec(Strict):
    normalize: Normalize = Field(
        "none", description="causal: divide a continuation's log-likelihood by its tokens or characters, or "
                            "subtract its log-likelihood after the domain premise (pmi)")
    premise: str | None = Field(None, description="pmi: the domain premise (default: the template's own words "
                                                  "between the last data field and the slot)")
    calibrate: Calibrate = Field(
        "none", description="contextual: divide by the label distribution of content-free inputs (Zhao et al., 2021)")
    content_free: list[str] = Field(default_factory=lambda: ["N/A", "", "{mask_token}"],
                                    description="content-free inputs; {mask_token} is the model's mask token")


class DemonstrationsSpec(Strict):
    """In-context examples drawn from a training file (`--train`)."""

    count: int = Field(4, ge=0, description="how many demonstrations in all")
    per_class: int | None = Field(None, ge=1, description="or: this many per label (overrides count)")
    select: Select = Field(
        "balanced", description="random | balanced (round-robin over labels) | first | similar (nearest by `similarity`)")
    similarity: Similarity = Field(
        "tfidf", description="select: similar by TF-IDF cosine, by all-MiniLM-L6-v2 sentence embeddings (minilm), or "
                 "by the scored model's own mean hidden states (model)")
    seed: int = 13
    order: int | None = Field(None, description="permute the chosen demonstrations with this seed: the same rows "
                                                "in another order (order sensitivity)")
    text: str | None = Field(None, description="Jinja of one demonstration: the example's fields, `label`, "
                                               "`label_word` (= `mask`); default: the template with the slot filled")
    separator: str = "\n\n"


class DecodingSpec(Strict):
    """How reasoning is generated. Filters apply in the order top-k → top-p → temperature."""

    strategy: Strategy = "greedy"
    temperature: float = Field(1.0, gt=0)
    top_k: int | None = Field(None, ge=1)
    top_p: float | None = Field(None, gt=0, le=1)
    max_new_tokens: int = Field(128, ge=1)
    stop: list[str] = Field(default_factory=list, description="stop generating at any of these strings")


class TemplateBase(Strict):
    name: str | None = None
    description: str = ""
    fields: list[str] | None = Field(None, description="data fields the template reads (inferred when omitted)")
    label_field: str = "label"
    verbalizer: VerbalizerRef = Field(description="a path relative to this file, or an inline verbalizer")
    model: str | None = Field(None, description="default model (hub id or local folder)")
    scoring: ScoringSpec = ScoringSpec()
    demonstrations: DemonstrationsSpec | None = None
    chat: bool = Field(False, description="render through the tokenizer's chat template (causal models)")
    system: str | None = Field(None, description="chat: the system message (Jinja)")


class ManualTemplate(TemplateBase):
    """PET / LM-BFF cloze style: one Jinja text with a `{{ mask }}` answer slot."""

    kind: Literal["manual"]
    text: str
    answer: str | None = Field(None, description="chat: the assistant turn holding the slot (default {{ mask }}); "
                                                 "`text` is then the user turn")


class CoStarSections(Strict):
    context: str | None = None
    objective: str
    style: str | None = None
    tone: str | None = None
    audience: str | None = None
    response: str | None = None


class CoStarTemplate(TemplateBase):
    """CO-STAR: context, objective, style, tone, audience, response, then the input and answer."""

    kind: Literal["co-star"]
    sections: CoStarSections
    input: str = "{{ text }}"
    input_name: str = "INPUT"
    answer: str = "Answer: {{ mask }}"


class XmlTemplate(TemplateBase):
    """Sections wrapped in XML tags named after them, the input in its own tag."""

    kind: Literal["xml"]
    sections: dict[str, str]
    input: str = "{{ text }}"
    input_tag: str = "input"
    answer: str = "Answer: {{ mask }}"

    @field_validator("sections", "input_tag")
    @classmethod
    def _xml_names(cls, value: Any) -> Any:
        names = value if isinstance(value, dict) else [value]
        for name in names:
            if not re.fullmatch(r"[A-Za-z_][\w.-]*", name):
                raise ValueError(f"'{name}' is not a valid XML tag name")
        return value


class GenerativeTemplate(TemplateBase):
    """The model writes reasoning after `text`; the answer comes from a pattern or a trigger."""

    text: str
    answer_pattern: str | None = Field(None, description="regex on the generated text; its last match (group 1 "
                                                         "if any) is mapped to a label through the label words")
    answer_trigger: str | None = Field(None, description="Jinja appended after the reasoning, with {{ mask }}: the "
                                                         "label words are scored there (two-stage zero-shot CoT)")
    decoding: DecodingSpec = DecodingSpec()

    @field_validator("answer_pattern")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"not a valid regular expression: {exc}") from None
        return value

    @model_validator(mode="after")
    def _one_answer_method(self) -> GenerativeTemplate:
        if (self.answer_pattern is None) == (self.answer_trigger is None):
            raise ValueError("give exactly one of answer_pattern or answer_trigger")
        return self


class CotTemplate(GenerativeTemplate):
    """Chain of thought: one reasoning path per example."""

    kind: Literal["cot"]


class SelfConsistencyTemplate(GenerativeTemplate):
    """Several sampled reasoning paths per example; the majority answer wins."""

    kind: Literal["self-consistency"]
    samples: int = Field(5, ge=1, description="reasoning paths per example")
    decoding: DecodingSpec = DecodingSpec(strategy="sample", temperature=0.7, top_k=40)


AnyTemplate = Union[ManualTemplate, CoStarTemplate, XmlTemplate, CotTemplate, SelfConsistencyTemplate]
TemplateSpec = Annotated[AnyTemplate, Field(discriminator="kind")]
_TEMPLATE_ADAPTER: TypeAdapter = TypeAdapter(TemplateSpec)
_KIND_MODELS = {"manual": ManualTemplate, "co-star": CoStarTemplate, "xml": XmlTemplate, "cot": CotTemplate,
                "self-consistency": SelfConsistencyTemplate}
