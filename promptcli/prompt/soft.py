"""Soft prompts: trainable virtual-token embeddings inserted into a frozen model's input.

Virtual token k is written in the token ids as `vocab_size + k`, an id no tokenizer emits,
so every scorer, padding rule and cache works on soft prompts unchanged. Two hooks on the
model's input embedding do the rest: a pre-hook maps those ids to 0 before the lookup, a
hook puts the soft embeddings in their rows afterwards. The model's weights, its embedding
table included, are never touched.

The embeddings are trainable themselves (prompt tuning, Lester et al.) or the output of a prompt
encoder (P-tuning, `prompt/reparam.py`). Saved as a folder: `adapter_model.safetensors` (one
tensor, `prompt_embeddings`, N × hidden: for P-tuning the encoder's output, so inference needs no
encoder), `adapter_config.json` (PEFT's prompt-tuning or P-tuning format, so a plain prefix loads
with `PeftModel.from_pretrained`), and `promptcli_soft_prompt.json`, which names the model, the
template, verbalizer and training data with their hashes, and how the prompt was trained.
"""
from __future__ import annotations

import hashlib
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import torch
from safetensors.torch import load_file, save_file

from ..errors import ModelError, RunError
from ..files import read_json, write_json, write_with
from ..progress import warn
from .reparam import PrefixProjection, PromptEncoder

WEIGHTS = "adapter_model.safetensors"
PEFT_CONFIG = "adapter_config.json"
MANIFEST = "promptcli_soft_prompt.json"
KEY = "prompt_embeddings"


class SoftPrompt(torch.nn.Module):
    def __init__(self, embeddings: torch.Tensor | None, manifest: dict | None = None,
                 encoder: PromptEncoder | PrefixProjection | None = None):
        """Trainable `embeddings` (N, H), or an `encoder` whose output they are."""
        super().__init__()
        self.encoder = encoder
        self.embeddings = None if encoder else torch.nn.Parameter(embeddings.detach().clone().float())
        self.manifest = manifest or {}

    def current(self) -> torch.Tensor:
        """(N, H): the embeddings in effect (with an encoder: its output, differentiable)."""
        return self.encoder() if self.encoder is not None else self.embeddings

    @property
    def tokens(self) -> int:
        return self.encoder.tokens if self.encoder is not None else self.embeddings.shape[0]

    @property
    def prefix(self) -> bool:
        """A plain N-token prefix (the default), as opposed to the template's soft slots."""
        return self.manifest.get("placement", "prefix") == "prefix"

    @property
    def scoring(self) -> dict[str, str]:
        """The scoring it was trained with (normalize, calibrate): how `run` evaluates it by default."""
        return dict(self.manifest.get("scoring") or {})

    def sha256(self) -> str:
        return hashlib.sha256(self.current().detach().cpu().numpy().tobytes()).hexdigest()

    @contextmanager
    def attached(self, model: torch.nn.Module) -> Iterator[None]:
        """While inside, ids ≥ the vocabulary size read this prompt's embeddings."""
        table = model.get_input_embeddings()
        base = table.num_embeddings
        dim = self.current().shape[1]
        if dim != table.embedding_dim:
            raise ModelError(f"the soft prompt has {dim}-dim embeddings, the model {table.embedding_dim}")
        state: dict[str, torch.Tensor] = {}

        def before(module, args):
            ids = args[0]
            virtual = ids >= base
            state["virtual"], state["index"] = virtual, (ids - base).clamp(min=0)
            return (ids.masked_fill(virtual, 0),) + tuple(args[1:])

        def after(module, args, output):
            virtual = state.pop("virtual")
            index = state.pop("index")
            if not bool(virtual.any()):
                return output
            output = output.clone()
            output[virtual] = self.current()[index[virtual]].to(output.dtype)
            return output

        handles = [table.register_forward_pre_hook(before), table.register_forward_hook(after)]
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()

    def save(self, folder: Path, manifest: dict, peft_config: dict) -> None:
        """Only what was trained, with its configs; each file written atomically."""
        folder.mkdir(parents=True, exist_ok=True)
        tensors = {KEY: self.current().detach().cpu().contiguous()}
        write_with(folder / WEIGHTS, lambda tmp: save_file(tensors, str(tmp)))
        write_json(folder / PEFT_CONFIG, peft_config)
        write_json(folder / MANIFEST, manifest)


class KvPrefix(SoftPrompt):
    """Prefix tuning (Li & Liang, 2021; P-tuning v2): N trainable key/value vectors in front of every layer's
    attention instead of N input embeddings. Stored in PEFT's PREFIX_TUNING layout, one (N, layers × 2 ×
    kv heads × head dim) table; the scorers read it (`key_values`) as a cache the prompt sits on, so the
    text keeps its own token ids and starts at position N. The table trains itself, or is the output of a
    `PrefixProjection` (Li & Liang's reparameterisation)."""

    kv = True

    def __init__(self, table: torch.Tensor | None, shape: tuple[int, int, int], manifest: dict | None = None,
                 projection: PrefixProjection | None = None):
        super().__init__(table, {"placement": "kv", **(manifest or {})}, projection)
        self.shape = tuple(shape)  # layers, kv heads, head dim

    def key_values(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per layer (keys, values), each (1, kv heads, N, head dim), as PEFT lays them out."""
        layers, heads, dim = self.shape
        table = self.current().view(1, self.tokens, 2 * layers, heads, dim).permute(2, 0, 3, 1, 4)
        return [(table[2 * i], table[2 * i + 1]) for i in range(layers)]

    @contextmanager
    def attached(self, model: torch.nn.Module) -> Iterator[None]:
        """While inside, the model's scorers put this prefix in front of every input."""
        expected = kv_shape(model.config)
        if expected != self.shape:
            raise ModelError(f"the prefix was trained for {self.shape[0]} layers × {self.shape[1]} key/value heads × "
                             f"{self.shape[2]} dims; this model has {expected[0]} × {expected[1]} × {expected[2]}")
        setattr(model, KV_ATTRIBUTE, self)
        try:
            yield
        finally:
            delattr(model, KV_ATTRIBUTE)


KV_ATTRIBUTE = "_promptcli_kv_prefix"


def kv_shape(config: Any) -> tuple[int, int, int]:
    """(layers, key/value heads, head dim) of a causal model's attention cache."""
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    heads = getattr(text, "num_attention_heads", None) or text.n_head
    kv_heads = getattr(text, "num_key_value_heads", None) or heads
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // heads
    return getattr(text, "num_hidden_layers", None) or text.n_layer, kv_heads, head_dim


def kv_table(layers: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
    """The inverse of `KvPrefix.key_values`: per-layer (1, heads, N, dim) keys and values → (N, layers × 2 × heads × dim)."""
    stacked = torch.stack([t for pair in layers for t in pair])  # (2L, 1, heads, N, dim)
    return stacked.permute(1, 3, 0, 2, 4).reshape(stacked.shape[3], -1)


def peft_config(tokens: int, hidden: int, model_name: str, kind: str, config: Any,
                encoder: PromptEncoder | None = None) -> dict:
    """PEFT's PromptTuningConfig fields for a plain prefix, or PromptEncoderConfig's for P-tuning (task type by
    model kind)."""
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    fields = {"peft_type": "PROMPT_TUNING", "task_type": "CAUSAL_LM" if kind == "causal" else "FEATURE_EXTRACTION",
              "num_virtual_tokens": tokens, "token_dim": hidden, "num_transformer_submodules": 1,
              "num_attention_heads": getattr(text, "num_attention_heads", None),
              "num_layers": getattr(text, "num_hidden_layers", None), "prompt_tuning_init": "RANDOM",
              "base_model_name_or_path": model_name, "inference_mode": True, "revision": None}
    if encoder is not None:
        del fields["prompt_tuning_init"]
        fields.update(peft_type="P_TUNING", encoder_reparameterization_type=encoder.kind.upper(),
                      encoder_hidden_size=encoder.hidden, encoder_num_layers=2, encoder_dropout=0.0)
    return fields


def prefix_peft_config(tokens: int, model_name: str, kind: str, config: Any,
                       projection: PrefixProjection | None = None) -> dict:
    """PEFT's PrefixTuningConfig fields (token_dim and heads are the key/value ones, as PEFT sets them for
    grouped-query attention). A projected prefix is saved as its output table, which PEFT loads in inference
    mode as it is, as it saves one itself."""
    layers, kv_heads, head_dim = kv_shape(config)
    task = "CAUSAL_LM" if kind == "causal" else "FEATURE_EXTRACTION"
    hidden = projection.hidden if projection is not None else kv_heads * head_dim
    return {"peft_type": "PREFIX_TUNING", "task_type": task, "num_virtual_tokens": tokens,
            "token_dim": kv_heads * head_dim, "num_transformer_submodules": 1, "num_attention_heads": kv_heads,
            "num_layers": layers, "encoder_hidden_size": hidden, "prefix_projection": projection is not None,
            "base_model_name_or_path": model_name, "inference_mode": True, "revision": None}


def load_soft_prompt(folder: str | Path) -> SoftPrompt:
    folder = Path(folder)
    if not (folder / WEIGHTS).is_file():
        raise RunError(f"no {WEIGHTS} in this folder", path=str(folder), hint="pass a folder written by promptcli tune")
    try:
        tensors = load_file(str(folder / WEIGHTS))
    except Exception as exc:  # safetensors raises its own error type for a damaged file
        raise RunError(f"{WEIGHTS} is not a readable safetensors file ({exc})", path=str(folder / WEIGHTS),
                       hint="write the soft prompt again with promptcli tune") from None
    if KEY not in tensors:
        raise RunError(f"{WEIGHTS} holds no '{KEY}' tensor", path=str(folder))
    manifest = read_json(folder / MANIFEST) if (folder / MANIFEST).is_file() else {}
    if not isinstance(manifest, dict):
        raise RunError(f"{MANIFEST} must hold a JSON object", path=str(folder / MANIFEST))
    adapter = read_json(folder / PEFT_CONFIG) if (folder / PEFT_CONFIG).is_file() else {}
    if adapter.get("peft_type") == "PREFIX_TUNING":
        heads = adapter["num_attention_heads"]
        return KvPrefix(tensors[KEY], (adapter["num_layers"], heads, adapter["token_dim"] // heads), manifest)
    return SoftPrompt(tensors[KEY], manifest)


def check_compatible(prompt: SoftPrompt, template_sha: str, model_config_sha: str, force: bool) -> None:
    """A soft prompt belongs to the model and template it was trained with; --force overrides, loudly."""
    problems = []
    trained = prompt.manifest
    if trained.get("model", {}).get("config_sha256") not in (None, model_config_sha):
        problems.append(f"it was trained for model '{trained['model'].get('name')}' (another config)")
    if trained.get("template", {}).get("sha256") not in (None, template_sha):
        problems.append(f"it was trained with the template {trained['template'].get('path')} as it was then "
                        f"(sha256 {trained['template']['sha256'][:12]}…), not this one")
    if not problems:
        return
    message = "this soft prompt does not match: " + "; ".join(problems)
    if not force:
        raise RunError(message, hint="use the model and template it was trained with, or --force")
    warn(message + " (--force: using it anyway)")
