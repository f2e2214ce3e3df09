"""The user-written files: templates and verbalizers, as strict pydantic models.

Every model forbids unknown keys, so a typo (`multi_tokens:`) is an error that names the
field and its line instead of a silently ignored setting.
"""
from __future__ import annotations

import difflib
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import (BaseModel, ConfigDict, Discriminator, Field, Tag, TypeAdapter, ValidationError,
                      ValidationInfo, field_validator, model_validator)

from .errors import SpecError
from .yamlfile import YamlDoc, load_yaml

TEMPLATE_KINDS = ("manual", "co-star", "xml", "cot", "self-consistency")
GENERATION_KINDS = ("cot", "self-consistency")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class VerbalizerSpec(Strict):
    """Label → label words, and how word scores combine into a label score."""

    name: str | None = None
    description: str = ""
    labels: dict[str, list[str]] = Field(description="label name → one or more label words")
    aggregate: Literal["mean", "max", "sum"] = Field(
        "mean", description="label score = log of the mean / max / sum of its words' probabilities")
    multi_token: Literal["mean", "sum", "first"] = Field(
        "mean", description="MLM: a word's score from the log-probs of its tokens at their masks")
    label_map: dict[str, str] = Field(
        default_factory=dict, description="raw data label (e.g. 0, 1) → label name")

    @field_validator("labels", mode="before")
    @classmethod
    def _words_as_lists(cls, value: Any) -> Any:
        if isinstance(value, dict):
            value = {str(k): ([v] if isinstance(v, (str, bool)) else v) for k, v in value.items()}
            for label, words in value.items():
                flags = [w for w in words if isinstance(w, bool)] if isinstance(words, list) else []
                if flags:  # YAML reads True/False as booleans: a surprise in "True or False?" prompts
                    raise ValueError(f"a label word of '{label}' was read by YAML as the boolean {flags[0]}; "
                                     f'quote it: ["{flags[0]}"]')
        return value

    @field_validator("labels")
    @classmethod
    def _check_labels(cls, labels: dict[str, list[str]]) -> dict[str, list[str]]:
        if len(labels) < 2:
            raise ValueError("a verbalizer needs at least two labels")
        cleaned = {}
        for label, words in labels.items():
            stripped = [w.strip() for w in words]
            if not stripped or any(not w for w in stripped):
                raise ValueError(f"label '{label}' needs at least one non-empty label word")
            if len(set(stripped)) != len(stripped):
                raise ValueError(f"label '{label}' lists the same word twice")
            cleaned[label] = stripped
        return cleaned

    @field_validator("label_map", mode="before")
    @classmethod
    def _keys_as_text(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {_raw_label_key(k): str(v) for k, v in value.items()}
        return value

    @field_validator("label_map")
    @classmethod
    def _map_targets_exist(cls, label_map: dict[str, str], info: ValidationInfo) -> dict[str, str]:
        labels = info.data.get("labels") or {}
        for raw, label in label_map.items():
            if labels and label not in labels:
                raise ValueError(f"label_map sends '{raw}' to '{label}', which is not a label "
                                 f"(labels: {', '.join(labels)})")
        return label_map


def _raw_label_key(value: Any) -> str:
    """Data labels may be ints, bools or strings; compare them as JSON-ish text."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _verbalizer_tag(value: Any) -> str:
    return "path" if isinstance(value, str) else "inline"


# A tagged union keeps pydantic from reporting both branches' errors for one mistake.
VerbalizerRef = Annotated[Union[Annotated[str, Tag("path")], Annotated[VerbalizerSpec, Tag("inline")]],
                          Discriminator(_verbalizer_tag)]
_UNION_TAGS = {"path", "inline"}


class ScoringSpec(Strict):
    normalize: Literal["none", "tokens", "chars", "pmi"] = Field(
        "none", description="causal: divide a continuation's log-likelihood by its tokens or characters, or "
                            "subtract its log-likelihood after the domain premise (pmi)")
    premise: str | None = Field(None, description="pmi: the domain premise (default: the template's own words "
                                                  "between the last data field and the slot)")
    calibrate: Literal["none", "contextual"] = Field(
        "none", description="contextual: divide by the label distribution of content-free inputs (Zhao et al., 2021)")
    content_free: list[str] = Field(default_factory=lambda: ["N/A", "", "{mask_token}"],
                                    description="content-free inputs; {mask_token} is the model's mask token")


class DemonstrationsSpec(Strict):
    """In-context examples drawn from a training file (`--train`)."""

    count: int = Field(4, ge=0, description="how many demonstrations in all")
    per_class: int | None = Field(None, ge=1, description="or: this many per label (overrides count)")
    select: Literal["random", "balanced", "first", "similar"] = Field(
        "balanced", description="random | balanced (round-robin over labels) | first | similar (TF-IDF nearest)")
    seed: int = 13
    text: str | None = Field(None, description="Jinja of one demonstration: the example's fields, `label`, "
                                               "`label_word` (= `mask`); default: the template with the slot filled")
    separator: str = "\n\n"


class DecodingSpec(Strict):
    """How reasoning is generated. Filters apply in the order top-k → top-p → temperature."""

    strategy: Literal["greedy", "sample"] = "greedy"
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


@dataclass(frozen=True)
class VerbalizerFile:
    spec: VerbalizerSpec
    path: Path | None  # None when inline in a template
    sha256: str


@dataclass(frozen=True)
class TemplateFile:
    spec: AnyTemplate
    path: Path
    sha256: str
    verbalizer: VerbalizerFile
    doc: YamlDoc

    @property
    def name(self) -> str:
        return self.spec.name or self.path.stem

    @property
    def kind(self) -> str:
        return self.spec.kind

    @property
    def generative(self) -> bool:
        return self.spec.kind in GENERATION_KINDS


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _known_fields() -> set[str]:
    models = (VerbalizerSpec, ScoringSpec, CoStarSections, DemonstrationsSpec, DecodingSpec, *_KIND_MODELS.values())
    return {name for model in models for name in model.model_fields}


def _spec_error(exc: ValidationError, doc: YamlDoc, strip_tag: bool = False) -> SpecError:
    """Turn pydantic's errors into one SpecError that names field paths and YAML lines."""
    problems: list[tuple[int, int, str | None, str]] = []
    for err in exc.errors():
        loc = tuple(err["loc"][1:] if strip_tag and err["loc"] else err["loc"])
        # union branch names are pydantic's bookkeeping, not keys the user wrote
        loc = tuple(p for i, p in enumerate(loc) if not (i and loc[i - 1] == "verbalizer" and p in _UNION_TAGS))
        field = ".".join(str(p) for p in loc) or None
        line, column = doc.locate(loc)
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            close = difflib.get_close_matches(str(loc[-1]), sorted(_known_fields()), n=1)
            message = "unknown field" + (f" (did you mean '{close[0]}'?)" if close else "")
        elif err["type"] == "missing":
            message = "required field is missing"
        problems.append((line, column, field, message))
    line, column, field, message = problems[0]
    if len(problems) > 1:
        message = f"{len(problems)} problems:\n    " + "\n    ".join(
            f"line {ln}: {fd + ': ' if fd else ''}{msg}" for ln, _, fd, msg in problems)
        field = None
    return SpecError(message, path=str(doc.path), line=line, column=column, field=field)


def load_verbalizer(path: str | Path) -> VerbalizerFile:
    """Load and validate a verbalizer YAML file."""
    doc = load_yaml(path)
    try:
        spec = VerbalizerSpec.model_validate(doc.data)
    except ValidationError as exc:
        raise _spec_error(exc, doc) from None
    return VerbalizerFile(spec=spec, path=doc.path, sha256=_digest(doc.path.read_bytes()))


def load_template(path: str | Path, verbalizer: str | Path | None = None) -> TemplateFile:
    """Load a template file and its verbalizer (a path relative to the template, or inline).

    `verbalizer` overrides the one the template names.
    """
    doc = load_yaml(path)
    kind = doc.data.get("kind")
    if kind is None:
        raise SpecError(f"required field is missing (one of: {', '.join(TEMPLATE_KINDS)})",
                        path=str(doc.path), line=1, field="kind")
    if kind not in _KIND_MODELS:
        line, column = doc.locate(("kind",))
        raise SpecError(f"unknown kind '{kind}' (one of: {', '.join(_KIND_MODELS)})",
                        path=str(doc.path), line=line, column=column, field="kind")
    try:
        spec = _TEMPLATE_ADAPTER.validate_python(doc.data)
    except ValidationError as exc:
        raise _spec_error(exc, doc, strip_tag=True) from None

    if verbalizer is not None:
        vfile = load_verbalizer(verbalizer)
    elif isinstance(spec.verbalizer, str):
        vpath = (doc.path.parent / spec.verbalizer)
        if not vpath.is_file():
            line, column = doc.locate(("verbalizer",))
            raise SpecError(f"verbalizer file not found: {vpath}", path=str(doc.path), line=line,
                            column=column, field="verbalizer",
                            hint="the path is relative to the template file")
        vfile = load_verbalizer(vpath)
    else:
        canonical = json.dumps(spec.verbalizer.model_dump(), sort_keys=True).encode()
        vfile = VerbalizerFile(spec=spec.verbalizer, path=None, sha256=_digest(canonical))
    return TemplateFile(spec=spec, path=doc.path, sha256=_digest(doc.path.read_bytes()), verbalizer=vfile, doc=doc)


def spec_kind_of(path: str | Path) -> Literal["template", "verbalizer"]:
    """Tell a template file from a verbalizer file by its keys (for `validate DIR`)."""
    doc = load_yaml(path)
    return "template" if "kind" in doc.data or "text" in doc.data else "verbalizer"
