from __future__ import annotations

import json
import pickle
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


class RunsCode:
    """A pickle that would run a shell command when loaded."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "the payload ran"))


def test_pickle_weights_are_refused_as_a_model_error_and_never_run(tiny, tmp_path):
    """A pytorch_model.bin holding a malicious pickle was refused by torch, but shown as an internal error
    (exit 70) repeating torch's advice to retry with weights_only=False."""
    from typer.testing import CliRunner

    from conftest import REPO
    from promptcli.cli import app

    folder = Path(shutil.copytree(tiny["gpt2"], tmp_path / "gpt2"))
    for weights in folder.glob("*.safetensors"):
        weights.unlink()
    marker = tmp_path / "ran.txt"
    (folder / "pytorch_model.bin").write_bytes(pickle.dumps(RunsCode(marker)))
    result = CliRunner().invoke(app, ["run", str(REPO / "tests/templates/causal.yaml"), "--data",
                                      str(REPO / "examples/sst2.jsonl"), "--model", str(folder), "--quiet",
                                      "--out", str(tmp_path / "out")])
    assert result.exit_code == 4, result.output
    assert "refused the pickle weights" in result.stderr and "weights_only=False" not in result.stderr
    assert not marker.exists()
