"""Terms computed once per template × model that correct every example's scores.

- Contextual calibration (Zhao et al., 2021): content-free inputs ("N/A", "", the mask token)
  go through the same template and demonstrations; their mean label distribution p_cf
  estimates the prompt's bias, and each example's distribution becomes p / p_cf, renormalised.
- Domain-conditional PMI (Holtzman et al., 2021), causal models: a label word's score is its
  log-likelihood after the example's context minus its log-likelihood after a short domain
  premise (by default the template's own words between the last data field and the slot).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import torch

from .data import Example
from .encode import Encoded
from .rendering import Prompt

if TYPE_CHECKING:
    from .runner import Prepared

FIELD = "\ue001"  # stands for every data field when the template's own words are needed


def content_free_inputs(prepared: Prepared, strings: Sequence[str]) -> list[Encoded]:
    """The template (and its demonstrations) with every field set to each content-free string."""
    mask = prepared.info.tokenizer.mask_token
    encoded = []
    for text in strings:
        if "{mask_token}" in text:
            if mask is None:
                continue  # causal models have no mask token
            text = text.replace("{mask_token}", mask)
        fields = {f: text for f in prepared.renderer.fields}
        encoded.append(prepared.encoder.encode(Example(index=-1, line=0, fields=fields, gold=None),
                                               f"content-free input {text!r}"))
    return encoded


def calibrate(log_probs: torch.Tensor, p_cf: torch.Tensor) -> torch.Tensor:
    """(B, L) label log-probs divided by the content-free distribution (L,), renormalised."""
    return (log_probs - p_cf.log().to(log_probs)).log_softmax(-1)


def default_premise(prepared: Prepared) -> str:
    """The template's words between the last data field and the slot ('It was ', 'Sentiment: ')."""
    prompt = prepared.renderer.render({f: FIELD for f in prepared.renderer.fields})
    return prompt.prefix.rsplit(FIELD, 1)[-1].lstrip()


def premise_input(prepared: Prepared) -> Encoded:
    """The premise followed by the slot and the template's text after it."""
    spec = prepared.template.spec.scoring
    premise = spec.premise if spec.premise is not None else default_premise(prepared)
    suffix = prepared.renderer.render({f: FIELD for f in prepared.renderer.fields}).suffix
    return prepared.encoder.split(Prompt(prefix=premise, suffix=suffix))
