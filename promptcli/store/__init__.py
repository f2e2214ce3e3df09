"""promptcli's SQLite files: the run store (every run and sweep) and the score cache.

Entry points: `runs.RunStore`, `scores.ScoreCache`; `sqlite` opens and checks either file.
"""
