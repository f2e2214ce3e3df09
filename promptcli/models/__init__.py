"""Models: resolving what `--model` names, config and tokenizer (`info`), weights (`weights`), GGUF files.

Entry points: `info.load_info` (no torch), `weights.load_model`; `embedded` knows the models that
install from the package registry, `gguf` converts a GGUF file once into a cached folder.
"""
