"""Prompts found from data: automatic label words (`search words`), selected on training rows only."""
from __future__ import annotations
