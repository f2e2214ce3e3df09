"""`validate`: check template and verbalizer files (and, with a model, their tokenisation)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import PromptcliError
from ..models.info import ModelInfo, load_info
from ..prompt.encode import make_encoder
from ..prompt.render import Renderer
from ..prompt.tokens import Segmenter
from ..prompt.verbalizer import Verbalizer
from ..spec.loading import load_template, load_verbalizer, spec_kind_of
from ..spec.runconfig import resolve_scoring
from .inputs import check_model_fits, length_note

PROBE_VALUE = "an example input"


@dataclass(frozen=True)
class Finding:
    path: str
    kind: str  # template | verbalizer | ?
    status: str  # ok | error | n/a (the file is fine but does not apply to this model: a chat template, …)
    message: str

    @property
    def ok(self) -> bool:
        return self.status != "error"


def spec_files(paths: list[str]) -> list[Path]:
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found += sorted(p for p in path.rglob("*") if p.suffix in (".yaml", ".yml"))
        else:
            found.append(path)
    return found


def check_file(path: Path, info: ModelInfo | None) -> Finding:
    kind = "?"
    try:
        kind = spec_kind_of(path)
        if kind == "verbalizer":
            verb = Verbalizer(load_verbalizer(path))
            if info is not None:  # a verbalizer alone: check the usual context, a word after a space
                verb.table(Segmenter(info.tokenizer), "x", " ")
            return Finding(str(path), kind, "ok", verb.describe())
        template = load_template(path)
        renderer = Renderer(template)
        verb = Verbalizer(template.verbalizer)
        probe = {f: PROBE_VALUE for f in renderer.fields}
        renderer.render(probe, where=str(path))
        message = f"{template.kind}; fields: {', '.join(renderer.fields) or 'none'}; labels: {verb.describe()}"
        if info is not None:
            scoring = resolve_scoring(template.spec, template.verbalizer.spec)
            try:
                check_model_fits(template, info, scoring)
                encoder = make_encoder(renderer, verb, info)
            except PromptcliError as exc:
                return Finding(str(path), kind, "n/a", f"does not apply to {info.name}: {exc.message}")
            encoded = encoder.split(encoder.prompt(probe, [], str(path)), slot=not template.generative)
            message += f"; {info.kind}: {len(encoded.context)} prompt tokens"
            if encoded.words.ids:
                message += f", label words of {sorted({len(i) for i in encoded.words.ids})} tokens"
                note = length_note(encoded, info.kind, scoring.normalize)
                message += f"; note: {note}" if note else ""
        return Finding(str(path), kind, "ok", message)
    except PromptcliError as exc:
        return Finding(str(path), kind, "error", str(exc))


def validate_paths(paths: list[str], model: str | None = None, scorer: str = "auto",
                   trust_remote_code: bool = False) -> list[Finding]:
    info = load_info(model, scorer=scorer, trust_remote_code=trust_remote_code) if model else None
    files = spec_files(paths)
    if not files:
        return [Finding(", ".join(paths), "?", "error", "no .yaml files found")]
    return [check_file(path, info) for path in files]
