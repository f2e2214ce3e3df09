"""A run's options, validated once, and the scoring they resolve to with a template.

`RunConfig` is what `promptcli run` and `promptcli.run(...)` accept (and run.json stores);
`ScoringConfig` is the template's scoring defaults with the run's overrides applied, read by
the fit check, the predictor and the trainer alike, so no two places merge them differently.
"""
from __future__ import annotations

from typing import Any, Mapping

from pydantic import BaseModel, Field, ValidationError

from ..errors import OptionError, RunError
from .options import (DEFAULT_BATCH_SIZE, Aggregate, Calibrate, DataFormat, Device, DeviceMap, Dtype, MultiToken,
                      Normalize,
                      PathText, Rows, Scorer, Strategy)
from .template import AnyTemplate
from .verbalizer import Strict, VerbalizerSpec


class RunConfig(Strict):
    """Everything that decides a run's predictions (stored in run.json, reused by --resume)."""

    template: PathText
    data: PathText
    model: PathText | None = None
    verbalizer: PathText | None = None
    scorer: Scorer = "auto"
    device: Device = "auto"
    dtype: Dtype = "auto"
    device_map: DeviceMap | None = None  # one model split over this process's GPUs (accelerate's big-model loading)
    batch_size: int = Field(DEFAULT_BATCH_SIZE, ge=1)
    max_length: int | None = Field(None, ge=1)
    normalize: Normalize | None = None  # None: the template's
    calibrate: Calibrate | None = None
    label_field: str | None = None
    data_format: DataFormat | None = None
    skip_invalid: bool = False
    limit: int | None = Field(None, ge=1)
    subsample: int | None = Field(None, ge=1)  # a seeded sample of this many rows, stratified by label
    subsample_from: int | None = Field(None, ge=1)  # draw the subsample from a first such sample of this many rows
    rows: Rows | None = None  # a range of row numbers, "200:300"
    trust_remote_code: bool = False
    seed: int | None = None  # demonstrations and sampling; default: the template's demonstration seed, 0 for sampling
    train: PathText | None = None  # where demonstrations come from
    shots: int | None = Field(None, ge=0)  # overrides the template's demonstration count
    samples: int | None = Field(None, ge=1)  # self-consistency: overrides the template's number of paths
    prefix_cache: bool = True  # causal: compute the prompt prefix shared by all examples once
    # decoding overrides for cot / self-consistency (None: the template's)
    strategy: Strategy | None = None
    temperature: float | None = Field(None, gt=0)
    top_k: int | None = Field(None, ge=1)
    top_p: float | None = Field(None, gt=0, le=1)
    max_new_tokens: int | None = Field(None, ge=1)
    soft_prompt: PathText | None = None  # a folder written by `promptcli tune`
    force: bool = False  # use a soft prompt trained for another model or template version


# Options that never change a prediction (scores do not depend on batching, device placement or the
# shared-prefix cache beyond float rounding), so `--resume` may change them; every other option given
# with --resume must equal the stored run's.
RESUMABLE = ("device", "device_map", "batch_size", "prefix_cache")


def checked(model: type[BaseModel], values: Mapping[str, Any], what: str = "option") -> Any:
    """Validate options into `model`; a bad one is a RunError naming it and what it accepts."""
    try:
        return model(**values)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            name = ".".join(str(p) for p in err["loc"])
            if err["type"] == "extra_forbidden":
                problems.append(f"unknown {what} '{name}'")
            elif err["type"] == "literal_error":
                allowed = err["ctx"]["expected"].replace("'", "").replace(" or ", ", ")
                problems.append(f"{what} {name}={err['input']!r} is not one of: {allowed}")
            else:
                message = err["msg"].removeprefix("Value error, ")
                if name:
                    message = f"{what} {name}={err.get('input')!r}{' ' if message.startswith('is ') else ': '}{message}"
                problems.append(message)  # without a name: a rule about several options, its message names them
        raise OptionError("; ".join(problems)) from None


def resumed_config(stored: Mapping[str, Any], given: Mapping[str, Any], path: str, model: type[BaseModel] = RunConfig,
                   resumable: tuple[str, ...] = RESUMABLE) -> Any:
    """The one resume rule (run and tune): the stored options, with `resumable` ones replaced when given; any
    other option given (not None) must equal the stored value."""
    base = checked(model, stored)
    given = {k: v for k, v in given.items() if v is not None}
    merged = checked(model, {**base.model_dump(), **given})  # unknown or invalid options are errors first
    conflicts = [f"{k}: run has {getattr(base, k)!r}, now {getattr(merged, k)!r}" for k in given
                 if k not in resumable and getattr(base, k) != getattr(merged, k)]
    if conflicts:
        raise RunError("--resume continues a run with its own settings; these differ:\n    " + "\n    ".join(conflicts),
                       path=path, hint="drop those options, or start a new run with --out")
    return base.model_copy(update={k: getattr(merged, k) for k in given if k in resumable})


class ScoringConfig(Strict):
    """How label scores are computed, resolved once: run option > soft prompt's training > template."""

    normalize: Normalize = "none"
    calibrate: Calibrate = "none"
    content_free: tuple[str, ...] = ("N/A", "", "{mask_token}")
    premise: str | None = None
    multi_token: MultiToken = "mean"
    aggregate: Aggregate = "mean"
    batch_size: int = DEFAULT_BATCH_SIZE
    prefix_cache: bool = True

    @property
    def continuation_normalize(self) -> str:
        """What the causal scorer divides by: PMI is a difference of two unnormalised scores."""
        return "none" if self.normalize == "pmi" else self.normalize


def resolve_scoring(template: AnyTemplate, verbalizer: VerbalizerSpec, config: RunConfig | None = None,
                    trained: Mapping[str, str] | None = None) -> ScoringConfig:
    """The template's scoring with the run's overrides; `trained` (a soft prompt's training scoring) sits
    between the two, so a tuned prompt is evaluated as it was trained unless the run says otherwise."""
    spec = template.scoring
    layers = [{"normalize": spec.normalize, "calibrate": spec.calibrate}, dict(trained or {})]
    if config is not None:
        layers.append({"normalize": config.normalize, "calibrate": config.calibrate})
    chosen = {key: next(layer[key] for layer in reversed(layers) if layer.get(key) is not None)
              for key in ("normalize", "calibrate")}
    return ScoringConfig(**chosen, content_free=tuple(spec.content_free), premise=spec.premise,
                         multi_token=verbalizer.multi_token, aggregate=verbalizer.aggregate,
                         batch_size=config.batch_size if config else DEFAULT_BATCH_SIZE,
                         prefix_cache=config.prefix_cache if config else True)

