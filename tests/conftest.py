from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from tiny import BUILDERS  # noqa: E402
from promptcli.models.gguf import model_cache_dir  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
# Converted real models live in the user's model cache (converting Gemma takes ~100 s): read before
# the fixtures below point PROMPTCLI_HOME at a temporary folder.
USER_MODEL_CACHE = str(model_cache_dir())
EXAMPLE_ROWS = len((REPO / "examples/sst2.jsonl").read_text(encoding="utf-8").splitlines())


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path, request):
    """An accidental download must fail loudly, and nothing may write outside tmp (but the real tier's
    converted models, which are kept in the user's model cache)."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setenv("PROMPTCLI_HOME", str(tmp_path / "promptcli-home"))  # run store and score cache
    if request.node.get_closest_marker("real"):
        monkeypatch.setenv("PROMPTCLI_MODEL_CACHE", USER_MODEL_CACHE)
    else:
        monkeypatch.delenv("PROMPTCLI_MODEL_CACHE", raising=False)


@pytest.fixture(scope="session")
def tiny(tmp_path_factory) -> dict[str, str]:
    """name → folder of a tiny random model: bert, roberta (MLM), gpt2, llama (causal)."""
    root = tmp_path_factory.mktemp("tiny-models")
    return {name: str(build(root / name)) for name, build in BUILDERS.items()}


def shared_path(*parts: str) -> Path:
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is absent (../shared holds the real tokenizers and benchmark data)")
    return path


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path
