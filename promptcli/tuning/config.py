"""What `tune` is asked to do (validated: an unknown optimizer or schedule is an error, never a fallback),
where training stands (`TrainState`, for checkpoints), and what a saved soft prompt records (`Manifest`)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from pydantic import Field, model_validator

from ..spec.options import (Calibrate, Device, EncoderKind, Init, Normalize, Optimizer, PathText, Precision, Rows,
                            Schedule, TuneMethod)
from ..spec.verbalizer import Strict


class TuneConfig(Strict):
    template: PathText
    train: PathText
    model: PathText | None = None
    dev: PathText | None = None
    verbalizer: PathText | None = None
    virtual_tokens: int = Field(20, ge=1)
    method: TuneMethod = "prompt"  # prompt: the embeddings train; p-tuning: a prompt encoder produces them;
    # prefix: key/value prefixes at every layer
    encoder: EncoderKind = "mlp"  # p-tuning's encoder
    prefix_projection: bool = False  # prefix: the table is an MLP's output during training (Li & Liang)
    encoder_hidden: int | None = Field(None, ge=1)  # the encoder's or projection's width (None: its input width)
    init: Init = "random"
    init_text: str | None = None
    epochs: int = Field(30, ge=1)
    lr: float = Field(3e-2, ge=0)
    optimizer: Optimizer = "adamw"
    weight_decay: float = Field(0.0, ge=0)
    schedule: Schedule = "linear"
    warmup: int = Field(0, ge=0)  # optimizer steps
    max_grad_norm: float = Field(1.0, ge=0)
    accumulation: int = Field(1, ge=1)
    batch_size: int = Field(8, ge=1)
    max_steps: int | None = Field(None, ge=1)  # stop after this many optimizer steps (None: all the epochs)
    eval_every: int | None = Field(None, ge=0)  # optimizer steps; 0: once per epoch; None: about ten evaluations
    patience: int | None = Field(None, ge=1)  # evaluations without improvement before stopping early
    seed: int = 42
    precision: Precision = "fp32"
    gradient_checkpointing: bool = False
    device: Device = "auto"
    max_length: int | None = Field(None, ge=1)
    label_field: str | None = None
    limit: int | None = Field(None, ge=1)
    dev_subsample: int | None = Field(None, ge=1)  # a seeded (0), label-stratified sample of the dev rows
    dev_rows: Rows | None = None  # a range of dev row numbers, "200:300"
    # scoring the prompt is trained with (None: the template's), recorded so `run` evaluates it the same way
    normalize: Normalize | None = None
    calibrate: Calibrate | None = None
    shots: int | None = Field(None, ge=0)  # demonstrations per prompt (None: the template's), drawn from --train

    @model_validator(mode="after")
    def _projection_is_for_prefixes(self) -> "TuneConfig":
        if self.prefix_projection and self.method != "prefix":
            raise ValueError(f"--prefix-projection is for --method prefix, not {self.method} (P-tuning's encoder is "
                             "--encoder)")
        return self


@dataclass
class TrainState:
    """Where training stands; saved with every checkpoint so `--resume` continues exactly."""

    step: int = 0
    epoch: int = 0
    batch: int = 0  # the next batch of the current epoch
    best: float | None = None  # best dev accuracy so far
    bad_evals: int = 0
    curve: list[dict[str, Any]] = field(default_factory=list)  # step, epoch, train_loss, dev_accuracy
    seconds: float = 0.0  # training time, evaluations excluded
    stopped_early: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Manifest:
    """promptcli_soft_prompt.json: the model, template, verbalizer and data a prompt belongs to, and how it
    was trained (`scoring` is what `run --soft-prompt` evaluates it with by default)."""

    placement: str  # prefix | slots
    scoring: dict[str, str]
    model: dict[str, Any]
    template: dict[str, str]
    verbalizer: dict[str, str]
    data: dict[str, str | None]
    hyperparameters: dict[str, Any]
    parameters: dict[str, int]
    training: dict[str, Any]
    dev_curve: list[dict[str, Any]]
    versions: dict[str, str]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
