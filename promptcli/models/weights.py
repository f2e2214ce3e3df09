"""Loading a model's weights (the only part of `models` that needs torch)."""
from __future__ import annotations

import importlib.util
import pickle
from dataclasses import dataclass
from typing import Any

import torch

from ..errors import ModelError
from .gguf_file import first_line
from .info import ModelInfo, ScorerKind

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class LoadedModel:
    info: ModelInfo
    model: torch.nn.Module
    device: torch.device
    dtype: torch.dtype

    @property
    def kind(self) -> ScorerKind:
        return self.info.kind

    @property
    def tokenizer(self) -> Any:
        return self.info.tokenizer

    def fingerprint(self) -> str:
        return self.info.fingerprint()


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError:
        raise ModelError(f"unknown device '{device}' (auto, cpu, cuda, cuda:N or mps)") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ModelError("--device cuda was asked for, but no CUDA GPU is available", hint="use --device cpu")
    if resolved.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ModelError("--device mps was asked for, but MPS is not available", hint="use --device cpu")
    return resolved


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """`auto`: float32 on CPU (exact and fast enough), bfloat16 on GPUs that have it, else float16."""
    if dtype == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float16 if device.type == "mps" else torch.float32
    if dtype not in DTYPES:
        raise ModelError(f"unknown dtype '{dtype}' (auto, float32, bfloat16, float16)")
    return DTYPES[dtype]


def check_device_map(device_map: str | None) -> None:
    if device_map and importlib.util.find_spec("accelerate") is None:
        raise ModelError("--device-map loads the model through accelerate, which is not installed",
                         hint="pip install accelerate")


def load_model(info: ModelInfo, *, device: str = "auto", dtype: str = "auto", device_map: str | None = None
               ) -> LoadedModel:
    """Load the weights for `info` in eval mode, with no gradients; with a `device_map`, spread over the
    available devices by accelerate (inputs then go to the device of the input embeddings)."""
    from transformers import AutoModelForCausalLM, AutoModelForMaskedLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # our own progress display is the one the user watches
    where = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, where)
    auto = AutoModelForMaskedLM if info.kind == "mlm" else AutoModelForCausalLM
    check_device_map(device_map)
    placement = {"device_map": device_map} if device_map else {}
    try:
        model = auto.from_pretrained(info.path, dtype=torch_dtype, trust_remote_code=info.trust_remote_code,
                                     **placement)
    except pickle.UnpicklingError:
        raise ModelError(f"refused the pickle weights of '{info.name}' (pytorch_model.bin): they hold more than "
                         "tensors, and unpickling them could run any code, so they are only read in torch's "
                         "weights-only mode", hint="use the model's safetensors weights, or convert the .bin to "
                         "safetensors where you trust its source") from None
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot load the weights of '{info.name}' as a {info.kind} model: {first_line(exc)}",
                         hint="check the folder holds model weights (model.safetensors), or force --scorer") from None
    if device_map:
        where = model.get_input_embeddings().weight.device  # where the inputs go
    else:
        model.to(where)
    model.eval()
    model.requires_grad_(False)
    return LoadedModel(info=info, model=model, device=where, dtype=torch_dtype)
