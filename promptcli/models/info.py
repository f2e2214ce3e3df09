"""A model's config and tokenizer, and the facts scoring needs about them, without its weights.

`render` and `validate` need only these, so nothing here imports torch (weights: `weights.py`).
`trust_remote_code` stays off unless the user asks for it.
"""
from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ..errors import ModelError
from . import embedded, gguf
from .gguf_file import first_line, gguf_file_of

ScorerKind = Literal["mlm", "causal"]
# Families whose position ids start after the padding index (RoBERTa's 514 positions hold 512 tokens).
OFFSET_POSITIONS = {"roberta", "xlm-roberta", "camembert", "longformer", "data2vec-text", "xmod", "roberta-prelayernorm"}


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

    @property
    def vocab_size(self) -> int:
        """Rows of the input embedding table: where a soft prompt's virtual token ids start."""
        text = self.config.get_text_config() if hasattr(self.config, "get_text_config") else self.config
        return int(text.vocab_size)

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
    _check_local(name)
    path, source = _resolved(name)
    try:
        config, tokenizer = _config_and_tokenizer(path, trust_remote_code, _folder_stamp(path))
    except (OSError, ValueError, KeyError) as exc:
        hint = ("pass a local model folder (with config.json and tokenizer files), a .gguf file, an embedded "
                "model (`promptcli models`), or a hub id while online; offline, set HF_HUB_OFFLINE=1 to skip "
                "the retries" if not Path(path).is_dir() else "the folder needs config.json and tokenizer files")
        raise ModelError(f"cannot load model '{name}': {first_line(exc)}", hint=hint) from None
    detected = detect_kind(config)
    kind = detected if scorer == "auto" else scorer
    if kind not in ("mlm", "causal"):
        raise ModelError(f"unknown scorer '{scorer}' (one of: auto, mlm, causal)")
    if kind == "causal" and detected == "mlm":
        raise ModelError(f"'{name}' is a masked LM ({', '.join(config.architectures or [config.model_type])}); "
                         "run as a causal LM it would read left to right with weights trained for both "
                         "directions and give meaningless scores", hint="drop --scorer causal")
    if kind == "mlm" and tokenizer.mask_token_id is None:
        raise ModelError(f"'{name}' has no mask token, so it cannot fill a mask", hint="use --scorer causal")
    limit = max_positions(config, tokenizer)
    if max_length is not None:
        if max_length > limit:
            raise ModelError(f"--max-length {max_length} exceeds the model's limit of {limit} tokens")
        limit = max_length
    return ModelInfo(name=name, config=config, tokenizer=tokenizer, kind=kind, max_length=limit,
                     trust_remote_code=trust_remote_code, path=path, source=source)


def _check_local(name: str) -> None:
    """A name that is clearly a local path gets a message about the path, not the hub's id syntax."""
    path = Path(name).expanduser()
    if path.is_file() and path.suffix.lower() != ".gguf":
        raise ModelError(f"'{name}' is a file; --model takes a model folder, a .gguf file, an embedded model's name "
                         "or a hub id")
    looks_local = name.startswith((".", "/", "~")) or name.count("/") > 1 or "\\" in name
    if looks_local and not path.exists():
        raise ModelError(f"no model folder or file at '{name}'", hint="check the path (`promptcli models` lists the "
                         "embedded models)")


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


