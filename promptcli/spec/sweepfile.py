"""A sweep file: the data, the axes of the variants, the options every variant shares, how to rank.

The shared `options` are exactly `RunConfig`'s options that are not axes (generated from it, so
a run option is never missing from sweeps); axis values are checked against the same `Literal`s.
"""
from __future__ import annotations

import glob
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, ValidationError, create_model

from ..errors import SpecError
from .loading import spec_error
from .options import Calibrate, Correction, Metric, Normalize, Parallel
from .runconfig import RunConfig
from .verbalizer import Strict
from .yamlfile import load_yaml

AXES = ("template", "verbalizer", "model", "shots", "seed", "normalize", "calibrate")
# a sweep names these itself (axes, data and training rows); a soft prompt belongs to one template
NOT_SHARED = (*AXES, "data", "train", "soft_prompt", "force")

SweepOptions = create_model(
    "SweepOptions", __base__=Strict, __doc__="The run options every variant of a sweep shares.",
    **{name: (field.annotation, field) for name, field in RunConfig.model_fields.items() if name not in NOT_SHARED})


class SweepSpec(Strict):
    """A sweep file: the data, the axes, and how to rank. Paths are relative to the file."""

    name: str | None = None
    data: str  # the rows variants are ranked on (the selection split)
    report_on: str | None = Field(None, description="rows the first-ranked variant is evaluated on once, after the "
                                                    "ranking (the report split)")
    train: str | None = None
    templates: list[str] = Field(min_length=1, description="template files (globs allowed)")
    verbalizers: list[str | None] = [None]  # None: each template's own
    models: list[str] = Field(min_length=1)
    shots: list[Annotated[int, Field(ge=0)] | None] = [None]  # None: the template's
    seeds: list[int | None] = [None]
    normalize: list[Normalize | None] = [None]
    calibrate: list[Calibrate | None] = [None]
    ensemble: bool = False
    weighted: bool = Field(False, description="weight ensemble members by their accuracy")
    metric: Metric = "accuracy"
    correction: Correction = Field("holm", description="multiple comparisons with the best: holm, bh or none")
    parallel: Parallel = Field("auto", description="with several processes (torchrun, accelerate launch): rows "
                                                   "(each variant's rows shared out), variants (each process takes "
                                                   "whole variants) or auto (variants when there are at least twice "
                                                   "as many as processes)")
    adaptive: int | None = Field(None, ge=2, description="first score every variant on a seeded sample of this "
                                                         "many rows; only those not significantly worse than the "
                                                         "best there run on all rows")
    show: str | None = Field(None, description="a variant whose confusion matrix the report shows beside the best's")
    options: SweepOptions = SweepOptions()  # type: ignore[valid-type]


def load_sweep(path: str | Path) -> SweepSpec:
    """Read a sweep file; its paths become relative to the working folder, its globs are expanded."""
    doc = load_yaml(path)
    try:
        spec = SweepSpec.model_validate(doc.data)
    except ValidationError as exc:
        raise spec_error(exc, doc, models=(SweepSpec, SweepOptions)) from None
    base = doc.path.parent

    def resolve(p: str | None) -> str | None:
        return None if p is None else str(p) if Path(p).is_absolute() else str(base / p)

    templates = []
    for pattern in spec.templates:
        found = sorted(glob.glob(resolve(pattern)))
        if not found:
            line, column = doc.locate(("templates",))
            raise SpecError(f"no template file matches '{pattern}'", path=str(doc.path), line=line, column=column,
                            field="templates")
        templates += found
    models = [m if not (base / m).exists() else str(base / m) for m in spec.models]
    return spec.model_copy(update={"data": resolve(spec.data), "train": resolve(spec.train),
                                   "report_on": resolve(spec.report_on), "templates": templates,
                                   "verbalizers": [resolve(v) for v in spec.verbalizers], "models": models})


def shared_options(spec: SweepSpec) -> dict[str, Any]:
    """The options to pass to every variant's run."""
    return spec.options.model_dump()
