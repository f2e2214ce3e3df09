"""Loading template and verbalizer files into validated specs, with errors that name file, line and field."""
from __future__ import annotations

import difflib
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ValidationError

from ..errors import SpecError
from .template import (_KIND_MODELS, _TEMPLATE_ADAPTER, GENERATION_KINDS, TEMPLATE_KINDS, AnyTemplate, CoStarSections,
                       DecodingSpec, DemonstrationsSpec, ScoringSpec)
from .verbalizer import _UNION_TAGS, VerbalizerSpec
from .yamlfile import YamlDoc, load_yaml


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


SPEC_MODELS = (VerbalizerSpec, ScoringSpec, CoStarSections, DemonstrationsSpec, DecodingSpec, *_KIND_MODELS.values())


def spec_error(exc: ValidationError, doc: YamlDoc, *, strip_tag: bool = False,
               models: tuple[type[BaseModel], ...] = SPEC_MODELS) -> SpecError:
    """Turn pydantic's errors into one SpecError that names field paths and YAML lines; an unknown
    key gets the closest field name of `models` as a suggestion."""
    known = sorted({name for model in models for name in model.model_fields})
    problems: list[tuple[int, int, str | None, str]] = []
    for err in exc.errors():
        loc = tuple(err["loc"][1:] if strip_tag and err["loc"] else err["loc"])
        # union branch names are pydantic's bookkeeping, not keys the user wrote
        loc = tuple(p for i, p in enumerate(loc) if not (i and loc[i - 1] == "verbalizer" and p in _UNION_TAGS))
        field = ".".join(str(p) for p in loc) or None
        line, column = doc.locate(loc)
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            close = difflib.get_close_matches(str(loc[-1]), known, n=1)
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
        raise spec_error(exc, doc) from None
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
        raise spec_error(exc, doc, strip_tag=True) from None

    if verbalizer is not None:
        vfile = load_verbalizer(verbalizer)
    elif isinstance(spec.verbalizer, str):
        vpath = (doc.path.parent / spec.verbalizer)
        line, column = doc.locate(("verbalizer",))
        if vpath.suffix.lower() not in (".yaml", ".yml"):  # never read /etc/passwd or /proc/... to find out
            raise SpecError(f"a verbalizer is a .yaml file, not '{spec.verbalizer}'", path=str(doc.path), line=line,
                            column=column, field="verbalizer")
        if not vpath.is_file():
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
