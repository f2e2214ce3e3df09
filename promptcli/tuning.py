"""`promptcli tune`: learn a soft prompt while every model weight stays frozen.

The loss is cross-entropy over the verbalizer's label scores, computed by the same scorers
and encoders as `run`, so a tuned prompt is evaluated exactly as it was trained. Runs on one
CPU or GPU, or data-parallel under `accelerate launch` (each process takes its share of every
batch; the prompt's gradient is averaged across processes before each step).
"""
from __future__ import annotations

import math
import random
import time
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import torch

from .checkpoint import load_checkpoint, save_checkpoint
from .errors import RunError
from .models import LoadedModel, load_info, load_model
from .outputs import prepare_new
from .progress import new_progress
from .runner import Prepared, RunConfig, model_name, prepare
from .softprompt import SoftPrompt, peft_config
from .trainer import Distributed, Trainer, initial_embeddings, make_optimizer, make_scheduler, parameters_sha256
from .spec import load_template
from .versions import peak_memory_mb, versions


@dataclass(frozen=True)
class TuneConfig:
    template: str
    train: str
    model: str | None = None
    dev: str | None = None
    verbalizer: str | None = None
    virtual_tokens: int = 20
    init: Literal["random", "vocab", "text", "labels"] = "random"
    init_text: str | None = None
    epochs: int = 30
    lr: float = 3e-2
    optimizer: Literal["adamw", "adafactor"] = "adamw"
    weight_decay: float = 0.0
    schedule: Literal["linear", "constant"] = "linear"
    warmup: int = 0  # optimizer steps
    max_grad_norm: float = 1.0
    accumulation: int = 1
    batch_size: int = 8
    eval_every: int = 0  # optimizer steps; 0: once per epoch
    patience: int | None = None  # evaluations without improvement before stopping early
    seed: int = 42
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    gradient_checkpointing: bool = False
    device: str = "auto"
    max_length: int | None = None
    label_field: str | None = None
    limit: int | None = None


@dataclass
class TuneResult:
    out_dir: Path
    initial_dev_accuracy: float | None
    best_dev_accuracy: float | None
    curve: list[dict]
    manifest: dict


def tune(template: str | Path, train: str | Path, model: str | None = None, *, out: str | Path | None = None,
         dev: str | Path | None = None, resume: bool = False, progress: bool = True, **options: Any) -> TuneResult:
    """Train a soft prompt (options: TuneConfig fields) and save it to `out`."""
    config = TuneConfig(template=str(template), train=str(train), model=model, dev=str(dev) if dev else None,
                        **options)
    if config.virtual_tokens < 1 or config.epochs < 1 or config.batch_size < 1 or config.accumulation < 1:
        raise RunError("virtual tokens, epochs, batch size and accumulation must be at least 1")
    dist = Distributed(config.device)
    random.seed(config.seed)
    torch.manual_seed(config.seed)
    tfile = load_template(config.template, config.verbalizer)
    name = model_name(tfile, config.model)
    info = load_info(name, max_length=config.max_length)
    loaded = load_model(info, device=dist.device, dtype="float32")
    out_dir = Path(out) if out else Path("runs") / f"tune-{Path(config.template).stem}-{datetime.now():%Y%m%d-%H%M%S}"
    if resume:
        if not out_dir.exists():
            raise RunError("nothing to resume in this folder", path=str(out_dir))
    elif dist.main:
        prepare_new(out_dir)

    hidden = loaded.model.get_input_embeddings().embedding_dim
    prompt = SoftPrompt(torch.zeros(config.virtual_tokens, hidden))  # its size is all encoding needs
    run_config = dict(model=name, verbalizer=config.verbalizer, max_length=config.max_length,
                      label_field=config.label_field, limit=config.limit, device=dist.device)
    train_set = prepare(RunConfig(template=config.template, data=config.train, **run_config), soft=prompt)
    if not train_set.dataset.labeled:
        raise RunError("the training data has no labels", path=config.train)
    dev_set = prepare(RunConfig(template=config.template, data=config.dev, **run_config), soft=prompt) \
        if config.dev else None
    placement = "slots" if train_set.renderer.soft_slots else "prefix"
    prompt = SoftPrompt(initial_embeddings(config, loaded, train_set), {"placement": placement}).to(loaded.device)
    trainer = Trainer(config, loaded, prompt, train_set, dev_set, dist)

    if config.gradient_checkpointing:  # HF checkpointing is active in train mode only (which enables dropout)
        loaded.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        loaded.model.train()
    frozen_before = parameters_sha256(loaded.model)
    trainable = prompt.embeddings.numel()
    frozen = sum(p.numel() for p in loaded.model.parameters())

    examples = train_set.encoded
    per_epoch = math.ceil(len(examples) / (config.batch_size * config.accumulation))
    total_steps = per_epoch * config.epochs
    optimizer = make_optimizer(prompt, config)
    scheduler = make_scheduler(optimizer, config, total_steps)
    eval_every = config.eval_every or per_epoch
    state = {"step": 0, "epoch": 0, "batch": 0, "best": None, "bad_evals": 0, "curve": [], "seconds": 0.0}  # training time
    best = prompt.embeddings.detach().clone()
    if resume:
        saved = load_checkpoint(out_dir)
        with torch.no_grad():
            prompt.embeddings.copy_(saved["prompt"])
        best = saved["best"].to(prompt.embeddings)
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict({**scheduler.state_dict(), **saved["scheduler"]})
        torch.set_rng_state(saved["rng"])
        state = saved["progress"]

    def evaluate_now(loss: float | None) -> bool:
        """Record dev accuracy; keep the best prompt; say whether to stop early."""
        nonlocal best
        accuracy = trainer.dev_accuracy()
        state["curve"].append({"step": state["step"], "epoch": state["epoch"], "train_loss": loss,
                               "dev_accuracy": accuracy})
        if accuracy is None or state["best"] is None or accuracy > state["best"]:
            state["best"], state["bad_evals"] = accuracy, 0
            best = prompt.embeddings.detach().clone()
        else:
            state["bad_evals"] += 1
        if dist.main:
            save_checkpoint(out_dir, prompt=prompt.embeddings, best=best, optimizer=optimizer, scheduler=scheduler,
                            progress=state)
        return config.patience is not None and state["bad_evals"] >= config.patience

    display = new_progress() if progress and dist.main else None
    stopped_early = False
    with prompt.attached(loaded.model), (display or _Quiet()):
        task = display.add_task("tune", total=total_steps, completed=state["step"], unit="steps") if display else None
        if not state["curve"]:
            evaluate_now(None)  # the untrained prompt, for comparison
        while state["epoch"] < config.epochs and not stopped_early:
            order = torch.randperm(len(examples), generator=torch.Generator().manual_seed(config.seed + state["epoch"]))
            steps = [order[i:i + config.batch_size * config.accumulation].tolist()
                     for i in range(0, len(order), config.batch_size * config.accumulation)]
            for position in range(state["batch"], len(steps)):
                step_start = time.perf_counter()
                losses = []
                for start in range(0, len(steps[position]), config.batch_size):
                    chunk = steps[position][start:start + config.batch_size]
                    mine = [examples[i] for i in chunk[dist.rank::dist.world]]
                    if mine:
                        loss = trainer.loss(mine) * len(mine) / len(steps[position])
                        loss.backward()
                        losses.append(float(loss.detach()) * len(steps[position]) / len(mine))
                if prompt.embeddings.grad is not None:  # each rank scaled its loss by its share of the batch
                    dist.total(prompt.embeddings.grad)
                torch.nn.utils.clip_grad_norm_([prompt.embeddings], config.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                state["step"] += 1
                state["batch"] = position + 1
                state["seconds"] += time.perf_counter() - step_start
                mean_loss = float(dist.mean(torch.tensor(sum(losses) / max(len(losses), 1))))
                if display:
                    last = state["curve"][-1]["dev_accuracy"] if state["curve"] else None
                    display.update(task, advance=1, description=f"tune · epoch {state['epoch'] + 1} · loss "
                                   f"{mean_loss:.4f}" + (f" · dev {last:.1%}" if last is not None else ""))
                if state["step"] % eval_every == 0 and evaluate_now(mean_loss):
                    stopped_early = True
                    break
            else:
                state["epoch"] += 1
                state["batch"] = 0
    loaded.model.eval()
    if parameters_sha256(loaded.model) != frozen_before:
        raise RuntimeError("a model parameter changed during tuning; this is a bug in promptcli")
    manifest = _manifest(config, info, train_set, dev_set, state, trainable, frozen, stopped_early, frozen_before,
                         loaded)
    if dist.main:
        SoftPrompt(best, manifest).save(out_dir, manifest, peft_config(config.virtual_tokens, hidden, info.path,
                                                                       info.kind, info.config))
    curve = state["curve"]
    return TuneResult(out_dir=out_dir, initial_dev_accuracy=curve[0]["dev_accuracy"] if curve else None,
                      best_dev_accuracy=state["best"], curve=curve, manifest=manifest)


def _manifest(config: TuneConfig, info, train: Prepared, dev: Prepared | None, state: dict, trainable: int,
              frozen: int, stopped_early: bool, frozen_sha: str, loaded: LoadedModel) -> dict:
    steps = state["step"]
    return {
        "placement": "slots" if train.renderer.soft_slots else "prefix",
        "model": {"name": info.name, "path": info.path, "gguf": info.source, "config_sha256": info.config_sha256,
                  "fingerprint": info.fingerprint(), "parameters_sha256": frozen_sha},
        "template": {"path": config.template, "sha256": train.template.sha256},
        "verbalizer": {"path": str(train.template.verbalizer.path or "inline"),
                       "sha256": train.template.verbalizer.sha256},
        "data": {"train": train.dataset.sha256, "dev": dev.dataset.sha256 if dev else None},
        "hyperparameters": asdict(config),
        "parameters": {"trainable": trainable, "frozen": frozen},
        "training": {"steps": steps, "train_seconds": round(state["seconds"], 3),
                     "steps_per_s": round(steps / state["seconds"], 3) if state["seconds"] else None,
                     "stopped_early": stopped_early, "best_dev_accuracy": state["best"],
                     "memory": peak_memory_mb(loaded.device)},
        "dev_curve": state["curve"],
        "versions": versions(),
    }


class _Quiet:
    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        return None
