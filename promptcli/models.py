"""Loading a model and its tokenizer, and the facts scoring needs about them.

Tokenizer and config load without weights (`render` and `validate` need only those);
weights load separately. `trust_remote_code` stays off unless the user asks for it.
"""
from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from . import embedded, gguf
from .errors import ModelError
from .gguf_file import gguf_file_of

ScorerKind = Literal["mlm", "causal"]
# Families whose position ids start after the padding index (RoBERTa's 514 positions hold 512 tokens).
OFFSET_POSITIONS = {"roberta", "xlm-roberta", "camembert", "longformer", "data2vec-text", "xmod", "roberta-prelayernorm"}
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class ModelInfo:
    """Config + tokenizer of a model: everything but the weights.

    `name` is what the user wrote (a hub id, a folder, a .gguf, a short name); `path` is what
    `from_pretrained` loads (for a GGUF, its converted folder, described by `source`)."""

    name: str
    config: Any
    tokenizer: Any
    kind: ScorerKind
    max_length: int
    trust_remote_code: bool = False
    path: str = ""
    source: dict | None = None  # the GGUF a converted folder came from: file, sha256, quantization

    def __post_init__(self) -> None:
        self.path = self.path or self.name

    @property
    def config_sha256(self) -> str:
        data = {k: v for k, v in self.config.to_dict().items() if k not in ("transformers_version", "_name_or_path")}
        return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()

    def fingerprint(self) -> str:
        """Identity of config *and* weights, cheap to compute: hashes of each weight file's size and ends."""
        digest = hashlib.sha256(self.config_sha256.encode())
        if self.source is not None:
            digest.update(f"gguf:{self.source['sha256']}".encode())
        folder = Path(self.path)
        if folder.is_dir():
            for file in sorted(folder.glob("*.safetensors")) + sorted(folder.glob("*.bin")):
                size = file.stat().st_size
                with file.open("rb") as handle:
                    head = handle.read(1 << 20)
                    handle.seek(max(0, size - (1 << 20)))
                    tail = handle.read()
                digest.update(f"{file.name}:{size}".encode() + head + tail)
        else:
            digest.update(str(getattr(self.config, "_commit_hash", None) or self.path).encode())
        return digest.hexdigest()


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


def detect_kind(config: Any) -> ScorerKind:
    """Masked or causal LM, from the config. `architectures` first, then the model family."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_MASKED_LM_MAPPING_NAMES

    archs = config.architectures or []
    if any("MaskedLM" in a for a in archs):
        return "mlm"
    if any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in archs) or getattr(config, "is_decoder", False):
        return "causal"
    return "mlm" if config.model_type in MODEL_FOR_MASKED_LM_MAPPING_NAMES else "causal"


def max_positions(config: Any, tokenizer: Any) -> int:
    """The longest input the model accepts, from the tokenizer and the config (the smaller wins)."""
    candidates = []
    if tokenizer.model_max_length and tokenizer.model_max_length < 1_000_000:
        candidates.append(int(tokenizer.model_max_length))
    for key in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = getattr(config, key, None)
        if isinstance(value, int) and value > 0:
            if config.model_type in OFFSET_POSITIONS:
                value -= (config.pad_token_id or 0) + 1
            candidates.append(value)
            break
    return min(candidates) if candidates else 2048


def resolve_model(name: str, *, progress: bool = True) -> tuple[str, dict | None]:
    """What `from_pretrained` should load for `name`, and the GGUF it came from (or None).

    A short name of an embedded model, a `.gguf` file, or a folder holding one `.gguf` become the
    converted folder in the model cache (converted on first use); anything else stays as it is."""
    if name in embedded.MODELS:
        folder = embedded.MODELS[name].folder(progress=progress)
        return str(folder), gguf.source_of(folder)
    file = gguf_file_of(name)
    if file is None:
        return name, None
    folder, source = gguf.resolve_file(file, progress=progress)
    return str(folder), source


def load_info(name: str, *, scorer: str = "auto", trust_remote_code: bool = False,
              max_length: int | None = None) -> ModelInfo:
    """Load config and tokenizer; a clear ModelError when the name is neither a folder nor reachable."""
    path, source = _resolved(name)
    try:
        config, tokenizer = _config_and_tokenizer(path, trust_remote_code, _folder_stamp(path))
    except (OSError, ValueError, KeyError) as exc:
        hint = ("pass a local model folder (with config.json and tokenizer files), a .gguf file, an embedded "
                "model (`promptcli models`), or a hub id while online; offline, set HF_HUB_OFFLINE=1 to skip "
                "the retries" if not Path(path).is_dir() else "the folder needs config.json and tokenizer files")
        raise ModelError(f"cannot load model '{name}': {_first_line(exc)}", hint=hint) from None
    kind = detect_kind(config) if scorer == "auto" else scorer
    if kind not in ("mlm", "causal"):
        raise ModelError(f"unknown scorer '{scorer}' (one of: auto, mlm, causal)")
    if kind == "mlm" and tokenizer.mask_token_id is None:
        raise ModelError(f"'{name}' has no mask token, so it cannot fill a mask", hint="use --scorer causal")
    limit = max_positions(config, tokenizer)
    if max_length is not None:
        if max_length > limit:
            raise ModelError(f"--max-length {max_length} exceeds the model's limit of {limit} tokens")
        limit = max_length
    return ModelInfo(name=name, config=config, tokenizer=tokenizer, kind=kind, max_length=limit,
                     trust_remote_code=trust_remote_code, path=path, source=source)


_RESOLVED: dict[tuple, tuple[str, dict | None]] = {}


def _resolved(name: str) -> tuple[str, dict | None]:
    """`resolve_model` once per process for the same file (checking a converted folder reads all of it)."""
    path = Path(name)
    key = (name, path.stat().st_mtime_ns if path.is_file() else None)
    hit = _RESOLVED.get(key)
    if hit is None or (hit[1] is not None and not Path(hit[0]).exists()):
        hit = _RESOLVED[key] = resolve_model(name)
    return hit


def _folder_stamp(name: str) -> tuple:
    """Name, size and mtime of a local folder's files: a changed file means a fresh load."""
    folder = Path(name)
    if not folder.is_dir():
        return ()
    return tuple((f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in sorted(folder.iterdir()) if f.is_file())


@functools.lru_cache(maxsize=4)
def _config_and_tokenizer(name: str, trust_remote_code: bool, stamp: tuple) -> tuple[Any, Any]:
    """Loaded once per process: a tokenizer takes ~0.5 s to build, and `run`, `tune` and notebooks
    calling `promptcli.run` again and again ask for the same one (neither is ever modified)."""
    from transformers import AutoConfig, AutoTokenizer

    return (AutoConfig.from_pretrained(name, trust_remote_code=trust_remote_code),
            AutoTokenizer.from_pretrained(name, trust_remote_code=trust_remote_code))


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


def load_model(info: ModelInfo, *, device: str = "auto", dtype: str = "auto") -> LoadedModel:
    """Load the weights for `info` in eval mode, with no gradients."""
    from transformers import AutoModelForCausalLM, AutoModelForMaskedLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # our own progress display is the one the user watches
    where = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, where)
    auto = AutoModelForMaskedLM if info.kind == "mlm" else AutoModelForCausalLM
    try:
        model = auto.from_pretrained(info.path, dtype=torch_dtype, trust_remote_code=info.trust_remote_code)
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot load the weights of '{info.name}' as a {info.kind} model: {_first_line(exc)}",
                         hint="check the folder holds model weights (model.safetensors), or force --scorer") from None
    model.to(where).eval()
    model.requires_grad_(False)
    return LoadedModel(info=info, model=model, device=where, dtype=torch_dtype)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
