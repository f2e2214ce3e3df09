"""A verbalizer file: label → label words, and how word scores combine into a label score."""
from __future__ import annotations

import unicodedata
from typing import Annotated, Any, Union

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, ValidationInfo, field_validator

from .options import Aggregate, MultiToken


def visible(word: str) -> str:
    """The word without surrounding whitespace and invisible format characters (zero-width spaces, BOMs):
    a word made of them only is empty."""
    edges = [i for i, c in enumerate(word) if not (c.isspace() or unicodedata.category(c) == "Cf")]
    return word[edges[0]:edges[-1] + 1] if edges else ""


class Strict(BaseModel):
    """Every user-written file: unknown keys are errors (a typo names its field), values are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class VerbalizerSpec(Strict):
    """Label → label words, and how word scores combine into a label score."""

    name: str | None = None
    description: str = ""
    labels: dict[str, list[str]] = Field(description="label name → one or more label words")
    aggregate: Aggregate = Field(
        "mean", description="label score = log of the mean / max / sum of its words' probabilities")
    multi_token: MultiToken = Field(
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
            stripped = [visible(w) for w in words]
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
