"""Soft-prompt tuning: trainable virtual-token embeddings, every model weight frozen.

Entry point: `tuner.tune` (`promptcli.tune`); `config` holds its options and records, `trainer` the loss
and the fit loop, `checkpoint` the resumable training state.
"""
