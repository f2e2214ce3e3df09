"""Evaluating one template on one data file with one model: inputs → predictions → metrics → run folder.

Entry point: `runner.run` (`promptcli.run`). The steps, in order: `inputs.prepare`, `predict` (scoring or
generation, with `calibration`), `batches.evaluate`, `outputs` and `record` (the run folder), `metrics`;
`stats` and `leaderboard` compare runs; `preview` and `validate` serve `render` and `validate`.
"""
