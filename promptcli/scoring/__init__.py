"""Scorers turn encoded examples into label-word log-scores (see base.py for the interface);
`labels` turns those into a label distribution, `generate` and `answers` serve the reasoning kinds."""
from . import causal, mlm  # noqa: F401  (register the built-in scorers)
from .base import SCORERS, Scorer, make_scorer

__all__ = ["SCORERS", "Scorer", "make_scorer"]
