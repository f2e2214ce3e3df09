"""`promptcli tune`: learn a soft prompt while every model weight stays frozen.

`tune()` sets up (config, model, the prompt's places in the encoded rows, initial embeddings),
hands the loop to `Trainer.fit`, checks that no model weight moved, and saves what was trained.
Demonstrations, when the template asks for them, are drawn from the training rows (never a row
for itself), so few-shot templates tune as they run.
"""
from __future__ import annotations

import math
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import torch

from ..errors import RunError
from ..files import read_json, write_json
from ..evaluation.inputs import Prepared, model_name, prepare
from ..evaluation.outputs import prepare_new
from ..models.info import ModelInfo, load_info
from ..models.processes import Processes
from ..models.weights import LoadedModel, load_model
from ..progress import new_progress
from ..prompt.reparam import PrefixProjection, PromptEncoder
from ..prompt.soft import KvPrefix, SoftPrompt, kv_shape, peft_config, prefix_peft_config
from ..spec.loading import load_template
from ..spec.runconfig import RunConfig, checked, resumed_config
from ..versions import peak_memory_mb, versions
from .checkpoint import CONFIG, remove_checkpoint
from .config import Manifest, TrainState, TuneConfig
from .trainer import Trainer, initial_embeddings, initial_prefix, parameters_sha256


@dataclass
class TuneResult:
    out_dir: Path
    initial_dev_accuracy: float | None
    best_dev_accuracy: float | None
    curve: list[dict]
    manifest: Manifest


def tune(template: str | Path | None = None, train: str | Path | None = None, model: str | None = None, *,
         out: str | Path | None = None, dev: str | Path | None = None, resume: bool | str | Path = False,
         progress: bool = True, **options: Any) -> TuneResult:
    """Train a soft prompt (options: TuneConfig fields, checked) and save it to `out`.

    `resume=DIR` continues the interrupted tune in DIR with the options it started with (given ones must
    match, except device); `resume=True` with `out=DIR` is the same.
    """
    given = {"template": template, "train": train, "model": model, "dev": dev, **options}
    if resume:
        out_dir = (Path(out) if out else None) if resume is True else Path(resume)
        if out_dir is None or not (out_dir / CONFIG).is_file():
            raise RunError("nothing to resume in this folder (no interrupted tune started here)",
                           path=str(out_dir or "."), hint="give the --out folder of the interrupted tune")
        config = resumed_config(read_json(out_dir / CONFIG), given, str(out_dir / CONFIG), TuneConfig, ("device",))
    else:
        if template is None or train is None:
            raise RunError("a template and training data are needed (or --resume DIR)")
        config = checked(TuneConfig, {k: v for k, v in given.items() if v is not None})
        out_dir = Path(out) if out else Path("runs") / f"tune-{Path(config.template).stem}-{datetime.now():%Y%m%d-%H%M%S}"
    processes = Processes.current()
    device = processes.device(config.device)
    tfile = load_template(config.template, config.verbalizer)
    if tfile.generative:
        raise RunError(f"a '{tfile.kind}' template generates its answer; tune learns prompts for scored templates "
                       "(manual, co-star, xml)", path=str(tfile.path))
    name = model_name(tfile, config.model)
    info = load_info(name, max_length=config.max_length)
    loaded = load_model(info, device=device, dtype="float32")
    if config.virtual_tokens >= info.max_length:
        raise RunError(f"--virtual-tokens {config.virtual_tokens} leaves no room for the prompt in the model's "
                       f"{info.max_length} tokens")
    hidden = loaded.model.get_input_embeddings().embedding_dim
    shape = kv_shape(info.config) if config.method == "prefix" else None
    width = 2 * math.prod(shape) if shape else hidden  # a key/value table row: layers × (keys, values) × kv width
    zeros = torch.zeros(config.virtual_tokens, width)  # the prompt's size is all encoding needs
    places = KvPrefix(zeros, shape) if shape else SoftPrompt(zeros)
    train_set = _prepared(config, name, config.train, places, device, loaded)
    if not train_set.dataset.labeled:
        raise RunError("the training data has no labels", path=config.train)
    dev_set = (_prepared(config, name, config.dev, places, device, loaded, subsample=config.dev_subsample,
                         rows=config.dev_rows) if config.dev else None)
    placement = "slots" if train_set.renderer.soft_slots else "prefix"
    if shape:
        placement = "kv"
        projection = (PrefixProjection(config.virtual_tokens, shape[1] * shape[2], width, config.encoder_hidden,
                                       config.seed) if config.prefix_projection else None)
        table = None if projection else initial_prefix(config, loaded, train_set)
        prompt = KvPrefix(table, shape, projection=projection).to(loaded.device)
    else:
        initial = initial_embeddings(config, loaded, train_set)
        encoder = (PromptEncoder(initial, config.encoder, config.encoder_hidden, config.seed)
                   if config.method == "p-tuning" else None)
        prompt = SoftPrompt(initial, {"placement": placement}, encoder).to(loaded.device)
    trainer = Trainer(config, loaded, prompt, train_set, dev_set, processes)

    if config.gradient_checkpointing:  # HF checkpointing is active in train mode only (which enables dropout)
        loaded.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        loaded.model.train()
    if not resume and processes.main:  # written once everything is checked, so a refused tune leaves no folder
        prepare_new(out_dir)
        write_json(out_dir / CONFIG, config.model_dump())
    frozen_before = parameters_sha256(loaded.model)
    display = new_progress() if progress and processes.main else None
    try:
        with prompt.attached(loaded.model), (display or nullcontext()):
            state, best = trainer.fit(out_dir, resume, display)
    except KeyboardInterrupt as exc:
        exc.resume = f"promptcli tune --resume {out_dir}"
        raise
    loaded.model.eval()
    if parameters_sha256(loaded.model) != frozen_before:
        raise RuntimeError("a model parameter changed during tuning; this is a bug in promptcli")
    manifest = _manifest(config, info, train_set, dev_set, state, prompt, frozen_before, loaded, placement, processes.world)
    if processes.main:
        adapter = (prefix_peft_config(config.virtual_tokens, info.path, info.kind, info.config, prompt.encoder)
                   if shape else
                   peft_config(config.virtual_tokens, hidden, info.path, info.kind, info.config, prompt.encoder))
        SoftPrompt(best, manifest.to_dict()).save(out_dir, manifest.to_dict(), adapter)
        remove_checkpoint(out_dir)
    curve = state.curve
    return TuneResult(out_dir=out_dir, initial_dev_accuracy=curve[0]["dev_accuracy"] if curve else None,
                      best_dev_accuracy=state.best, curve=curve, manifest=manifest)


def _prepared(config: TuneConfig, model: str, data: str, places: SoftPrompt, device: str, loaded: LoadedModel,
              subsample: int | None = None, rows: str | None = None) -> Prepared:
    """Rows encoded as `run` encodes them, with the prompt's places, the tune's scoring and demonstrations
    from the training rows."""
    run_config = checked(RunConfig, {
        "template": config.template, "data": data, "model": model, "verbalizer": config.verbalizer,
        "max_length": config.max_length, "label_field": config.label_field, "limit": config.limit,
        "device": device, "normalize": config.normalize, "calibrate": config.calibrate,
        "train": config.train, "shots": config.shots, "seed": None, "subsample": subsample, "rows": rows})
    return prepare(run_config, soft=places, load=lambda info: loaded)


def _manifest(config: TuneConfig, info: ModelInfo, train: Prepared, dev: Prepared | None, state: TrainState,
              prompt: SoftPrompt, frozen_sha: str, loaded: LoadedModel, placement: str, processes: int) -> Manifest:
    steps = state.step
    return Manifest(
        placement=placement,
        scoring={"normalize": train.scoring.normalize, "calibrate": train.scoring.calibrate},
        model={"name": info.name, "path": info.path, "gguf": info.source, "config_sha256": info.config_sha256,
               "fingerprint": info.fingerprint(), "parameters_sha256": frozen_sha},
        template={"path": config.template, "sha256": train.template.sha256},
        verbalizer={"path": str(train.template.verbalizer.path or "inline"), "sha256": train.template.verbalizer.sha256},
        data={"train": train.dataset.sha256, "dev": dev.dataset.sha256 if dev else None},
        hyperparameters=config.model_dump(),
        parameters={"trainable": sum(p.numel() for p in prompt.parameters()),
                    "frozen": sum(p.numel() for p in loaded.model.parameters())},
        training={"steps": steps, "train_seconds": round(state.seconds, 3),
                  "steps_per_s": round(steps / state.seconds, 3) if state.seconds else None,
                  "stopped_early": state.stopped_early, "best_dev_accuracy": state.best, "processes": processes,
                  # float sums depend on it, and over many steps so may the prompt: part of what reproduces a tune
                  "torch_threads": torch.get_num_threads(), "memory": peak_memory_mb(loaded.device)},
        dev_curve=state.curve,
        versions=versions(),
    )

