from __future__ import annotations

import json
import shutil
from pathlib import Path

from promptcli.models.info import load_info


def test_a_tokenizer_loads_once_per_process_and_again_when_its_files_change(tiny, tmp_path):
    folder = Path(shutil.copytree(tiny["gpt2"], tmp_path / "gpt2"))
    first = load_info(str(folder))
    assert load_info(str(folder), max_length=16).tokenizer is first.tokenizer  # a repeated `run` reuses it

    config_file = folder / "tokenizer_config.json"
    config = json.loads(config_file.read_text())
    config_file.write_text(json.dumps({**config, "model_max_length": 77}))
    changed = load_info(str(folder))
    assert changed.tokenizer is not first.tokenizer
    assert changed.tokenizer.model_max_length == 77
