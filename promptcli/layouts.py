"""How each template kind lays its sections out as one Jinja text.

A kind is only a layout: every kind compiles down to a single Jinja source with one
`{{ mask }}` answer slot, so rendering and scoring never branch on the kind.
"""
from __future__ import annotations

from dataclasses import dataclass

from .spec import CoStarTemplate, ManualTemplate, XmlTemplate

COSTAR_ORDER = ("context", "objective", "style", "tone", "audience", "response")
DELIMITER = "#############"


@dataclass(frozen=True)
class Piece:
    """A fragment of the final source: Jinja written by the user (with its field path), or fixed layout text."""

    text: str
    loc: tuple[str, ...] | None = None  # None for layout text written by promptcli

    @property
    def user_written(self) -> bool:
        return self.loc is not None


def layout(spec: ManualTemplate | CoStarTemplate | XmlTemplate) -> list[Piece]:
    """The pieces of a template's Jinja source, in order."""
    if isinstance(spec, ManualTemplate):
        return [Piece(spec.text, ("text",))]
    if isinstance(spec, CoStarTemplate):
        pieces = []
        for name in COSTAR_ORDER:
            text = getattr(spec.sections, name)
            if text:
                pieces += [Piece(f"# {name.upper()} #\n"), Piece(text.strip(), ("sections", name)), Piece("\n\n")]
        pieces += [Piece(f"{DELIMITER}\n# {spec.input_name.upper()} #\n"), Piece(spec.input.strip(), ("input",)),
                   Piece(f"\n{DELIMITER}\n\n"), Piece(spec.answer.strip(), ("answer",))]
        return pieces
    if isinstance(spec, XmlTemplate):
        pieces = []
        for tag, text in spec.sections.items():
            pieces += [Piece(f"<{tag}>\n"), Piece(text.strip(), ("sections", tag)), Piece(f"\n</{tag}>\n")]
        pieces += [Piece(f"<{spec.input_tag}>\n"), Piece(spec.input.strip(), ("input",)),
                   Piece(f"\n</{spec.input_tag}>\n"), Piece(spec.answer.strip(), ("answer",))]
        return pieces
    raise TypeError(f"no layout for {type(spec).__name__}")
