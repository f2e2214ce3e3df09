"""Sweeps: many variants (templates × verbalizers × models × shots × seeds × scoring) run and ranked.

Entry point: `runner.run_sweep` (`promptcli.sweep`); `variants` expands and names them, `ensemble` adds
the mean of several templates' label log-probs as a variant of its own.
"""
