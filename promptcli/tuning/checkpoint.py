"""Training state for `tune --resume`, written without pickle: tensors in safetensors, the rest in JSON.

A checkpoint holds the soft prompt, the best one so far, the optimizer and scheduler state,
the RNG state and where in the data the run was, so a resumed run continues exactly.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Mapping

import torch
from safetensors.torch import load_file, save_file

from ..errors import RunError
from ..files import read_json, replace_folder, write_json
from .config import TrainState

FOLDER = "checkpoint"
CONFIG = "tune.json"  # the options an unfinished tune started with, for `tune --resume DIR`


def _split_optimizer(state: dict) -> tuple[dict[str, torch.Tensor], dict]:
    tensors, plain = {}, {"param_groups": state["param_groups"], "state": {}}
    for param, values in state["state"].items():
        plain["state"][str(param)] = {}
        for name, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optimizer.{param}.{name}"] = value.detach().cpu().contiguous()
            else:
                plain["state"][str(param)][name] = value
    return tensors, plain


def _join_optimizer(tensors: dict[str, torch.Tensor], plain: dict) -> dict:
    state: dict[int, dict[str, Any]] = {int(p): dict(v) for p, v in plain["state"].items()}
    for key, value in tensors.items():
        if key.startswith("optimizer."):
            _, param, name = key.split(".", 2)
            state.setdefault(int(param), {})[name] = value
    return {"state": state, "param_groups": plain["param_groups"]}


def save_checkpoint(out: Path, *, prompt: Mapping[str, torch.Tensor], best: torch.Tensor,
                    optimizer: torch.optim.Optimizer, scheduler: Any, state: TrainState) -> None:
    """Atomic: the folder is written beside the old one and swapped in. `prompt` is the soft prompt's
    state (its embeddings, or its encoder's weights); `best` the best embeddings so far."""
    tensors, plain = _split_optimizer(optimizer.state_dict())
    tensors.update({f"prompt.{k}": v.detach().cpu().contiguous() for k, v in prompt.items()})
    tensors.update({"best": best.detach().cpu().contiguous(), "rng": torch.get_rng_state()})
    schedule = {k: v for k, v in scheduler.state_dict().items() if k != "lr_lambdas"}

    def fill(folder: Path) -> None:
        save_file(tensors, str(folder / "state.safetensors"))
        write_json(folder / "state.json", json.loads(json.dumps(
            {"optimizer": plain, "scheduler": schedule, "progress": state.to_dict()}, default=float)))

    replace_folder(out / FOLDER, fill)


def load_checkpoint(out: Path) -> dict[str, Any]:
    folder = out / FOLDER
    if not (folder / "state.safetensors").is_file():
        raise RunError("no checkpoint to resume from", path=str(folder),
                       hint="run promptcli tune without --resume first (checkpoints are written at each evaluation)")
    try:
        tensors = load_file(str(folder / "state.safetensors"))
    except Exception as exc:  # safetensors raises its own error type for a damaged file
        raise RunError(f"the checkpoint is damaged ({exc})", path=str(folder), hint="start again without --resume") \
            from None
    plain = read_json(folder / "state.json")
    prompt = {k.removeprefix("prompt."): v for k, v in tensors.items() if k.startswith("prompt.")}
    return {"prompt": prompt, "best": tensors["best"], "rng": tensors["rng"],
            "optimizer": _join_optimizer(tensors, plain["optimizer"]), "scheduler": plain["scheduler"],
            "state": TrainState(**plain["progress"])}


def remove_checkpoint(out: Path) -> None:
    """Training finished: the folder keeps only what was trained (the manifest records the options)."""
    shutil.rmtree(out / FOLDER, ignore_errors=True)
    (out / CONFIG).unlink(missing_ok=True)
