"""The extra inputs behind calibration and PMI, built from the template itself (the arithmetic is in
`scoring/labels.py`).

- Contextual calibration (Zhao et al., 2021): content-free inputs ("N/A", "", the mask token)
  go through the same template and demonstrations; their mean label distribution p_cf
  estimates the prompt's bias.
- Domain-conditional PMI (Holtzman et al., 2021), causal models: the domain premise, by default
  the template's own words between the last data field and the slot.
"""
from __future__ import annotations

from typing import Sequence

from ..progress import warn
from ..prompt.encode import Encoded
from ..prompt.render import Prompt
from ..spec.data import Example
from ..spec.template import FIELD  # stands for every data field when the template's own words are needed
from .inputs import Prepared

EXTREME = 0.01  # a content-free probability below this is divided into a huge boost for its label


def content_free_inputs(prepared: Prepared) -> list[Encoded]:
    """The template (and its demonstrations) with every field set to each content-free string."""
    mask = prepared.info.tokenizer.mask_token
    encoded = []
    for text in prepared.scoring.content_free:
        if "{mask_token}" in text:
            if mask is None:
                continue  # causal models have no mask token
            text = text.replace("{mask_token}", mask)
        fields = {f: text for f in prepared.renderer.fields}
        encoded.append(prepared.encoder.encode(Example(index=-1, line=0, fields=fields, gold=None),
                                               f"content-free input {text!r}"))
    return encoded


def default_premise(prepared: Prepared) -> str:
    """The template's words between the last data field and the slot ('It was ', 'Sentiment: ')."""
    prompt = prepared.renderer.render({f: FIELD for f in prepared.renderer.fields})
    return prompt.prefix.rsplit(FIELD, 1)[-1].lstrip()


def premise_input(prepared: Prepared) -> Encoded | None:
    """PMI only: the premise followed by the slot and the template's text after it."""
    if prepared.scoring.normalize != "pmi":
        return None
    premise = prepared.scoring.premise
    premise = premise if premise is not None else default_premise(prepared)
    suffix = prepared.renderer.render({f: FIELD for f in prepared.renderer.fields}).suffix
    return prepared.encoder.split(Prompt(prefix=premise, suffix=suffix))


def calibration_inputs(prepared: Prepared) -> tuple[Encoded | None, list[Encoded]]:
    """The premise (PMI) and the content-free inputs (contextual calibration) this run's scoring needs."""
    content_free = content_free_inputs(prepared) if prepared.scoring.calibrate == "contextual" else []
    return premise_input(prepared), content_free


def warn_if_extreme(labels: Sequence[str], p_cf: Sequence[float]) -> None:
    """Calibration divides by p_cf: a label the prompt almost never gives gets inflated for every example."""
    low = [f"{label} {p:.2%}" for label, p in zip(labels, p_cf) if p < EXTREME]
    if low:
        warn(f"contextual calibration: the content-free inputs give {', '.join(low)} (under {EXTREME:.0%}); "
             "dividing by so small a probability inflates that label for every example. Compare with "
             "--calibrate none, or reword the prompt or the label words")
