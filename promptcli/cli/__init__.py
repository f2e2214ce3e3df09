"""The `promptcli` command: parses arguments, makes one library call, prints the result."""
from __future__ import annotations

from . import catalog, core, search, sweeps, tune  # noqa: F401  (each module registers its commands on `app`)
from .common import app, terminate_gracefully

__all__ = ["app", "main"]


def main() -> None:
    terminate_gracefully()
    app()
