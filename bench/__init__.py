"""Benchmarks (not part of the installed package): see bench/scoring.py."""
