"""promptcli: declarative prompts and verbalizers for zero- and few-shot classification.

The Python API is the CLI's road: `run`, `sweep`, `tune`, `search_words`, `search_formats`, `render`
and `validate` do what the commands do (each imported on first use, so `import promptcli` stays light).
"""
from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"
_API = {
    "run": ("evaluation.runner", "run"),
    "sweep": ("sweeps.runner", "sweep"),
    "tune": ("tuning.tuner", "tune"),
    "search_words": ("search.words", "search_words"),
    "search_formats": ("search.spread", "search_formats"),
    "render": ("evaluation.preview", "render_rows"),
    "validate": ("evaluation.validate", "validate_paths"),
    "load_template": ("spec.loading", "load_template"),
    "PromptcliError": ("errors", "PromptcliError"),
}
__all__ = [*_API, "__version__"]


def __getattr__(name: str) -> Any:
    if name not in _API:
        raise AttributeError(f"module 'promptcli' has no attribute {name!r}")
    module, attribute = _API[name]
    return getattr(importlib.import_module(f".{module}", __name__), attribute)
