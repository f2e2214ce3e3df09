"""promptcli: declarative prompts and verbalizers for zero- and few-shot classification.

The Python API is the CLI's road: `run`, `render`, `validate` do what the commands do.
"""
from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["run", "render", "validate", "load_template", "PromptcliError", "__version__"]


def __getattr__(name: str) -> Any:  # imported lazily: `promptcli --help` should not pay for torch
    if name == "run":
        from .runner import run
        return run
    if name == "render":
        from .preview import render_rows
        return render_rows
    if name == "validate":
        from .lint import validate_paths
        return validate_paths
    if name == "load_template":
        from .spec import load_template
        return load_template
    if name == "PromptcliError":
        from .errors import PromptcliError
        return PromptcliError
    raise AttributeError(f"module 'promptcli' has no attribute {name!r}")
