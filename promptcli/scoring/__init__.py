"""Scorers turn encoded examples into label-word log-scores (see base.py for the interface)."""
from .base import SCORERS, Scorer, make_scorer
from . import causal, mlm  # noqa: F401  (register the built-in scorers)

__all__ = ["SCORERS", "Scorer", "make_scorer"]
